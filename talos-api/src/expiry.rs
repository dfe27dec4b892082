//! When the admin client certificates run out. Talos issues the talosconfig and kubeconfig
//! client certificates for a year (`crypto::CLIENT_CERT_VALIDITY`, as
//! `talosctl gen config` and `talosctl kubeconfig` do); they are re-issued from the CAs in
//! the secrets bundle before they expire.

use crate::error::{Error, Result};

/// Re-issue a client certificate when it expires within this long (30 days).
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// The `notAfter` of the first certificate in `pem`.
pub fn not_after(pem: &str) -> Result<time::OffsetDateTime> {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c)
        .map_err(|e| Error::Crypto(format!("certificate PEM: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Error::Crypto(format!("certificate: {e}")))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// The client certificate expiry of a talosconfig's current context.
pub fn talosconfig_client_expiry(talosconfig: &str) -> Result<time::OffsetDateTime> {
    let cfg = crate::talosconfig::Talosconfig::from_yaml(talosconfig, "talosconfig")?;
    let (_, ctx) = cfg.current()?;
    let crt = ctx.crt.as_deref().ok_or_else(|| {
        Error::Talosconfig("the current context has no client certificate".into())
    })?;
    not_after(crt)
}

/// The client certificate expiry of a kubeconfig's current context.
pub fn kubeconfig_client_expiry(kubeconfig: &str) -> Result<time::OffsetDateTime> {
    let creds = crate::kubeconfig::credentials(kubeconfig)?;
    not_after(&creds.client_cert_pem)
}

/// A certificate's expiry as seen at some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expiry {
    /// `notAfter`, RFC 3339 (`2027-12-06T21:56:02Z`).
    pub expires: String,
    /// Whole days left at that moment (negative once expired).
    pub days_left: i64,
    /// Due for renewal (expires within [`RENEW_BEFORE`]).
    pub due: bool,
}

impl Expiry {
    /// The expiry of a certificate ending at `not_after`, seen at `now`.
    pub fn at(not_after: time::OffsetDateTime, now: time::OffsetDateTime) -> Expiry {
        Expiry {
            expires: not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            days_left: (not_after - now).whole_days(),
            due: due(not_after, now),
        }
    }

    /// The expiry seen now.
    pub fn now(not_after: time::OffsetDateTime) -> Expiry {
        Expiry::at(not_after, time::OffsetDateTime::now_utc())
    }
}

/// Whether a certificate expiring at `not_after` is due for renewal at `now`.
pub fn due(not_after: time::OffsetDateTime, now: time::OffsetDateTime) -> bool {
    not_after - now <= RENEW_BEFORE
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::{CertSpec, issue_leaf};
    use secrecy::ExposeSecret;

    #[test]
    fn expiry_of_issued_client_certificates() {
        let bundle = crate::secrets::SecretsBundle::generate_with(
            &crate::secrets::SecretsOptions::default()
                .service_account(crate::secrets::ServiceAccountKeyKind::EcdsaP256),
        )
        .unwrap();
        let short = CertSpec {
            common_name: Some("admin".into()),
            organizations: vec!["os:admin".into()],
            client_auth: true,
            validity: Some(time::Duration::days(10)),
            ..Default::default()
        };
        let (crt, _) = issue_leaf(&bundle.os.crt, bundle.os.key.expose_secret(), &short).unwrap();
        let at = not_after(&crt).unwrap();
        let now = time::OffsetDateTime::now_utc();
        assert!(due(at, now));
        let days = (at - now).whole_days();
        assert!((9..=10).contains(&days), "{days}");

        let tc = crate::config::admin_talosconfig("c", &bundle, &["10.0.0.1".into()], &[])
            .unwrap()
            .to_yaml();
        let year = talosconfig_client_expiry(&tc).unwrap();
        assert!(!due(year, now));
        assert!((year - now).whole_days() >= 364, "{year}");
        let kc = crate::kubeconfig::generate_admin(&bundle, "c", "https://10.0.0.1:6443").unwrap();
        let year = kubeconfig_client_expiry(&kc).unwrap();
        assert!((year - now).whole_days() >= 364, "{year}");
        assert!(not_after("not a pem").is_err());
        let e = Expiry::at(at, now);
        assert!(e.due);
        assert!(e.expires.ends_with('Z'), "{e:?}");
    }
}
