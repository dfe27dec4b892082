//! The simulator answers as the real PVE 9.1 handlers do, one test per finding of the audit
//! (docs/pve-audit.md). Each test cites the Perl sub it follows.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use homelab_sim::lab::{Lab, LabHandle};
use serde_json::Value;

use super::pve::Api;

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(20))
        .lock_timeout(Duration::from_millis(300))
        .stats_interval(Duration::from_secs(3600))
        // A thick LVM volume group, as `pvesm add lvm` makes it.
        .storage("vmdata", "lvm", &["images", "rootdir"], 200 << 30)
        .start()
        .await
        .unwrap()
}

/// A privilege-separated token of a new user holding custom role `privs` on `/`.
async fn restricted(api: &Api, user: &str, privs: &str) -> Api {
    api.post("/access/users", &[("userid", user)]).await.data();
    let role = format!("R{}", user.split('@').next().unwrap());
    api.post("/access/roles", &[("roleid", &role), ("privs", privs)])
        .await
        .data();
    let tok = api
        .post(
            &format!("/access/users/{user}/token/tk"),
            &[("privsep", "1")],
        )
        .await;
    let secret = tok.data()["value"].as_str().unwrap().to_string();
    let full = format!("{user}!tk");
    grant(api, "/", &role, user, &full).await;
    api.with_auth(&format!("PVEAPIToken={full}={secret}"))
}

async fn grant(api: &Api, path: &str, role: &str, user: &str, token: &str) {
    for (k, v) in [("users", user), ("tokens", token)] {
        api.put("/access/acl", &[("path", path), ("roles", role), (k, v)])
            .await
            .data();
    }
}

async fn create_vm(api: &Api, vmid: &str, disk: &str) -> Value {
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", vmid),
                ("name", "gold"),
                ("memory", "1024"),
                ("net0", "virtio,bridge=vmbr0"),
                ("scsi0", disk),
            ],
        )
        .await;
    api.wait_ok(r).await
}

/// pve-manager `PVE/API2/Backup.pm` `create_job`/`update_job` with
/// `assert_param_permission_create/update/common`: besides `Sys.Modify` on `/` (the
/// schema's check), the job's storage (`local` when none is given,
/// `PVE::VZDump::get_storage_param`) needs `Datastore.Allocate`; root-only options are
/// parameter errors; the stored job's storage is checked on update too.
#[tokio::test]
async fn backup_jobs_need_datastore_allocate_on_their_storage() {
    let lab = lab().await;
    let root = Api::token(&lab);
    create_vm(&root, "100", "local-lvm:1").await;
    let tok = restricted(
        &root,
        "bk@pve",
        "Sys.Modify,Sys.Audit,VM.Backup,VM.Audit,Datastore.Audit,Datastore.AllocateSpace",
    )
    .await;
    let job = |extra: &'static [(&'static str, &'static str)]| {
        let mut f = vec![("id", "nightly"), ("schedule", "02:00"), ("vmid", "100")];
        f.extend_from_slice(extra);
        f
    };
    let r = tok
        .post("/cluster/backup", &job(&[("storage", "local")]))
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            403,
            "Permission check failed (/storage/local, Datastore.Allocate)"
        )
    );
    // No storage means `local`.
    let r = tok.post("/cluster/backup", &job(&[])).await;
    assert_eq!(
        r.reason,
        "Permission check failed (/storage/local, Datastore.Allocate)"
    );
    // Root-only options fail first, as parameter errors.
    let r = tok
        .post(
            "/cluster/backup",
            &job(&[("dumpdir", "/tmp"), ("storage", "local")]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error("dumpdir"), "Only root may set this option.");
    // Storage-scoped: PVEDatastoreAdmin on /storage/local is enough.
    grant(
        &root,
        "/storage/local",
        "PVEDatastoreAdmin",
        "bk@pve",
        "bk@pve!tk",
    )
    .await;
    tok.post("/cluster/backup", &job(&[("storage", "local")]))
        .await
        .data();
    // Retargeting to a storage without the grant fails; so does deleting `storage`
    // (back to `local`) once the job's own storage is not allowed.
    let r = tok
        .put("/cluster/backup/nightly", &[("storage", "tank")])
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/storage/tank, Datastore.Allocate)"
    );
    tok.put("/cluster/backup/nightly", &[("comment", "db")])
        .await
        .data();
    // Unknown jobs: update dies "no such vzdump job", read/delete raise a param error.
    let r = tok.put("/cluster/backup/nope", &[("comment", "x")]).await;
    assert_eq!((r.status, r.reason.as_str()), (500, "no such vzdump job"));
    let r = tok.get("/cluster/backup/nope").await;
    assert_eq!(r.error("id"), "No such job 'nope'");
}

/// qemu-server `PVE/API2/Qemu.pm` `$check_vm_modify_config_perm`: each option needs
/// its group's privilege; `startup` also `Sys.Modify` on `/`; options in no group
/// (`args`) are root's (500); `ipconfigN` takes Cloudinit or Network.
#[tokio::test]
async fn qemu_options_are_checked_one_by_one() {
    let lab = lab().await;
    let root = Api::token(&lab);
    create_vm(&root, "100", "local-lvm:1").await;
    let tok = restricted(
        &root,
        "vm@pve",
        "VM.Audit,VM.Config.Options,VM.Config.Memory,VM.Config.Network",
    )
    .await;
    let put = |k: &'static str, v: &'static str| {
        let tok = tok.clone();
        async move { tok.put("/nodes/pve/qemu/100/config", &[(k, v)]).await }
    };
    put("memory", "2048").await.data();
    put("onboot", "1").await.data();
    let r = put("startup", "order=1").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/, Sys.Modify)")
    );
    let r = put("cores", "2").await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Config.CPU)"
    );
    let r = put("args", "-no-reboot").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "only root can set 'args' config")
    );
    put("ipconfig0", "ip=dhcp").await.data();
    // Deleting an option needs the same privilege as setting it.
    let r = tok
        .put("/nodes/pve/qemu/100/config", &[("delete", "cores")])
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Config.CPU)"
    );
    // `start=1` on create needs VM.PowerMgmt, checked before VM.Allocate.
    let r = tok
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "101"), ("start", "1"), ("memory", "512")],
        )
        .await;
    assert_eq!(r.reason, "Permission check failed (/vms/101, VM.PowerMgmt)");
}

/// pve-container `PVE/API2/LXC.pm` `create_vm`: a privileged container
/// (`unprivileged=0`) needs `Sys.Modify` on `/` — the very first check, before the VMID,
/// VM.Allocate or the template; `check_ct_modify_config_perm` then checks each option.
#[tokio::test]
async fn privileged_containers_need_sys_modify_first() {
    let lab = lab().await;
    let root = Api::token(&lab);
    let tok = restricted(&root, "ct@pve", "VM.Audit").await;
    let r = tok
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                ("ostemplate", "local:vztmpl/missing.tar.zst"),
                ("unprivileged", "0"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/, Sys.Modify)")
    );
    // Unprivileged: VM.Allocate is what is missing (raise_perm_exc without a reason).
    let r = tok
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                ("ostemplate", "local:vztmpl/missing.tar.zst"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed")
    );
}

/// pve-access-control `AccessControl.pm` `create_roles`: the built-in roles as a real
/// host lists them.
#[tokio::test]
async fn builtin_roles_are_pves() {
    let lab = lab().await;
    let root = Api::token(&lab);
    let roles = root.get("/access/roles").await;
    let privs = |id: &str| -> String {
        roles
            .data()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["roleid"] == id)
            .unwrap()["privs"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(privs("PVESysAdmin"), "Sys.Audit,Sys.Console,Sys.Syslog");
    assert_eq!(
        privs("PVEUserAdmin"),
        "Group.Allocate,Realm.AllocateUser,User.Modify"
    );
    assert!(!privs("PVEVMUser").contains("Datastore"));
    assert!(privs("PVEVMUser").contains("VM.GuestAgent.FileRead"));
    assert!(!privs("PVEAdmin").contains("Sys.Modify"));
    assert!(!privs("PVEAdmin").contains("Mapping.Modify"));
    assert_eq!(roles.data().as_array().unwrap().len(), 17);
}

/// pve-storage `LVMPlugin.pm` `volume_has_feature` (no `template`, no `clone`) with
/// qemu-server `template_create` (skips volumes without the feature) and `clone_vm`
/// (`die "Linked clone feature is not supported for '<volid>' (<drive>)"` before the
/// worker); full clones (`copy`) work. LvmThin does both.
#[tokio::test]
async fn thick_lvm_has_no_linked_clones() {
    let lab = lab().await;
    let api = Api::token(&lab);
    create_vm(&api, "300", "vmdata:1").await;
    api.wait_ok(api.post("/nodes/pve/qemu/300/template", &[]).await)
        .await;
    let cfg = api.get("/nodes/pve/qemu/300/config").await;
    assert_eq!(cfg.data()["template"], 1);
    assert!(
        cfg.data()["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("vmdata:vm-300-disk-0"),
        "{cfg:?}"
    );
    let r = api
        .post(
            "/nodes/pve/qemu/300/clone",
            &[("newid", "301"), ("full", "0")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            500,
            "Linked clone feature is not supported for 'vmdata:vm-300-disk-0' (scsi0)"
        )
    );
    let r = api
        .post(
            "/nodes/pve/qemu/300/clone",
            &[("newid", "301"), ("full", "0"), ("storage", "local-lvm")],
        )
        .await;
    assert_eq!(
        r.reason,
        "parameter 'storage' not allowed for linked clones"
    );
    api.wait_ok(
        api.post(
            "/nodes/pve/qemu/300/clone",
            &[("newid", "302"), ("full", "1")],
        )
        .await,
    )
    .await;
    // On lvmthin the same makes a base volume and a linked clone.
    create_vm(&api, "310", "local-lvm:1").await;
    api.wait_ok(api.post("/nodes/pve/qemu/310/template", &[]).await)
        .await;
    api.wait_ok(
        api.post("/nodes/pve/qemu/310/clone", &[("newid", "311")])
            .await,
    )
    .await;
    // A VM that is no template has no base volume: no linked clone from it.
    let r = api
        .post(
            "/nodes/pve/qemu/311/clone",
            &[("newid", "312"), ("full", "0")],
        )
        .await;
    assert!(
        r.reason
            .starts_with("Linked clone feature is not supported for 'local-lvm:"),
        "{r:?}"
    );
}

/// pve-container `PVE/API2/LXC.pm` `resize_vm` (`PUT /nodes/{node}/lxc/{vmid}/resize`):
/// early checks before the fork (`disk` needs VM.Config.Options through
/// `check_ct_modify_config_perm`, the storage needs Datastore.AllocateSpace, no
/// shrinking, no no-op), then a `resize` task that grows the volume.
#[tokio::test]
async fn containers_resize_their_mount_points() {
    let lab = lab().await;
    let api = Api::token(&lab);
    let form = reqwest::multipart::Form::new()
        .text("content", "vztmpl")
        .part(
            "filename",
            reqwest::multipart::Part::bytes(&b"tarball"[..])
                .file_name("debian-12-standard_12.7-1_amd64.tar.zst"),
        );
    let r = api
        .send(
            api.client
                .post(api.url("/nodes/pve/storage/local/upload"))
                .multipart(form),
        )
        .await;
    api.wait_ok(r).await;
    let r = api
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
                ("rootfs", "local-lvm:4"),
                ("mp0", "tank:8,mp=/data"),
            ],
        )
        .await;
    api.wait_ok(r).await;
    let st = api
        .wait_ok(
            api.put(
                "/nodes/pve/lxc/200/resize",
                &[("disk", "mp0"), ("size", "+2G")],
            )
            .await,
        )
        .await;
    assert_eq!(st["type"], "resize");
    let cfg = api.get("/nodes/pve/lxc/200/config").await;
    assert!(
        cfg.data()["mp0"].as_str().unwrap().contains("size=10G"),
        "{cfg:?}"
    );
    api.wait_ok(
        api.put(
            "/nodes/pve/lxc/200/resize",
            &[("disk", "rootfs"), ("size", "6G")],
        )
        .await,
    )
    .await;
    let r = api
        .put(
            "/nodes/pve/lxc/200/resize",
            &[("disk", "rootfs"), ("size", "5G")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "unable to shrink disk size")
    );
    let r = api
        .put(
            "/nodes/pve/lxc/200/resize",
            &[("disk", "rootfs"), ("size", "6G")],
        )
        .await;
    assert_eq!(r.reason, "disk is already at specified size");
    let tok = restricted(&api, "rs@pve", "VM.Audit,VM.Config.Disk").await;
    let r = tok
        .put(
            "/nodes/pve/lxc/200/resize",
            &[("disk", "rootfs"), ("size", "+1G")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/vms/200, VM.Config.Options)")
    );
}

/// pve-guest-common `GuestHelpers.pm` `check_vnet_access` (qemu-server
/// `check_bridge_access`): a NIC on a plain bridge needs `SDN.Use` on
/// `/sdn/zones/localnetwork/<bridge>`, a tagged one on `.../<bridge>/<tag>`.
#[tokio::test]
async fn nics_need_sdn_use_on_their_bridge() {
    let lab = lab().await;
    let root = Api::token(&lab);
    create_vm(&root, "100", "local-lvm:1").await;
    let tok = restricted(&root, "net@pve", "VM.Audit,VM.Config.Network").await;
    let r = tok
        .put(
            "/nodes/pve/qemu/100/config",
            &[("net1", "virtio,bridge=vmbr0")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            403,
            "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)"
        )
    );
    grant(
        &root,
        "/sdn/zones/localnetwork/vmbr0/20",
        "PVESDNUser",
        "net@pve",
        "net@pve!tk",
    )
    .await;
    tok.put(
        "/nodes/pve/qemu/100/config",
        &[("net1", "virtio,bridge=vmbr0,tag=20")],
    )
    .await
    .data();
    let r = tok
        .put(
            "/nodes/pve/qemu/100/config",
            &[("net2", "virtio,bridge=vmbr0,tag=30")],
        )
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/sdn/zones/localnetwork/vmbr0/30, SDN.Use)"
    );
}
