//! PCI and device passthrough on the simulated Proxmox VE: host PCI listing, cluster PCI
//! mappings, `hostpciN` permission and start-time rules, LXC `devN`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use homelab_sim::lab::{Lab, LabHandle};
use homelab_sim::pve::state::PciDevice;
use serde_json::Value;

use crate::pve::{Api, Resp};

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(30))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap()
}

/// root@pam itself, by ticket (the only caller that may pass raw devices).
async fn root(lab: &LabHandle) -> Api {
    let api = Api::anonymous(lab);
    let r = api
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", lab.root_password())],
        )
        .await;
    let d = r.data().clone();
    let mut t = api.clone();
    t.cookie = Some(d["ticket"].as_str().unwrap().to_string());
    t.csrf = Some(d["CSRFPreventionToken"].as_str().unwrap().to_string());
    t
}

/// A privilege-separated token `prov@pve!ci` holding a custom role on `/`.
async fn restricted(api: &Api, privs: &str) -> Api {
    api.post("/access/users", &[("userid", "prov@pve")])
        .await
        .data();
    api.post("/access/roles", &[("roleid", "Prov"), ("privs", privs)])
        .await
        .data();
    let tok = api
        .post("/access/users/prov@pve/token/ci", &[("privsep", "1")])
        .await;
    let secret = tok.data()["value"].as_str().unwrap().to_string();
    for (k, v) in [("users", "prov@pve"), ("tokens", "prov@pve!ci")] {
        api.put("/access/acl", &[("path", "/"), ("roles", "Prov"), (k, v)])
            .await
            .data();
    }
    api.with_auth(&format!("PVEAPIToken=prov@pve!ci={secret}"))
}

const GPU_MAP: &str = "node=pve,path=0000:01:00,id=10de:2204,iommugroup=14,subsystem-id=10de:147d";

fn ids(r: &Resp) -> Vec<String> {
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn task_error(api: &Api, r: Resp) -> String {
    let upid = r.data().as_str().unwrap().to_string();
    api.wait(&upid).await["exitstatus"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn host_pci_listing_filters_classes_like_pve() {
    let lab = lab().await;
    let api = Api::token(&lab);
    let all = api.get("/nodes/pve/hardware/pci").await;
    // Bridges (06) are hidden by default; the GPU, its audio, SATA, USB and NIC remain.
    assert_eq!(
        ids(&all),
        [
            "0000:00:14.0",
            "0000:00:17.0",
            "0000:01:00.0",
            "0000:01:00.1",
            "0000:04:00.0"
        ]
    );
    let gpu = &all.data()[2];
    assert_eq!(gpu["class"], "0x030000");
    assert_eq!(gpu["vendor"], "0x10de");
    assert_eq!(gpu["device"], "0x2204");
    assert_eq!(gpu["device_name"], "GA102 [GeForce RTX 3090]");
    assert_eq!(gpu["subsystem_vendor"], "0x10de");
    assert_eq!(gpu["iommugroup"], 14);
    assert!(gpu.get("mdev").is_none());

    let everything = api
        .get("/nodes/pve/hardware/pci?pci-class-blacklist=")
        .await;
    assert_eq!(everything.data().as_array().unwrap().len(), 8);
    let terse = api
        .get("/nodes/pve/hardware/pci?verbose=0&pci-class-blacklist=02%3B0c")
        .await;
    let t = terse.data().as_array().unwrap();
    assert!(t.iter().all(|d| d.get("vendor_name").is_none()
        && d.get("subsystem_vendor").is_none()
        && d["iommugroup"].is_i64()));
    assert!(!ids(&terse).contains(&"0000:04:00.0".to_string()));
    assert_eq!(
        api.get("/nodes/pve/hardware/pci/0000:01:00.0").await.data()[0]["method"],
        "mdev"
    );
    let missing = api.get("/nodes/nope/hardware/pci").await;
    assert_eq!(missing.reason, "no such cluster node 'nope'");

    // Without Sys.Audit or Sys.Modify on `/` the scan is refused.
    let tok = restricted(&api, "VM.Audit").await;
    let denied = tok.get("/nodes/pve/hardware/pci").await;
    assert_eq!(
        (denied.status, denied.reason.as_str()),
        (403, "Permission check failed (/, Sys.Audit|Sys.Modify)")
    );
}

#[tokio::test]
async fn lab_knob_sets_a_nodes_devices() {
    let igpu = PciDevice::new("0000:00:02.0", "0x030000", "0x8086", "0x4680", 0)
        .named("Intel Corporation", "AlderLake-S GT1")
        .subsystem("0x1043", "0x8882", None);
    let lab = Lab::builder()
        .nodes(["pve1", "pve2"])
        .pci_devices("pve2", vec![igpu])
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);
    assert_eq!(
        ids(&api.get("/nodes/pve2/hardware/pci").await),
        ["0000:00:02.0"]
    );
    assert!(ids(&api.get("/nodes/pve1/hardware/pci").await).contains(&"0000:01:00.0".into()));
}

#[tokio::test]
async fn pci_mapping_crud_digest_and_checks() {
    let lab = lab().await;
    let api = Api::token(&lab);
    assert_eq!(
        api.get("/cluster/mapping/pci").await.data(),
        &Value::Array(vec![])
    );
    // `map` is an array: repeated form keys.
    api.post(
        "/cluster/mapping/pci",
        &[
            ("id", "gpu"),
            ("description", "RTX 3090"),
            ("map", GPU_MAP),
            ("map", "node=pve2,path=0000:02:00.0,id=10de:2204"),
        ],
    )
    .await
    .data();
    let dup = api
        .post("/cluster/mapping/pci", &[("id", "gpu"), ("map", GPU_MAP)])
        .await;
    assert_eq!(
        (dup.status, dup.reason.as_str()),
        (
            500,
            "create hardware mapping failed: pci ID 'gpu' already defined"
        )
    );
    let bad = api
        .post(
            "/cluster/mapping/pci",
            &[("id", "x"), ("map", "node=pve,path=01:00.0,id=10de:2204")],
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error("map").contains("path"), "{bad:?}");
    let missing_map = api.post("/cluster/mapping/pci", &[("id", "y")]).await;
    assert_eq!(
        missing_map.error("map"),
        "property is missing and it is not optional"
    );

    let got = api.get("/cluster/mapping/pci/gpu").await;
    let g = got.data();
    assert_eq!(g["map"][0], GPU_MAP);
    assert_eq!(g["map"].as_array().unwrap().len(), 2);
    assert_eq!(g["description"], "RTX 3090");
    assert_eq!(g["type"], "pci");
    let digest = g["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 40);

    let list = api.get("/cluster/mapping/pci?check-node=pve").await;
    let l = &list.data()[0];
    assert_eq!(l["id"], "gpu");
    assert_eq!(l["checks"], Value::Array(vec![]));

    api.put(
        "/cluster/mapping/pci/gpu",
        &[
            ("mdev", "1"),
            ("delete", "description"),
            ("digest", &digest),
        ],
    )
    .await
    .data();
    let stale = api
        .put(
            "/cluster/mapping/pci/gpu",
            &[("description", "x"), ("digest", &digest)],
        )
        .await;
    assert_eq!(
        stale.reason,
        "update hardware mapping failed: detected modified configuration - file changed by other user? Try again."
    );
    let g = api.get("/cluster/mapping/pci/gpu").await.data().clone();
    assert_eq!(g["mdev"], 1);
    assert!(g.get("description").is_none());
    let nope = api
        .put("/cluster/mapping/pci/nope", &[("description", "x")])
        .await;
    assert_eq!(
        nope.reason,
        "update hardware mapping failed: pci ID 'nope' does not exist"
    );
    let req = api
        .put("/cluster/mapping/pci/gpu", &[("delete", "map")])
        .await;
    assert_eq!(
        req.reason,
        "update hardware mapping failed: unable to delete required option 'map'"
    );

    // A mapping whose recorded hardware no longer matches is reported by check-node.
    api.put(
        "/cluster/mapping/pci/gpu",
        &[(
            "map",
            "node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14",
        )],
    )
    .await
    .data();
    let list = api.get("/cluster/mapping/pci?check-node=pve").await;
    assert_eq!(list.data()[0]["checks"][0]["severity"], "error");
    assert_eq!(
        list.data()[0]["checks"][0]["message"],
        "Invalid configuration: missing expected property 'subsystem-id' for device '0000:01:00.0'"
    );

    let gone = api.get("/cluster/mapping/pci/nope").await;
    assert_eq!(gone.reason, "mapping 'nope' not found");
    api.delete("/cluster/mapping/pci/gpu").await.data();
    api.delete("/cluster/mapping/pci/gpu").await.data();
    assert_eq!(
        api.get("/cluster/mapping/pci").await.data(),
        &Value::Array(vec![])
    );
}

#[tokio::test]
async fn mapping_permissions_filter_and_guard() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.post("/cluster/mapping/pci", &[("id", "gpu"), ("map", GPU_MAP)])
        .await
        .data();
    let tok = restricted(&api, "VM.Audit").await;
    assert_eq!(
        tok.get("/cluster/mapping/pci").await.data(),
        &Value::Array(vec![])
    );
    let denied = tok.get("/cluster/mapping/pci/gpu").await;
    assert_eq!(denied.status, 403);
    let create = tok
        .post("/cluster/mapping/pci", &[("id", "b"), ("map", GPU_MAP)])
        .await;
    assert_eq!(
        create.reason,
        "Permission check failed (/mapping/pci, Mapping.Modify)"
    );
    api.put(
        "/access/roles/Prov",
        &[("privs", "VM.Audit,Mapping.Audit"), ("append", "0")],
    )
    .await
    .data();
    assert_eq!(ids(&tok.get("/cluster/mapping/pci").await), ["gpu"]);
}

#[tokio::test]
async fn hostpci_raw_ids_are_root_only_mappings_need_mapping_use() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.post("/cluster/mapping/pci", &[("id", "gpu"), ("map", GPU_MAP)])
        .await
        .data();
    // Even a privsep=0 token of root@pam is not root@pam.
    let raw = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "300"), ("hostpci0", "0000:01:00,pcie=1")],
        )
        .await;
    assert_eq!(
        (raw.status, raw.reason.as_str()),
        (
            500,
            "only root can set 'hostpci0' config for non-mapped devices"
        )
    );
    let garbage = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "300"), ("hostpci0", "0000:01:00,vga=1")],
        )
        .await;
    assert_eq!(garbage.status, 400);
    assert!(
        garbage
            .error("hostpci0")
            .starts_with("invalid format - invalid key in comma-separated list property: vga"),
        "{garbage:?}"
    );
    let neither = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "300"), ("hostpci0", "pcie=1")],
        )
        .await;
    assert_eq!(neither.reason, "either 'host' or 'mapping' must be set.");

    let tok = restricted(&api, "VM.Allocate,VM.Audit,VM.PowerMgmt").await;
    let no_use = tok
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "301"), ("hostpci0", "mapping=gpu")],
        )
        .await;
    assert_eq!(
        (no_use.status, no_use.reason.as_str()),
        (
            403,
            "Permission check failed (/mapping/pci/gpu, Mapping.Use)"
        )
    );
    api.put(
        "/access/roles/Prov",
        &[("privs", "Mapping.Use"), ("append", "1")],
    )
    .await
    .data();
    let no_hw = tok
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "301"), ("hostpci0", "mapping=gpu")],
        )
        .await;
    assert_eq!(
        no_hw.reason,
        "Permission check failed (/vms/301, VM.Config.HWType)"
    );
    api.put(
        "/access/roles/Prov",
        &[("privs", "VM.Config.HWType"), ("append", "1")],
    )
    .await
    .data();
    let ok = tok
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "301"),
                ("machine", "q35"),
                ("hostpci0", "mapping=gpu,pcie=1,x-vga=1"),
            ],
        )
        .await;
    tok.wait_ok(ok).await;
    let cfg = tok.get("/nodes/pve/qemu/301/config").await;
    assert_eq!(cfg.data()["hostpci0"], "mapping=gpu,pcie=1,x-vga=1");
    tok.wait_ok(tok.post("/nodes/pve/qemu/301/status/start", &[]).await)
        .await;

    // root@pam attaches a raw device; the token may then neither replace nor delete it.
    let root = root(&lab).await;
    root.wait_ok(
        root.post(
            "/nodes/pve/qemu",
            &[("vmid", "302"), ("hostpci0", "0000:00:17.0")],
        )
        .await,
    )
    .await;
    for form in [
        vec![("hostpci0", "mapping=gpu")],
        vec![("delete", "hostpci0")],
    ] {
        let r = api.put("/nodes/pve/qemu/302/config", &form).await;
        assert_eq!(
            r.reason,
            "only root can set 'hostpci0' config for non-mapped devices"
        );
    }
    // Cloning repeats the raw device: refused for the token as well.
    let clone = api
        .post("/nodes/pve/qemu/302/clone", &[("newid", "303")])
        .await;
    assert_eq!(
        clone.reason,
        "only root can set 'hostpci0' config for non-mapped devices"
    );
    root.put("/nodes/pve/qemu/302/config", &[("delete", "hostpci0")])
        .await
        .data();
}

#[tokio::test]
async fn vm_start_resolves_and_reserves_devices() {
    let lab = lab().await;
    let api = Api::token(&lab);
    let root = root(&lab).await;
    let mk = |vmid: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let root = root.clone();
        async move {
            let mut form = vec![("vmid", vmid)];
            form.extend(extra);
            root.wait_ok(root.post("/nodes/pve/qemu", &form).await)
                .await;
        }
    };
    let start = |vmid: &'static str| {
        let api = api.clone();
        async move {
            api.post(&format!("/nodes/pve/qemu/{vmid}/status/start"), &[])
                .await
        }
    };

    // pcie=1 needs q35: accepted in the config, refused when QEMU would start.
    mk("310", vec![("hostpci0", "0000:01:00,pcie=1")]).await;
    let e = task_error(&api, start("310").await).await;
    assert!(
        e.starts_with(
            "q35 machine model is not enabled at /usr/share/perl5/PVE/QemuServer/PCI.pm line"
        ),
        "{e}"
    );
    // legacy-igd and x-vga are exclusive (and legacy IGD wants vga=none first).
    mk(
        "311",
        vec![
            ("hostpci0", "0000:01:00.0,legacy-igd=1,x-vga=1"),
            ("vga", "none"),
        ],
    )
    .await;
    assert_eq!(
        task_error(&api, start("311").await).await,
        "legacy IGD assignment is not compatible with x-vga"
    );
    mk("312", vec![("hostpci0", "0000:09:00.0")]).await;
    assert_eq!(
        task_error(&api, start("312").await).await,
        "no PCI device found for '0000:09:00.0'"
    );
    mk("313", vec![("hostpci0", "mapping=nope")]).await;
    assert_eq!(
        task_error(&api, start("313").await).await,
        "PCI device mapping not found for 'nope'"
    );
    // A mapping with no entry for this node is "not found" too.
    api.post(
        "/cluster/mapping/pci",
        &[
            ("id", "elsewhere"),
            ("map", "node=pve9,path=0000:01:00.0,id=10de:2204"),
        ],
    )
    .await
    .data();
    mk("314", vec![("hostpci0", "mapping=elsewhere")]).await;
    assert_eq!(
        task_error(&api, start("314").await).await,
        "PCI device mapping not found for 'elsewhere'"
    );
    api.post(
        "/cluster/mapping/pci",
        &[
            ("id", "stale"),
            (
                "map",
                "node=pve,path=0000:01:00.0,id=10de:2206,iommugroup=14,subsystem-id=10de:147d",
            ),
        ],
    )
    .await
    .data();
    mk("315", vec![("hostpci0", "mapping=stale")]).await;
    assert_eq!(
        task_error(&api, start("315").await).await,
        "PCI device mapping invalid (hardware probably changed): 'id' does not match for 'stale' (10de:2204 != 10de:2206)"
    );

    // Two VMs, one GPU: the second start fails while the first runs, works after it stops.
    api.post("/cluster/mapping/pci", &[("id", "gpu"), ("map", GPU_MAP)])
        .await
        .data();
    mk(
        "320",
        vec![
            ("machine", "q35"),
            ("hostpci0", "mapping=gpu,pcie=1,x-vga=1"),
        ],
    )
    .await;
    mk("321", vec![("hostpci0", "0000:01:00.1")]).await;
    api.wait_ok(start("320").await).await;
    assert_eq!(
        task_error(&api, start("321").await).await,
        "PCI device '0000:01:00.1' already in use by VMID '320'"
    );
    let st = api.get("/nodes/pve/qemu/321/status/current").await;
    assert_eq!(st.data()["status"], "stopped");
    api.wait_ok(api.post("/nodes/pve/qemu/320/status/stop", &[]).await)
        .await;
    api.wait_ok(start("321").await).await;
}

#[tokio::test]
async fn lxc_devices_are_root_pam_only() {
    let lab = lab().await;
    let api = Api::token(&lab);
    let form = reqwest::multipart::Form::new()
        .text("content", "vztmpl")
        .part(
            "filename",
            reqwest::multipart::Part::bytes(b"tar".as_slice())
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
    let tmpl = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
    let denied = api
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "400"),
                ("ostemplate", tmpl),
                ("dev0", "/dev/dri/renderD128,gid=44,mode=0660"),
            ],
        )
        .await;
    assert_eq!(
        (denied.status, denied.reason.as_str()),
        (
            403,
            "Permission check failed (configuring device passthrough is only allowed for root@pam)"
        )
    );
    let feats = api
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "400"),
                ("ostemplate", tmpl),
                ("features", "nesting=1,keyctl=1"),
            ],
        )
        .await;
    assert_eq!(
        (feats.status, feats.reason.as_str()),
        (
            403,
            "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
        )
    );
    let bad_path = api
        .post(
            "/nodes/pve/lxc",
            &[("vmid", "400"), ("ostemplate", tmpl), ("dev0", "/tmp/x")],
        )
        .await;
    assert_eq!(bad_path.status, 400);
    assert!(
        bad_path
            .error("dev0")
            .contains("/tmp/x is not a valid device path"),
        "{bad_path:?}"
    );

    let root = root(&lab).await;
    root.wait_ok(
        root.post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "400"),
                ("ostemplate", tmpl),
                ("rootfs", "local-lvm:4"),
                ("dev0", "/dev/dri/renderD128,gid=44,mode=0660"),
            ],
        )
        .await,
    )
    .await;
    let cfg = api.get("/nodes/pve/lxc/400/config").await;
    assert_eq!(cfg.data()["dev0"], "/dev/dri/renderD128,gid=44,mode=0660");
    let nodev = root
        .put("/nodes/pve/lxc/400/config", &[("dev1", "/dev/nvidia7")])
        .await;
    assert_eq!(nodev.reason, "Device /dev/nvidia7 does not exist");
    root.put("/nodes/pve/lxc/400/config", &[("dev1", "/dev/net/tun")])
        .await
        .data();
    // The token may not remove them either.
    let del = api
        .put("/nodes/pve/lxc/400/config", &[("delete", "dev1")])
        .await;
    assert_eq!(del.status, 403);
}
