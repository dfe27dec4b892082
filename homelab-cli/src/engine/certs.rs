//! The admin client certificates in the outputs (talosconfig, kubeconfig): when they
//! expire (`status`), and which outputs `up` re-issues because they expire within
//! [`talos_api::expiry::RENEW_BEFORE`] (30 days), from the CAs in the secrets bundle.

use serde::Serialize;

/// One output's client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputCert {
    /// `talosconfig` or `kubeconfig`.
    pub output: String,
    /// The file.
    pub path: String,
    /// `notAfter`, RFC 3339.
    pub expires: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// Whether `up` re-issues it (expires within 30 days).
    pub renew: bool,
}

/// The expiry of an output's client certificate, from its decrypted text.
pub fn inspect(output: &str, path: &str, text: &str) -> Option<OutputCert> {
    let at = match output {
        "talosconfig" => talos_api::expiry::talosconfig_client_expiry(text),
        _ => talos_api::expiry::kubeconfig_client_expiry(text),
    }
    .ok()?;
    let e = talos_api::expiry::Expiry::now(at);
    Some(OutputCert {
        output: output.into(),
        path: path.into(),
        expires: e.expires,
        days_left: e.days_left,
        renew: e.due,
    })
}

/// The plan's reason to re-issue an output.
pub fn reason(c: &OutputCert) -> String {
    if c.days_left < 0 {
        format!(
            "its client certificate expired on {} and is re-issued",
            &c.expires[..10.min(c.expires.len())]
        )
    } else {
        format!(
            "its client certificate expires on {} (in {} days) and is re-issued",
            &c.expires[..10.min(c.expires.len())],
            c.days_left
        )
    }
}

/// The outputs' certificates of a homelab (those that exist and decrypt).
pub fn of_outputs(
    ws: &crate::workspace::Workspace,
    desired: &crate::model::desired::Desired,
) -> Vec<OutputCert> {
    let mut out = Vec::new();
    for (what, path) in [
        ("talosconfig", &desired.outputs.talosconfig),
        ("kubeconfig", &desired.outputs.kubeconfig),
    ] {
        if let Ok(Some(plain)) = ws.decrypt(path)
            && let Ok(text) = std::str::from_utf8(&plain)
            && let Some(c) = inspect(what, &path.display().to_string(), text)
        {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_date_and_days() {
        let c = OutputCert {
            output: "kubeconfig".into(),
            path: "kubeconfig.enc.yaml".into(),
            expires: "2026-12-16T10:00:00Z".into(),
            days_left: 9,
            renew: true,
        };
        assert_eq!(
            reason(&c),
            "its client certificate expires on 2026-12-16 (in 9 days) and is re-issued"
        );
        let c = OutputCert { days_left: -1, ..c };
        assert!(reason(&c).contains("expired on 2026-12-16"));
    }
}
