//! The token `proxmox token create` makes is enough on a simulator that checks what the
//! real PVE 9.1 handlers check (docs/pve-audit.md): per-parameter permissions, backup
//! storages, bridges. The whole `up` runs with it and nothing is refused by the schema.

#![allow(clippy::unwrap_used)]

use homelab_cli::STORAGE_ROLE;
use homelab_cli::engine::graph::{Outcome, Quiet};

use crate::common::Repo;

/// Set up what `proxmox token create` sets up (user, role on `/`, the storage role, a
/// privilege-separated token with the same ACLs), switch the session to that token, and run plan + apply; every step must
/// succeed, a second plan must be empty, and no request may be refused by the schema.
fn up_with_the_provisioning_token(repo: &Repo, expected_steps: Option<usize>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut s = homelab_cli::session::Session::open(
            &repo.config(),
            &homelab_cli::session::SimArgs {
                simulate: true,
                sim_latency_ms: None,
            },
        )
        .await
        .unwrap();
        // The services example declares its storages (`tank-backups` for the nightly
        // job): creating a storage needs Datastore.Allocate on /storage itself
        // (pve-storage API2/Storage/Config.pm `create`), so the storage role is granted
        // there, which also covers the backup job's storage.
        crate::common::use_provisioning_token(
            &mut s,
            "homelab",
            true,
            &[("/storage", STORAGE_ROLE)],
        )
        .await;
        let planned = s.plan().await.unwrap();
        let applied = homelab_cli::apply_plan(&s, &planned, 4, &Quiet)
            .await
            .unwrap();
        let failed: Vec<String> = applied
            .finished
            .iter()
            .filter(|f| !matches!(f.outcome, Outcome::Done { .. }))
            .map(|f| format!("{}: {:?}", f.label, f.outcome))
            .collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(!applied.finished.is_empty());
        if let Some(n) = expected_steps {
            assert_eq!(applied.finished.len(), n);
        }
        let again = s.plan().await.unwrap();
        assert!(again.plan.is_empty(), "{:#?}", again.plan);
        let requests = s.sim.as_ref().unwrap().requests();
        assert_eq!(requests.schema_rejected, 0, "{requests:?}");
        s.close().await;
    });
}

/// Containers on the ZFS pool, their mount points, the declared storages and the nightly
/// vzdump job into `tank-backups`: the job needs Datastore.Allocate on its storage
/// (pve-manager API2/Backup.pm assert_param_permission_create), which only the storage
/// grant gives.
#[test]
fn services_and_their_backup_job_with_the_provisioning_token() {
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
    up_with_the_provisioning_token(&repo, Some(14));
}

/// Without the storage grant the same `up` fails where it needs Datastore.Allocate, as on a
/// real host.
#[test]
fn without_the_storage_grant_the_backup_job_is_refused() {
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut s = homelab_cli::session::Session::open(
            &repo.config(),
            &homelab_cli::session::SimArgs {
                simulate: true,
                sim_latency_ms: None,
            },
        )
        .await
        .unwrap();
        // Not privilege-separated: the token has the user's ACL on `/` and nothing more.
        crate::common::use_provisioning_token(&mut s, "homelab", false, &[]).await;
        let planned = s.plan().await.unwrap();
        let applied = homelab_cli::apply_plan(&s, &planned, 4, &Quiet)
            .await
            .unwrap();
        let failed: Vec<String> = applied
            .finished
            .iter()
            .filter(|f| !matches!(f.outcome, Outcome::Done { .. }))
            .map(|f| format!("{}: {:?}", f.label, f.outcome))
            .collect();
        // The first refusal is the storage the example declares (pve-storage
        // API2/Storage/Config.pm `create` checks Datastore.Allocate on /storage); what
        // depends on it is not attempted.
        assert!(!failed.is_empty(), "{failed:#?}");
        assert!(
            failed
                .iter()
                .any(|f| f.contains("(/storage, Datastore.Allocate)")),
            "{failed:#?}"
        );
        assert!(
            failed.iter().all(|f| f.contains("Datastore.Allocate")
                || f.contains("Skipped")
                || f.contains("skipped")),
            "{failed:#?}"
        );
        s.close().await;
    });
}

/// A single-node Talos cluster (ISO from the Image Factory, VM, bootstrap) with the same
/// token.
#[test]
fn talos_single_node_with_the_provisioning_token() {
    let repo = Repo::copy(
        "single-node",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            "secrets.enc.yaml",
        ],
    );
    up_with_the_provisioning_token(&repo, None);
}

/// A linked clone of a template on thick LVM cannot work (pve-storage LVMPlugin.pm has no
/// `clone`/`template` feature; qemu-server clone_vm dies "Linked clone feature is not
/// supported"): the plan refuses it before anything is created. The storage types come
/// from the resource list the observation reads anyway.
#[test]
fn linked_clones_on_thick_lvm_are_refused_at_plan_time() {
    let repo = Repo::copy(
        "vm-fleet",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            ".sops.yaml",
            "secrets.enc.yaml",
            "homelab.dev.yaml",
        ],
    );
    repo.with_lab(async |s| {
        let mut observed = homelab_cli::engine::observe::observe(&s.pve, &s.desired)
            .await
            .unwrap();
        // The simulated node's storages, with their plugin types from /cluster/resources.
        assert_eq!(observed.storage_types["pve"]["local-lvm"], "lvmthin");
        assert_eq!(observed.storage_types["pve"]["local"], "dir");
        homelab_cli::engine::plan::plan(&s.desired, &observed).unwrap();
        // The same node with local-lvm as a thick LVM volume group.
        observed
            .storage_types
            .get_mut("pve")
            .unwrap()
            .insert("local-lvm".into(), "lvm".into());
        let err = homelab_cli::engine::plan::plan(&s.desired, &observed).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "web-1 (VMID 200) is a linked clone of template 9000, whose disk scsi0 is on storage \"local-lvm\" of type lvm"
            ),
            "{text}"
        );
        assert!(text.contains("full_clone: true"), "{text}");
        assert!(err.help().contains("full_clone"));
        // Nothing was created.
        assert_eq!(s.sim.as_ref().unwrap().requests().mutating, 0);
    });
}
