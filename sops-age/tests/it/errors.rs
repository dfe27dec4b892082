//! Distinct errors for each failure, with messages that say what to do.

use sops_age::{EncryptOptions, Error, Format, Identities, Recipient};

fn setup() -> (Identities, Recipient) {
    let mut ids = Identities::new();
    let r = Recipient::parse(&ids.generate()).unwrap();
    (ids, r)
}

#[test]
fn wrong_identity_is_no_matching_key() {
    let (_, r) = setup();
    let (other, _) = setup();
    let enc = sops_age::encrypt(
        b"a: 1\n",
        Format::Yaml,
        &EncryptOptions::new(vec![r.clone()]),
    )
    .unwrap();
    let err = sops_age::decrypt(&enc, Format::Yaml, &other).unwrap_err();
    assert!(matches!(err, Error::NoMatchingKey { .. }), "{err}");
    assert!(err.to_string().contains(r.as_str()));
    let err = sops_age::decrypt(&enc, Format::Yaml, &Identities::new()).unwrap_err();
    assert!(matches!(err, Error::NoIdentities { .. }), "{err}");
}

#[test]
fn already_encrypted_and_missing_metadata() {
    let (ids, r) = setup();
    let opts = EncryptOptions::new(vec![r]);
    for format in [Format::Yaml, Format::Json, Format::Dotenv] {
        let plain: &[u8] = match format {
            Format::Yaml => b"a: 1\n",
            Format::Json => b"{\"a\": 1}",
            _ => b"A=1\n",
        };
        let enc = sops_age::encrypt(plain, format, &opts).unwrap();
        assert!(matches!(
            sops_age::encrypt(&enc, format, &opts),
            Err(Error::AlreadyEncrypted)
        ));
        assert!(matches!(
            sops_age::decrypt(plain, format, &ids),
            Err(Error::MissingMetadata)
        ));
    }
}

#[test]
fn parse_errors_say_where() {
    let (_, r) = setup();
    let err = sops_age::encrypt(
        b"a: 1\nb: [unclosed\n",
        Format::Yaml,
        &EncryptOptions::new(vec![r]),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Parse { .. }) && msg.contains("line"),
        "{msg}"
    );
}

#[test]
fn env_discovery_combines_sources() {
    let dir = tempfile::tempdir().unwrap();
    let a = age::x25519::Identity::generate();
    let b = age::x25519::Identity::generate();
    let c = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    let file = dir.path().join("k.txt");
    std::fs::write(
        &file,
        format!("# comment\n\n{}\n", b.to_string().expose_secret()),
    )
    .unwrap();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("sops/age")).unwrap();
    std::fs::write(xdg.join("sops/age/keys.txt"), c.to_string().expose_secret()).unwrap();
    let inline = a.to_string().expose_secret().to_owned();
    let file_s = file.display().to_string();
    let xdg_s = xdg.display().to_string();
    let home_s = dir.path().display().to_string();
    let ids = Identities::from_env_with(&|k| match k {
        "SOPS_AGE_KEY" => Some(inline.clone()),
        "SOPS_AGE_KEY_FILE" => Some(file_s.clone()),
        "SOPS_AGE_KEY_CMD" => Some("echo not-a-key".into()),
        "XDG_CONFIG_HOME" => Some(xdg_s.clone()),
        "HOME" => Some(home_s.clone()),
        _ => None,
    });
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(
        ids.load_errors().len(),
        1,
        "the bad KEY_CMD output is reported"
    );
    for id in [&a, &b, &c] {
        let r = Recipient::parse(&id.to_public().to_string()).unwrap();
        let enc =
            sops_age::encrypt(b"k: v\n", Format::Yaml, &EncryptOptions::new(vec![r])).unwrap();
        assert!(sops_age::decrypt(&enc, Format::Yaml, &ids).is_ok());
    }
}
