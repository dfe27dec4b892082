//! Interop with the real `sops` binary, both directions, all five formats.

use sops_age::{Decrypted, EncryptOptions, EncryptedFile, Format, SelectionRule, Value};

use crate::common::{Lab, file_name, have_sops, parse_plain};

const FORMATS: [Format; 5] = [
    Format::Yaml,
    Format::Json,
    Format::Dotenv,
    Format::Ini,
    Format::Binary,
];

/// A small deterministic generator so that every seed gives a different document.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn word(&mut self) -> String {
        const PARTS: [&str; 10] = [
            "alpha",
            "Ünïcødé",
            "日本語",
            "🔐",
            "x-y_z",
            "with space",
            "42abc",
            "€uro",
            "ñ",
            "tail",
        ];
        let n = 1 + self.next() % 3;
        (0..n)
            .map(|_| PARTS[(self.next() % PARTS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join("-")
    }
    fn int(&mut self) -> i64 {
        (self.next() % 2_000_000) as i64 - 1_000_000
    }
    fn float(&mut self) -> f64 {
        (self.next() % 100_000) as f64 / 64.0 + 0.5
    }
}

/// A generated plaintext document of `format` (nested maps, lists, unicode, numbers,
/// booleans, empty values, comments where the format has them).
pub fn generated(format: Format, seed: u64) -> Vec<u8> {
    let mut g = Gen(seed + 7);
    match format {
        Format::Yaml => {
            let mut s = format!("# generated document {seed}\n");
            s.push_str(&format!("name: \"{}\"\n", g.word()));
            s.push_str(&format!("count: {}\nratio: {}\n", g.int(), g.float()));
            s.push_str("enabled: true\ndisabled: false\nempty: \"\"\nnothing: null\nwhen: 2024-01-02\n");
            s.push_str("nested:\n    # a nested comment\n    deeper:\n        list:\n");
            for _ in 0..(1 + g.next() % 4) {
                s.push_str(&format!("            - \"{}\"\n            - {}\n", g.word(), g.int()));
            }
            s.push_str("            - sub: value\n              other: \"yes\"\n            - true\n");
            s.push_str(&format!("        password_unencrypted: {}\n", "plain-text"));
            s.push_str(&format!("    multiline: |\n        line one {}\n        line two\n", g.word()));
            s.push_str("    emptymap: {}\n    emptylist: []\n");
            s.push_str(&format!("quoted: 'a: b {}'\n", g.next()));
            s.push_str("# trailing comment\n");
            s.push_str(&format!("last: {}\n", g.float()));
            s.into_bytes()
        }
        Format::Json => format!(
            "{{\"name\": \"{}\", \"count\": {}, \"ratio\": {}, \"enabled\": true, \"empty\": \"\", \
             \"nothing\": null, \"html\": \"<a href=\\\"x\\\">&</a>\", \"nested\": {{\"list\": [{}, \"{}\", {{\"x\": false}}, []], \
             \"deep\": {{\"k\": \"{}\", \"plain_unencrypted\": \"visible\"}}}}, \"emptyobj\": {{}}, \"emptyarr\": []}}",
            g.word(),
            g.int(),
            g.float(),
            g.int(),
            g.word(),
            g.word()
        )
        .into_bytes(),
        Format::Dotenv => format!(
            "# dotenv comment {seed}\nNAME={}\nEMPTY=\nMULTI=line1\\nline2\nQUOTED=\"kept quotes\"\nNUM={}\nPUBLIC_unencrypted=visible\n",
            g.word(),
            g.int()
        )
        .into_bytes(),
        Format::Ini => format!(
            "[database]\n; db comment\nhost = {}\nport = {}\n\n[app]\nname = {}\nratio = {}\n",
            g.word().replace(' ', "_"),
            g.int(),
            g.word().replace(' ', "_"),
            g.float()
        )
        .into_bytes(),
        _ => {
            let mut b: Vec<u8> = (0..(64 + g.next() % 512)).map(|_| g.next() as u8).collect();
            b.extend_from_slice("\u{1F510} and invalid utf8: \u{0}".as_bytes());
            b.push(0xff);
            b
        }
    }
}

fn assert_same(format: Format, got: &[u8], want: &[u8]) {
    if format == Format::Binary {
        assert_eq!(got, want, "binary content differs");
        return;
    }
    assert_eq!(
        parse_plain(format, got),
        parse_plain(format, want),
        "documents differ:\n--- got ---\n{}\n--- want ---\n{}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn ours_encrypt_then_sops_decrypts_every_format() {
    if !have_sops("ours_encrypt_then_sops_decrypts_every_format") {
        return;
    }
    let lab = Lab::new(1);
    for format in FORMATS {
        for seed in 0..3 {
            let plain = generated(format, seed);
            let enc =
                sops_age::encrypt(&plain, format, &EncryptOptions::new(vec![lab.recipient(0)]))
                    .unwrap();
            let name = file_name(format);
            lab.write(name, &enc);
            let out = lab.sops_ok(&["decrypt", name]);
            assert_same(format, &out, &plain);
        }
    }
}

#[test]
fn sops_encrypt_then_ours_decrypts_every_format() {
    if !have_sops("sops_encrypt_then_ours_decrypts_every_format") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    for format in FORMATS {
        for seed in 0..3 {
            let plain = generated(format, seed);
            let name = file_name(format);
            lab.write(name, &plain);
            let enc = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, name]);
            let out = sops_age::decrypt(&enc, format, &ids).unwrap();
            assert_same(format, &out, &plain);
            // and our own re-emission of sops' file is accepted by sops again
            let mut d = Decrypted::open(&enc, format, &ids).unwrap();
            let again = d.encrypt(false).unwrap();
            lab.write(name, &again);
            assert_same(format, &lab.sops_ok(&["decrypt", name]), &plain);
        }
    }
}

#[test]
fn metadata_layout_matches_sops() {
    if !have_sops("metadata_layout_matches_sops") {
        return;
    }
    let lab = Lab::new(1);
    for format in [Format::Yaml, Format::Json, Format::Dotenv] {
        let plain = generated(format, 1);
        let name = file_name(format);
        lab.write(name, &plain);
        let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, name]);
        let ours = sops_age::encrypt(&plain, format, &EncryptOptions::new(vec![lab.recipient(0)]))
            .unwrap();
        // Same shape: identical lines once ciphertexts, armor bodies and timestamps are masked.
        let mask = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| {
                    let l = match l.find("ENC[") {
                        Some(i) => format!("{}ENC", &l[..i]),
                        None => l.to_owned(),
                    };
                    let l = match l.find("lastmodified") {
                        Some(i) => format!("{}lastmodified", &l[..i]),
                        None => l,
                    };
                    match l.find("-----BEGIN AGE") {
                        Some(i) => format!("{}armor", &l[..i]),
                        None => l,
                    }
                })
                .filter(|l| {
                    let t = l.trim();
                    !(t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
                        || t.starts_with("-----END"))
                })
                .collect()
        };
        let (o, t) = (mask(&ours), mask(&theirs));
        assert_eq!(
            o,
            t,
            "{format}: layout differs\nours:\n{}\ntheirs:\n{}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }
}

#[test]
fn selection_rules_pick_the_same_values_as_sops() {
    if !have_sops("selection_rules_pick_the_same_values_as_sops") {
        return;
    }
    let lab = Lab::new(1);
    let plain = generated(Format::Yaml, 2);
    lab.write("doc.yaml", &plain);
    let cases: [(&str, SelectionRule); 3] = [
        (
            "--encrypted-regex",
            SelectionRule::EncryptedRegex("^(name|list)$".into()),
        ),
        (
            "--unencrypted-regex",
            SelectionRule::UnencryptedRegex("^nest".into()),
        ),
        (
            "--encrypted-suffix",
            SelectionRule::EncryptedSuffix("ed".into()),
        ),
    ];
    for (flag, rule) in cases {
        let theirs = lab.sops_ok(&[
            "encrypt",
            "--age",
            &lab.keys[0].1,
            flag,
            rule.value(),
            "doc.yaml",
        ]);
        let ours = sops_age::encrypt(
            &plain,
            Format::Yaml,
            &EncryptOptions::new(vec![lab.recipient(0)]).with_rule(rule.clone()),
        )
        .unwrap();
        let shape = |b: &[u8]| -> Vec<(String, bool)> {
            String::from_utf8_lossy(b)
                .lines()
                .take_while(|l| !l.starts_with("sops:"))
                .map(|l| {
                    let key = l.split("ENC[").next().unwrap_or("").to_owned();
                    (key, l.contains("ENC["))
                })
                .collect()
        };
        assert_eq!(shape(&ours), shape(&theirs), "rule {rule:?}");
        lab.write("ours.yaml", &ours);
        assert_same(
            Format::Yaml,
            &lab.sops_ok(&["decrypt", "ours.yaml"]),
            &plain,
        );
    }
}

#[test]
fn sops_set_on_our_file_and_our_set_on_theirs() {
    if !have_sops("sops_set_on_our_file_and_our_set_on_theirs") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    let plain = generated(Format::Yaml, 0);
    let ours = sops_age::encrypt(
        &plain,
        Format::Yaml,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    lab.write("ours.yaml", &ours);
    lab.sops_ok(&[
        "set",
        "ours.yaml",
        r#"["nested"]["deeper"]["added"]"#,
        r#""from sops""#,
    ]);
    let after = lab.read("ours.yaml");
    let d = Decrypted::open(&after, Format::Yaml, &ids).unwrap();
    assert_eq!(
        d.get(r#"["nested"]["deeper"]["added"]"#).unwrap(),
        &Value::String("from sops".into())
    );
    // sops reused our IVs: the `name` line is byte-identical
    let line = |b: &[u8], k: &str| {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .to_owned()
    };
    assert_eq!(line(&ours, "name:"), line(&after, "name:"));

    lab.write("theirs.yaml", &plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "theirs.yaml"]);
    let mut d = Decrypted::open(&theirs, Format::Yaml, &ids).unwrap();
    assert!(
        d.set(r#"["name"]"#, Value::String("changed by us".into()))
            .unwrap()
    );
    let written = d.encrypt(false).unwrap();
    lab.write("theirs.yaml", &written);
    let out = lab.sops_ok(&["decrypt", "--extract", r#"["name"]"#, "theirs.yaml"]);
    assert_eq!(out, b"changed by us");
    // unchanged values keep sops' ciphertext
    assert_eq!(line(&theirs, "count:"), line(&written, "count:"));
    assert_ne!(line(&theirs, "name:"), line(&written, "name:"));
}

#[test]
fn updatekeys_both_directions() {
    if !have_sops("updatekeys_both_directions") {
        return;
    }
    let lab = Lab::new(2);
    let plain = generated(Format::Json, 0);
    let ours = sops_age::encrypt(
        &plain,
        Format::Json,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    lab.write("ours.json", &ours);
    lab.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - age: {},{}\n",
            lab.keys[0].1, lab.keys[1].1
        )
        .as_bytes(),
    );
    lab.sops_ok(&["updatekeys", "-y", "ours.json"]);
    let updated = lab.read("ours.json");
    // values, MAC and lastmodified untouched; key 1 alone now decrypts
    let old = EncryptedFile::parse(&ours, Format::Json).unwrap();
    let new = EncryptedFile::parse(&updated, Format::Json).unwrap();
    assert_eq!(old.metadata().mac, new.metadata().mac);
    assert_eq!(new.metadata().recipients().len(), 2);
    assert_same(
        Format::Json,
        &sops_age::decrypt(&updated, Format::Json, &lab.identities(&[1])).unwrap(),
        &plain,
    );

    // ours on theirs: sops file for key 0, we add key 1, sops with only key 1 decrypts
    std::fs::remove_file(lab.path(".sops.yaml")).unwrap();
    lab.write("theirs.json", &plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "theirs.json"]);
    let mut f = EncryptedFile::parse(&theirs, Format::Json).unwrap();
    assert!(
        f.update_keys(
            &[vec![lab.recipient(0), lab.recipient(1)]],
            0,
            &lab.identities(&[0])
        )
        .unwrap()
    );
    let bytes = f.to_bytes(&Default::default()).unwrap();
    lab.write("theirs.json", &bytes);
    lab.write_keyfile(&[1]);
    assert_same(
        Format::Json,
        &lab.sops_ok(&["decrypt", "theirs.json"]),
        &plain,
    );
}

#[test]
fn rotate_both_directions() {
    if !have_sops("rotate_both_directions") {
        return;
    }
    let lab = Lab::new(2);
    let plain = generated(Format::Dotenv, 0);
    let ours = sops_age::encrypt(
        &plain,
        Format::Dotenv,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    lab.write("ours.env", &ours);
    lab.sops_ok(&["rotate", "-i", "--add-age", &lab.keys[1].1, "ours.env"]);
    let rotated = lab.read("ours.env");
    assert_same(
        Format::Dotenv,
        &sops_age::decrypt(&rotated, Format::Dotenv, &lab.identities(&[1])).unwrap(),
        &plain,
    );

    lab.write("theirs.env", &plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "theirs.env"]);
    let mut d = Decrypted::open(&theirs, Format::Dotenv, &lab.identities(&[0])).unwrap();
    let out = d
        .rotate(&[lab.recipient(1)], &[lab.keys[0].1.clone()])
        .unwrap();
    lab.write("theirs.env", &out);
    lab.write_keyfile(&[1]);
    assert_same(
        Format::Dotenv,
        &lab.sops_ok(&["decrypt", "theirs.env"]),
        &plain,
    );
    lab.write_keyfile(&[0]);
    assert!(
        !lab.sops(&["decrypt", "theirs.env"]).status.success(),
        "removed key still decrypts"
    );
}

#[test]
fn mac_only_encrypted_both_directions() {
    if !have_sops("mac_only_encrypted_both_directions") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    let plain = generated(Format::Yaml, 1);
    let opts = EncryptOptions::new(vec![lab.recipient(0)])
        .with_rule(SelectionRule::EncryptedRegex("^name$".into()))
        .with_mac_only_encrypted(true);
    let ours = sops_age::encrypt(&plain, Format::Yaml, &opts).unwrap();
    assert!(String::from_utf8_lossy(&ours).contains("mac_only_encrypted: true"));
    lab.write("ours.yaml", &ours);
    assert_same(
        Format::Yaml,
        &lab.sops_ok(&["decrypt", "ours.yaml"]),
        &plain,
    );
    // editing an unencrypted value keeps the MAC valid (that is the point of the option)
    let edited = String::from_utf8(ours)
        .unwrap()
        .replace("enabled: true", "enabled: false");
    assert!(sops_age::decrypt(edited.as_bytes(), Format::Yaml, &ids).is_ok());

    lab.write("theirs.yaml", &plain);
    let theirs = lab.sops_ok(&[
        "--encrypt",
        "--mac-only-encrypted",
        "--age",
        &lab.keys[0].1,
        "--encrypted-regex",
        "^name$",
        "theirs.yaml",
    ]);
    assert_same(
        Format::Yaml,
        &sops_age::decrypt(&theirs, Format::Yaml, &ids).unwrap(),
        &plain,
    );
}

#[test]
fn shamir_key_groups_both_directions() {
    if !have_sops("shamir_key_groups_both_directions") {
        return;
    }
    let lab = Lab::new(3);
    let plain = generated(Format::Yaml, 0);
    let mut opts = EncryptOptions::new(vec![]);
    opts.key_groups = vec![
        vec![lab.recipient(0)],
        vec![lab.recipient(1)],
        vec![lab.recipient(2)],
    ];
    opts.shamir_threshold = 2;
    let ours = sops_age::encrypt(&plain, Format::Yaml, &opts).unwrap();
    lab.write("ours.yaml", &ours);
    lab.write_keyfile(&[0, 2]);
    assert_same(
        Format::Yaml,
        &lab.sops_ok(&["decrypt", "ours.yaml"]),
        &plain,
    );
    // one group is not enough
    assert!(matches!(
        sops_age::decrypt(&ours, Format::Yaml, &lab.identities(&[1])),
        Err(sops_age::Error::NoMatchingKey { .. })
    ));

    lab.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n      - age: [{}]\n",
            lab.keys[0].1, lab.keys[1].1, lab.keys[2].1
        )
        .as_bytes(),
    );
    lab.write("theirs.yaml", &plain);
    let theirs = lab.sops_ok(&["encrypt", "theirs.yaml"]);
    assert_same(
        Format::Yaml,
        &sops_age::decrypt(&theirs, Format::Yaml, &lab.identities(&[1, 2])).unwrap(),
        &plain,
    );
}

#[test]
fn ssh_ed25519_recipients_both_directions() {
    if !have_sops("ssh_ed25519_recipients_both_directions") {
        return;
    }
    let lab = Lab::new(1);
    let key = lab.path("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@lab", "-f"])
        .arg(&key)
        .status();
    if !st.map(|s| s.success()).unwrap_or(false) {
        crate::common::skip_or_fail(
            "ssh_ed25519_recipients_both_directions: ssh-keygen not available",
        );
        return;
    }
    let public = std::fs::read_to_string(lab.path("id_ed25519.pub")).unwrap();
    let recipient = sops_age::Recipient::parse(&public).unwrap();
    let plain = generated(Format::Yaml, 2);
    let ours =
        sops_age::encrypt(&plain, Format::Yaml, &EncryptOptions::new(vec![recipient])).unwrap();
    lab.write("ours.yaml", &ours);
    lab.write_keyfile(&[]);
    let out = std::process::Command::new("sops")
        .args(["decrypt", "ours.yaml"])
        .current_dir(lab.dir.path())
        .env("HOME", lab.dir.path())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env("SOPS_AGE_KEY_FILE", lab.path("keys.txt"))
        .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &key)
        .env_remove("SOPS_AGE_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(Format::Yaml, &out.stdout, &plain);

    lab.write("theirs.yaml", &plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", public.trim(), "theirs.yaml"]);
    let mut ids = sops_age::Identities::new();
    ids.add_file(&key).unwrap();
    assert_same(
        Format::Yaml,
        &sops_age::decrypt(&theirs, Format::Yaml, &ids).unwrap(),
        &plain,
    );
}

#[test]
fn tampering_is_detected_on_files_from_either_tool() {
    if !have_sops("tampering_is_detected_on_files_from_either_tool") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    let plain = b"a: one\nb: two\nnote_unencrypted: visible\n";
    lab.write("t.yaml", plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "t.yaml"]);
    let ours = sops_age::encrypt(
        plain,
        Format::Yaml,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    for file in [theirs, ours] {
        let text = String::from_utf8(file).unwrap();
        // changing an unencrypted value breaks the MAC
        let t1 = text.replace("note_unencrypted: visible", "note_unencrypted: changed");
        assert!(matches!(
            sops_age::decrypt(t1.as_bytes(), Format::Yaml, &ids),
            Err(sops_age::Error::MacMismatch { .. })
        ));
        lab.write("t1.yaml", t1.as_bytes());
        assert!(!lab.sops(&["decrypt", "t1.yaml"]).status.success());
        // moving a ciphertext to another key fails authentication (the AAD is the path)
        let lines: Vec<&str> = text.lines().collect();
        let a = lines.iter().find(|l| l.starts_with("a: ")).unwrap();
        let b = lines.iter().find(|l| l.starts_with("b: ")).unwrap();
        let t2 = text
            .replace(b, &b.replacen("b: ", "tmp: ", 1))
            .replace(a, &format!("b: {}", &a[3..]))
            .replace("tmp: ", "a: ");
        assert!(matches!(
            sops_age::decrypt(t2.as_bytes(), Format::Yaml, &ids),
            Err(sops_age::Error::WrongKey { .. })
        ));
        // a malformed ENC value has its own error
        let t3 = text.replacen("ENC[AES256_GCM,data:", "ENC[AES256_GCM,dota:", 1);
        assert!(matches!(
            sops_age::decrypt(t3.as_bytes(), Format::Yaml, &ids),
            Err(sops_age::Error::MalformedEnc { .. })
        ));
    }
}

#[test]
fn unchanged_values_keep_their_ciphertext() {
    if !have_sops("unchanged_values_keep_their_ciphertext") {
        return;
    }
    let lab = Lab::new(1);
    let plain = generated(Format::Yaml, 0);
    lab.write("doc.yaml", &plain);
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "doc.yaml"]);
    let mut d = Decrypted::open(&theirs, Format::Yaml, &lab.identities(&[0])).unwrap();
    let again = d.encrypt(false).unwrap();
    let changed: Vec<(String, String)> = String::from_utf8_lossy(&theirs)
        .lines()
        .zip(String::from_utf8_lossy(&again).lines())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert!(
        changed
            .iter()
            .all(|(a, _)| a.trim_start().starts_with("lastmodified")
                || a.trim_start().starts_with("mac:")),
        "unexpected changes: {changed:#?}"
    );
}

#[test]
fn filestatus_agrees_with_sops() {
    if !have_sops("filestatus_agrees_with_sops") {
        return;
    }
    let lab = Lab::new(1);
    let plain = generated(Format::Json, 0);
    let ours = sops_age::encrypt(
        &plain,
        Format::Json,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    for (name, data, want) in [("p.json", &plain, false), ("e.json", &ours, true)] {
        lab.write(name, data);
        let out = lab.sops_ok(&["filestatus", name]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["encrypted"], want);
        assert_eq!(sops_age::file_status(data, Format::Json), want);
    }
}

#[test]
fn multi_document_yaml_both_directions() {
    if !have_sops("multi_document_yaml_both_directions") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    let plain =
        "# doc one\na: 1\nb:\n    - x\n    - y\n---\n# doc two\nc: secret\nd:\n    e: true\n";
    let ours = sops_age::encrypt(
        plain.as_bytes(),
        Format::Yaml,
        &EncryptOptions::new(vec![lab.recipient(0)]),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&ours).into_owned();
    assert_eq!(
        text.matches("\nsops:\n").count(),
        2,
        "each document gets its own sops block:\n{text}"
    );
    lab.write("multi.yaml", &ours);
    assert_same(
        Format::Yaml,
        &lab.sops_ok(&["decrypt", "multi.yaml"]),
        plain.as_bytes(),
    );

    lab.write("theirs.yaml", plain.as_bytes());
    let theirs = lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "theirs.yaml"]);
    assert_same(
        Format::Yaml,
        &sops_age::decrypt(&theirs, Format::Yaml, &ids).unwrap(),
        plain.as_bytes(),
    );
}

#[test]
fn legacy_and_shuffled_metadata_is_read() {
    if !have_sops("legacy_and_shuffled_metadata_is_read") {
        return;
    }
    let lab = Lab::new(1);
    let ids = lab.identities(&[0]);
    // A pre-3.10 layout: empty key-type lists, quoted lastmodified, old version.
    let plain = generated(Format::Yaml, 0);
    lab.write("doc.yaml", &plain);
    let theirs =
        String::from_utf8(lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "doc.yaml"])).unwrap();
    let legacy = theirs
        .replace(
            "sops:\n    age:",
            "sops:\n    kms: []\n    gcp_kms: []\n    azure_kv: []\n    hc_vault: []\n    age:",
        )
        .replace("version: 3.11.0", "version: 3.7.1");
    assert_same(
        Format::Yaml,
        &sops_age::decrypt(legacy.as_bytes(), Format::Yaml, &ids).unwrap(),
        &plain,
    );
    let mut d = Decrypted::open(legacy.as_bytes(), Format::Yaml, &ids).unwrap();
    let kept = String::from_utf8(d.encrypt(false).unwrap()).unwrap();
    assert!(
        kept.contains("version: 3.7.1"),
        "set/rotate keep the version"
    );
    let bumped = String::from_utf8(d.encrypt(true).unwrap()).unwrap();
    assert!(
        bumped.contains("version: 3.11.0"),
        "edit bumps an older version"
    );
    lab.write("bumped.yaml", bumped.as_bytes());
    assert_same(
        Format::Yaml,
        &lab.sops_ok(&["decrypt", "bumped.yaml"]),
        &plain,
    );

    // INI metadata comes in random order from sops; any order must be read.
    let plain = generated(Format::Ini, 1);
    lab.write("doc.ini", &plain);
    let theirs =
        String::from_utf8(lab.sops_ok(&["encrypt", "--age", &lab.keys[0].1, "doc.ini"])).unwrap();
    let (data, meta) = theirs.split_once("[sops]\n").unwrap();
    let mut lines: Vec<&str> = meta.lines().collect();
    lines.reverse();
    let shuffled = format!("{data}[sops]\n{}\n", lines.join("\n"));
    assert_same(
        Format::Ini,
        &sops_age::decrypt(shuffled.as_bytes(), Format::Ini, &ids).unwrap(),
        &plain,
    );
}
