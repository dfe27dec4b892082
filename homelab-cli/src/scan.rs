//! Finding plaintext secrets in a repository, as the pre-commit hook does: private keys,
//! age identities, Proxmox tokens, Talos/Kubernetes client keys, and `*.enc.yaml` files
//! that are not actually SOPS-encrypted.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Marker that allows an age identity in a file (the examples' public demo keys).
pub const DEMO_KEY_MARKER: &str = "homelab-cli: DEMO KEY";

/// One plaintext secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// File.
    pub path: PathBuf,
    /// 1-based line (0 for whole-file findings).
    pub line: usize,
    /// What was found.
    pub what: String,
}

/// Scan one file's text.
pub fn scan_text(path: &Path, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let encrypted = is_sops(text);
    if (name.ends_with(".enc.yaml") || name.ends_with(".enc.yml") || name.ends_with(".enc.json"))
        && !encrypted
    {
        out.push(Finding {
            path: path.to_path_buf(),
            line: 0,
            what: "named *.enc.* but not SOPS-encrypted".into(),
        });
    }
    if encrypted {
        // Values are ENC[...]; what remains in clear is metadata (and age recipients).
        return out;
    }
    let demo = text.contains(DEMO_KEY_MARKER);
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        let what = if l.starts_with("AGE-SECRET-KEY-1") && !demo {
            Some("an age private key")
        } else if l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY-----") {
            Some("a PEM private key")
        } else if l.contains("PVEAPIToken=") && has_uuid(l) {
            Some("a Proxmox API token")
        } else if (l.starts_with("token_secret:") || l.starts_with("token-secret:")) && has_uuid(l)
        {
            Some("a Proxmox API token secret")
        } else if l.starts_with("client-key-data:") && l.len() > 30 {
            Some("a kubeconfig client key")
        } else if l.starts_with("key: LS0t") {
            Some("a talosconfig client key")
        } else if l.starts_with("bootstraptoken:") || l.starts_with("secretboxencryptionsecret:") {
            Some("a Talos secrets bundle")
        } else {
            None
        };
        if let Some(w) = what {
            out.push(Finding {
                path: path.to_path_buf(),
                line: i + 1,
                what: w.into(),
            });
        }
    }
    out
}

/// Whether text is a SOPS file (YAML or JSON with `sops` metadata and a MAC).
pub fn is_sops(text: &str) -> bool {
    (text.contains("\nsops:") || text.starts_with("sops:") || text.contains("\"sops\":"))
        && text.contains("mac")
        && text.contains("ENC[")
}

fn has_uuid(s: &str) -> bool {
    s.as_bytes().windows(36).any(|w| {
        w.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
    })
}

/// Files to scan under `root`: `git ls-files` (tracked + untracked, not ignored) when it is
/// a git work tree, else every file except `.git`, `.homelab` and `target`.
pub fn repo_files(root: &Path) -> Vec<PathBuf> {
    let git = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Ok(o) = git
        && o.status.success()
    {
        return o
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
            .filter(|p| p.is_file())
            .collect();
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if matches!(name.to_str(), Some(".git" | ".homelab" | "target")) {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Staged files (`git diff --cached`) with their staged content.
pub fn staged(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let o = std::process::Command::new("git")
        .args([
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--diff-filter=ACMR",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    let mut out = Vec::new();
    for p in o.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = String::from_utf8_lossy(p).to_string();
        let show = std::process::Command::new("git")
            .args(["show", &format!(":{rel}")])
            .current_dir(root)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if show.status.success()
            && let Ok(text) = String::from_utf8(show.stdout)
        {
            out.push((PathBuf::from(rel), text));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_plaintext_and_spares_sops_files_and_demo_keys() {
        let p = Path::new("x.yaml");
        assert_eq!(
            scan_text(p, "AGE-SECRET-KEY-1ABC\n")[0].what,
            "an age private key"
        );
        assert!(scan_text(p, "# homelab-cli: DEMO KEY.\nAGE-SECRET-KEY-1ABC\n").is_empty());
        let token = "token_secret: 0123abcd-0000-4000-8000-0123456789ab\n";
        assert_eq!(scan_text(p, token)[0].line, 1);
        assert!(scan_text(p, "token_secret: ${secret:proxmox.token_secret}\n").is_empty());
        assert_eq!(
            scan_text(p, "a: 1\n-----BEGIN EC PRIVATE KEY-----\n")[0].line,
            2
        );
        let fake_enc = Path::new("secrets.enc.yaml");
        assert_eq!(
            scan_text(fake_enc, "password: hunter2\n")[0].what,
            "named *.enc.* but not SOPS-encrypted"
        );
        let real = "a: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n    mac: ENC[AES256_GCM,data:x]\n";
        assert!(scan_text(fake_enc, real).is_empty());
    }
}
