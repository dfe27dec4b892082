//! `homelab-cli completions <shell>` as a user runs it.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completion_scripts_for_each_shell() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    let text = String::from_utf8(bash.stdout).unwrap();
    assert!(text.contains("complete -F _homelab__cli"), "{text}");
    assert!(text.contains("--simulate"), "plan's flags are completed");
    let zsh = run(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef homelab-cli"));
    for shell in ["fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{shell}");
    }
    // An unknown shell is a usage error (exit 2) naming the choices.
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash"));
}

#[test]
fn bash_accepts_the_script() {
    let bash = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("homelab-cli.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    // `bash -n` parses without running: the script is valid bash.
    match Command::new("bash").arg("-n").arg(&file).output() {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => crate::common::skip_or_fail(&format!("bash not runnable ({e})")),
    }
}
