//! Host PCI listing and cluster PCI mappings: the wire format against wiremock, then the
//! whole flow (scan → mapping → `hostpci0: mapping=` → start) against the simulator.

use std::collections::BTreeMap;
use std::time::Duration;

use homelab_sim::lab::Lab;
use proxmox_client::property::*;
use proxmox_client::requests::*;
use proxmox_client::{Client, Error, WaitOptions};
use serde_json::json;
use wiremock::matchers::{body_string, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn hardware_pci_and_mapping_crud_on_the_wire() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/hardware/pci")))
        .respond_with(data(json!([
            {"id":"0000:01:00.0","class":"0x030000","vendor":"0x10de","device":"0x2204",
             "vendor_name":"NVIDIA Corporation","device_name":"GA102 [GeForce RTX 3090]",
             "subsystem_vendor":"0x10de","subsystem_device":"0x147d","iommugroup":14},
            {"id":"0000:01:00.1","class":"0x040300","vendor":"0x10de","device":"0x1aef",
             "iommugroup":"14","mdev":1},
            {"id":"0000:00:17.0","class":"0x010601","vendor":"0x8086","device":"0x7ae2",
             "iommugroup":-1}
        ])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/cluster/mapping/pci")))
        .and(query_param("check-node", "pve"))
        .respond_with(data(json!([{
            "id":"gpu","type":"pci","digest":"d1",
            "map":["id=10de:2204,iommugroup=14,node=pve,path=0000:01:00"],
            "checks":[{"severity":"error","message":"Invalid configuration: missing expected property 'subsystem-id' for device '0000:01:00.0'"}]
        }])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/cluster/mapping/pci/gpu")))
        .respond_with(data(json!({
            "type":"pci","digest":"d1","mdev":"1","live-migration-capable":0,
            "map":["id=10de:2204,iommugroup=14,node=pve,path=0000:01:00"]
        })))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/cluster/mapping/pci")))
        .and(body_string(
            "id=gpu&description=RTX%203090\
             &map=id%3D10de%3A2204%2Ciommugroup%3D14%2Cnode%3Dpve%2Cpath%3D0000%3A01%3A00%2Csubsystem-id%3D10de%3A147d",
        ))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("PUT"))
        .and(path(api("/cluster/mapping/pci/gpu")))
        .and(body_string("mdev=1&delete=description&digest=d1"))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("DELETE"))
        .and(path(api("/cluster/mapping/pci/gpu")))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/cluster/mapping/pci")))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"data":null,"message":"create hardware mapping failed: pci ID 'dup' already defined\n"})),
        )
        .expect(1)
        .mount(&s)
        .await;

    let c = client(&s);
    let devs = c.node("pve").hardware_pci().await.unwrap();
    assert_eq!(devs.len(), 3);
    let gpu = &devs[0];
    assert!(gpu.is_gpu() && !devs[1].is_gpu());
    assert_eq!(gpu.slot(), "0000:01:00");
    assert_eq!(gpu.function(), Some("0"));
    assert_eq!(gpu.iommugroup, 14);
    assert_eq!(devs[1].iommugroup, 14);
    assert_eq!(devs[1].mdev, Some(true));
    assert_eq!(devs[2].iommugroup, -1);
    assert_eq!(devs[2].vendor_name, None);

    let entry = PciMapEntry::from_device("pve", gpu, true);
    assert_eq!(
        entry.to_string(),
        "id=10de:2204,iommugroup=14,node=pve,path=0000:01:00,subsystem-id=10de:147d"
    );
    // No IOMMU: no iommugroup in the entry; single function: the full id.
    let sata = PciMapEntry::from_device("pve", &devs[2], false);
    assert_eq!(sata.iommugroup, None);
    assert_eq!(sata.path, ["0000:00:17.0"]);

    let maps = c.pci_mappings();
    let listed = maps.list_checked("pve").await.unwrap();
    assert_eq!(listed[0].id, "gpu");
    assert_eq!(listed[0].checks.as_ref().unwrap()[0].severity, "error");
    assert_eq!(
        listed[0].entries_for("pve").unwrap()[0].iommugroup,
        Some(14)
    );
    let got = maps.get("gpu").await.unwrap();
    assert_eq!(got.id, "gpu");
    assert_eq!(got.mdev, Some(true));
    assert_eq!(got.live_migration_capable, Some(false));
    assert_eq!(got.digest.as_deref(), Some("d1"));
    assert!(got.entries_for("pve2").unwrap().is_empty());

    let p = PciMappingParams {
        description: Some("RTX 3090".into()),
        map: vec![entry],
        ..Default::default()
    };
    maps.create("gpu", &p).await.unwrap();
    let up = PciMappingParams {
        mdev: Some(true),
        ..Default::default()
    };
    maps.update("gpu", &up, &["description"], Some("d1"))
        .await
        .unwrap();
    maps.delete("gpu").await.unwrap();
    let err = maps.create("dup", &p).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        err.server_message(),
        Some("create hardware mapping failed: pci ID 'dup' already defined")
    );
    // Bad input never reaches the server.
    assert!(matches!(
        maps.create("Bad Id", &p).await,
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn map_entries_and_devices_parse_and_print() {
    let e: PciMapEntry =
        "node=pve,path=0000:01:00.0;0000:02:00.0,id=10de:2204,description=two cards"
            .parse()
            .unwrap();
    assert_eq!(e.path, ["0000:01:00.0", "0000:02:00.0"]);
    assert_eq!(e.description.as_deref(), Some("two cards"));
    assert_eq!(e.to_string().parse::<PciMapEntry>().unwrap(), e);
    for bad in [
        "path=0000:01:00.0,id=10de:2204",
        "node=pve,path=01:00.0,id=10de:2204",
        "node=pve,path=0000:01:00.0,id=10de",
        "node=pve,path=0000:01:00.0,id=10de:2204,subsystem-id=x",
        "node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=x",
    ] {
        assert!(bad.parse::<PciMapEntry>().is_err(), "{bad}");
    }
    let d: LxcDevice = "/dev/dri/renderD128,gid=44,mode=0660".parse().unwrap();
    assert_eq!(d.gid, Some(44));
    assert_eq!(d.to_string(), "/dev/dri/renderD128,gid=44,mode=0660");
    assert_eq!(LxcDevice::new("/dev/net/tun").to_string(), "/dev/net/tun");
    for bad in [
        "/tmp/x",
        "/dev/../etc/shadow",
        "/dev/x,mode=777",
        "/dev/x,uid=-1",
    ] {
        assert!(bad.parse::<LxcDevice>().is_err(), "{bad}");
    }
}

fn fast_wait() -> WaitOptions {
    WaitOptions {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn gpu_passthrough_through_a_mapping_on_the_simulator() {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    let c = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap();
    let node = c.node("pve");
    let devs = node.hardware_pci().await.unwrap();
    let gpu = devs.iter().find(|d| d.is_gpu()).unwrap();
    assert_eq!(gpu.id, "0000:01:00.0");
    let all = node
        .hardware_pci_scan(&PciScan {
            class_blacklist: Some(vec![]),
            verbose: Some(false),
        })
        .await
        .unwrap();
    assert!(all.len() > devs.len());
    assert!(all.iter().all(|d| d.device_name.is_none()));

    // A raw host id from an API token is refused (root@pam only) ...
    let mut raw = QemuOptions {
        machine: Some("q35".into()),
        ..Default::default()
    };
    raw.hostpci.insert(0, "0000:01:00,pcie=1".parse().unwrap());
    let err = node
        .qemu_create(&QemuCreate {
            vmid: 500,
            options: raw,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.server_message(),
        Some("only root can set 'hostpci0' config for non-mapped devices")
    );

    // ... a mapping built from the scan works.
    let maps = c.pci_mappings();
    maps.create(
        "gpu",
        &PciMappingParams {
            description: Some(gpu.device_name.clone().unwrap_or_default()),
            map: vec![PciMapEntry::from_device("pve", gpu, true)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let checked = maps.list_checked("pve").await.unwrap();
    assert_eq!(checked[0].checks, Some(vec![]));
    let mut opts = QemuOptions {
        machine: Some("q35".into()),
        ..Default::default()
    };
    opts.hostpci
        .insert(0, "mapping=gpu,pcie=1,x-vga=1".parse().unwrap());
    for vmid in [501, 502] {
        let upid = node
            .qemu_create(&QemuCreate {
                vmid,
                options: opts.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        c.wait_task(&upid, &fast_wait()).await.unwrap();
    }
    let cfg = node.qemu(501).config().await.unwrap();
    let h: HostPci = cfg.get_parsed("hostpci0").unwrap().unwrap();
    assert_eq!(h.mapping.as_deref(), Some("gpu"));
    let upid = node.qemu(501).start().await.unwrap();
    c.wait_task(&upid, &fast_wait()).await.unwrap();
    // One GPU, two VMs: the second start fails with PVE's reservation error.
    let upid = node.qemu(502).start().await.unwrap();
    match c.wait_task(&upid, &fast_wait()).await {
        Err(Error::TaskFailed { exitstatus, .. }) => {
            assert_eq!(
                exitstatus,
                "PCI device '0000:01:00.0' already in use by VMID '501'"
            )
        }
        other => panic!("expected a failed start, got {other:?}"),
    }

    // Containers: device passthrough is root@pam's, even for root's own token.
    let mut dev = BTreeMap::new();
    dev.insert(0, LxcDevice::new("/dev/dri/renderD128"));
    let err = node
        .lxc_create(&LxcCreate {
            vmid: 600,
            ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            options: LxcOptions {
                dev,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.server_message(),
        Some(
            "Permission check failed (configuring device passthrough is only allowed for root@pam)"
        )
    );
}
