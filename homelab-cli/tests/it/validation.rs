//! Bad input caught by `check --offline` before anything reaches Proxmox (issue 18): sizes,
//! calendar events, negative numbers, and secrets that cannot be read.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common::Repo;

const SERVICES: &[&str] = &[
    "homelab.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
    "secrets.enc.yaml",
];

/// `check --offline`: exit code and everything it printed.
fn check(repo: &Repo) -> (Option<i32>, String) {
    let out = repo.cli(&["check", "--offline"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_example_passes() {
    let repo = Repo::copy("services", SERVICES);
    let (code, text) = check(&repo);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_zero_disk_is_refused_once_at_its_own_line() {
    let repo = Repo::copy("services", SERVICES);
    repo.edit("    disk: 8GiB", "    disk: 0");
    let (code, text) = check(&repo);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("is below 1GiB").count(), 1, "{text}");
    let yaml = std::fs::read_to_string(repo.config()).unwrap();
    let line = yaml.lines().position(|l| l == "    disk: 0").unwrap() + 1;
    assert!(text.contains(&format!("homelab.yaml:{line}")), "{text}");
}

#[test]
fn an_impossible_time_is_not_a_calendar_event() {
    let repo = Repo::copy("services", SERVICES);
    repo.edit("schedule: \"02:30\"", "schedule: \"25:99\"");
    let (code, text) = check(&repo);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("hour 25 is out of range"), "{text}");
}

#[test]
fn a_negative_memory_says_so() {
    let repo = Repo::copy("services", SERVICES);
    repo.edit("    memory: 512MiB", "    memory: -1");
    let (code, text) = check(&repo);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot be negative"), "{text}");
    assert!(!text.contains("untagged enum"), "{text}");
}

#[test]
fn check_fails_when_the_secrets_cannot_be_read() {
    let repo = Repo::copy("services", SERVICES);
    std::fs::remove_file(repo.dir.path().join("secrets.enc.yaml")).unwrap();
    let (code, text) = check(&repo);
    assert_eq!(code, Some(1), "missing: {text}");
    assert!(text.contains("secrets cannot be read"), "{text}");

    let repo = Repo::copy("services", SERVICES);
    std::fs::remove_file(repo.dir.path().join("demo-age-key.txt")).unwrap();
    let (code, text) = check(&repo);
    assert_eq!(code, Some(1), "no key: {text}");
}

#[test]
fn a_bad_nameserver_many_containers_inherit_is_reported_once() {
    let repo = Repo::copy("services", SERVICES);
    repo.edit(
        "nameservers: [10.0.10.1]",
        "nameservers: [10.0.10.1, \"bad ns\"]",
    );
    let (code, text) = check(&repo);
    let text = crate::common::flat(text.as_bytes());
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("is not an IP address").count(), 1, "{text}");
    assert!(text.contains("found 1 problem(s)"), "{text}");
}

/// 100k nested `[` are refused at once (linear scan; `cargo xtask yaml-bench` measures it)
/// with the line and column where the limit is crossed.
#[test]
fn deeply_nested_input_is_refused_with_its_location() {
    let repo = Repo::copy("services", SERVICES);
    let yaml = std::fs::read_to_string(repo.config()).unwrap();
    repo.write(&format!("{yaml}junk: {}\n", "[".repeat(100_000)));
    let line = yaml.lines().count() + 1;
    let (code, text) = check(&repo);
    let text = crate::common::flat(text.as_bytes());
    assert_eq!(code, Some(1), "{}", &text[..text.len().min(2000)]);
    assert!(
        text.contains(&format!(
            "homelab.yaml:{line}:{}: nested more than 64 levels deep",
            6 + 65
        )),
        "{}",
        &text[..text.len().min(2000)]
    );

    // The same for block entries opened on one line.
    repo.write(&format!("{yaml}junk:\n  {}x\n", "- ".repeat(100_000)));
    let (code, text) = check(&repo);
    let text = crate::common::flat(text.as_bytes());
    assert_eq!(code, Some(1));
    assert!(text.contains("nested more than 64 levels deep"));
}

#[test]
fn binary_junk_is_located_by_line_and_column() {
    let repo = Repo::copy("services", SERVICES);
    let mut bytes = b"name: lab\nproxmox:\n  node: p\xc3\x28ve\n".to_vec();
    bytes.extend_from_slice(&[0xff; 64]);
    std::fs::write(repo.config(), bytes).unwrap();
    let (code, text) = check(&repo);
    let text = crate::common::flat(text.as_bytes());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("homelab.yaml:3:10: byte 0xc3 is not UTF-8"),
        "{text}"
    );
    assert!(!text.contains("homelab-cli init"), "{text}");
}

#[test]
fn a_file_too_large_to_be_a_configuration_is_refused_unread() {
    let repo = Repo::copy("services", SERVICES);
    let f = std::fs::File::create(repo.config()).unwrap();
    f.set_len(64 * 1024 * 1024).unwrap();
    let (code, text) = check(&repo);
    let text = crate::common::flat(text.as_bytes());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is larger than 4 MiB"), "{text}");
}
