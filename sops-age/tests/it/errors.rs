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

#[test]
fn key_cmd_and_default_ssh_key_are_used() {
    use age::secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let a = age::x25519::Identity::generate();
    let keyfile = dir.path().join("from-cmd.txt");
    std::fs::write(&keyfile, a.to_string().expose_secret()).unwrap();
    let cmd = format!("cat '{}'", keyfile.display());
    let home = dir.path().display().to_string();
    // ~/.ssh/id_ed25519 is picked up by default (when ssh-keygen exists to make one)
    std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
    let ssh = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
        .arg(dir.path().join(".ssh/id_ed25519"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let ids = Identities::from_env_with(&|k| match k {
        "SOPS_AGE_KEY_CMD" => Some(cmd.clone()),
        "HOME" => Some(home.clone()),
        _ => None,
    });
    assert!(ids.load_errors().is_empty(), "{:?}", ids.load_errors());
    let r = Recipient::parse(&a.to_public().to_string()).unwrap();
    let enc = sops_age::encrypt(b"k: v\n", Format::Yaml, &EncryptOptions::new(vec![r])).unwrap();
    assert!(sops_age::decrypt(&enc, Format::Yaml, &ids).is_ok());
    if ssh {
        assert_eq!(ids.len(), 2);
        let public = std::fs::read_to_string(dir.path().join(".ssh/id_ed25519.pub")).unwrap();
        let r = Recipient::parse(&public).unwrap();
        let enc =
            sops_age::encrypt(b"k: v\n", Format::Yaml, &EncryptOptions::new(vec![r])).unwrap();
        assert!(sops_age::decrypt(&enc, Format::Yaml, &ids).is_ok());
    } else {
        crate::common::skip_or_fail("default SSH key discovery: ssh-keygen not available");
    }
}
