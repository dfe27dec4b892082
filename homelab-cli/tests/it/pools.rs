//! Resource pools (issue 15): `pools:` in homelab.yaml on the simulated lab. `up` creates
//! them with the owner marker, a comment change is an update, a pool of ours no longer
//! declared is deleted when empty, and a pool made by hand (no marker) is never taken over.

#![allow(clippy::unwrap_used, clippy::panic)]

use proxmox_client::ParamValue;

use crate::common::{Repo, flat};

/// The services example without containers and backup job, with `pools` appended.
fn repo_with(pools: &str) -> Repo {
    let repo = Repo::copy(
        "services",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            ".sops.yaml",
            "secrets.enc.yaml",
        ],
    );
    let text = std::fs::read_to_string(repo.config()).unwrap();
    let start = text.find("  containers:\n").unwrap();
    // Containers and the backup job over them (the rest of the file) dropped.
    let base = format!("{}  containers: []\n", &text[..start]);
    repo.write(&format!("{base}\n{pools}"));
    repo
}

const POOLS: &str =
    "pools:\n  - name: services\n    comment: The service containers\n  - name: services/db\n";

async fn pools(s: &homelab_cli::session::Session) -> serde_json::Value {
    s.pve.get("/pools", &[]).await.unwrap()
}

#[test]
fn pools_are_created_updated_deleted_and_foreign_ones_refused() {
    let repo = repo_with(POOLS);

    // The plan shows both, nested after its parent.
    let plan = repo.plan_text(&[]);
    assert!(plan.contains("+ pool \"services\""), "{plan}");
    assert!(plan.contains("+ pool \"services/db\""), "{plan}");
    assert!(
        plan.find("pool \"services\"").unwrap() < plan.find("pool \"services/db\"").unwrap(),
        "{plan}"
    );
    repo.up_ok(&[]);
    let have = repo.with_lab(async |s| pools(s).await);
    let list = have.as_array().unwrap();
    let by_id = |id: &str| list.iter().find(|p| p["poolid"] == id).cloned();
    assert_eq!(
        by_id("services").unwrap()["comment"],
        "The service containers\nhomelab-cli:owner=services",
        "{have:#}"
    );
    assert_eq!(
        by_id("services/db").unwrap()["comment"],
        "homelab-cli:owner=services",
        "{have:#}"
    );
    repo.assert_converged(&[]);

    // A comment change is an update in place.
    repo.edit("The service containers", "LXC services");
    let plan = repo.plan_text(&[]);
    assert!(plan.contains("~ pool \"services\""), "{plan}");
    assert!(plan.contains("will be updated in place"), "{plan}");
    assert!(!plan.contains("+ pool"), "{plan}");
    repo.up_ok(&[]);
    let have = repo.with_lab(async |s| pools(s).await);
    assert!(
        have.as_array()
            .unwrap()
            .iter()
            .any(|p| p["poolid"] == "services"
                && p["comment"] == "LXC services\nhomelab-cli:owner=services"),
        "{have:#}"
    );
    repo.assert_converged(&[]);

    // No longer declared and empty: deleted. One with a member: refused, naming it.
    repo.with_lab(async |s| {
        let _: serde_json::Value = s
            .pve
            .put(
                "/pools",
                &[
                    ("poolid", ParamValue::from("services")),
                    ("storage", "tank".into()),
                ],
            )
            .await
            .unwrap();
    });
    repo.edit("  - name: services/db\n", "");
    repo.edit(
        "  - name: services\n    comment: LXC services\n",
        "  - name: infra\n",
    );
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("pool services is no longer declared but still has members"),
        "{err}"
    );
    // (the report wraps the long member ID)
    assert!(
        err.replace(' ', "").contains("members:storage/pve/tank"),
        "{err}"
    );
    repo.with_lab(async |s| {
        let _: serde_json::Value = s
            .pve
            .put(
                "/pools",
                &[
                    ("poolid", ParamValue::from("services")),
                    ("storage", "tank".into()),
                    ("delete", "1".into()),
                ],
            )
            .await
            .unwrap();
    });
    let plan = repo.plan_text(&[]);
    assert!(plan.contains("- pool \"services/db\""), "{plan}");
    assert!(plan.contains("- pool \"services\""), "{plan}");
    assert!(plan.contains("+ pool \"infra\""), "{plan}");
    repo.up_ok(&[]);
    let have = repo.with_lab(async |s| pools(s).await);
    let ids: Vec<&str> = have
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["poolid"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"infra"), "{have:#}");
    assert!(!ids.iter().any(|i| i.starts_with("services")), "{have:#}");
    repo.assert_converged(&[]);

    // A pool made by hand (no marker), then declared by its name: refused, untouched.
    repo.with_lab(async |s| {
        let _: serde_json::Value = s
            .pve
            .post(
                "/pools",
                &[
                    ("poolid", ParamValue::from("media")),
                    ("comment", "made by hand".into()),
                ],
            )
            .await
            .unwrap();
    });
    repo.assert_converged(&[]);
    repo.edit(
        "  - name: infra\n",
        "  - name: infra\n  - name: media\n    comment: Jellyfin\n",
    );
    for cmd in ["plan", "up"] {
        let out = repo.cli(&[cmd, "--simulate", "--yes"][..if cmd == "up" { 3 } else { 2 }]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = flat(&out.stderr);
        assert!(
            err.contains(
                "pool media exists but was not created by homelab `services` (its comment has no owner marker)"
            ),
            "{err}"
        );
        assert!(err.contains("give the declared pool another name"), "{err}");
    }
    let have = repo.with_lab(async |s| pools(s).await);
    assert!(
        have.as_array()
            .unwrap()
            .iter()
            .any(|p| p["poolid"] == "media" && p["comment"] == "made by hand"),
        "{have:#}"
    );
}

#[test]
fn a_bad_pool_id_is_reported_with_its_line() {
    let repo = repo_with("pools:\n  - name: has space\n");
    let out = repo.cli(&["check", "--offline"]);
    assert_ne!(out.status.code(), Some(0));
    let err = flat(&out.stderr);
    assert!(err.contains("`has space` is not a pool ID"), "{err}");
    assert!(err.contains("homelab.yaml:"), "{err}");
}
