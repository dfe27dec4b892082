//! One wiremock test per endpoint family: the exact request on the wire (method, path,
//! query/form encoding, auth header) and the decoded answer.

use std::sync::Arc;

use proxmox_client::property::*;
use proxmox_client::requests::*;
use proxmox_client::{ResourceFilter, TaskOutcome, WaitOptions};
use serde_json::json;
use wiremock::matchers::{body_string, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn version_nodes_resources_nextid() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/version")))
        .and(header("authorization", TOKEN_HEADER))
        .respond_with(data(
            json!({"version":"9.1.1","release":"9.1","repoid":"abc"}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes")))
        .respond_with(data(
            json!([{"node":"pve","status":"online","maxcpu":8,"mem":"1024",
            "ssl_fingerprint":"AB:CD"}]),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/cluster/resources")))
        .and(query_param("type", "vm"))
        .respond_with(data(json!([
            {"id":"qemu/100","type":"qemu","vmid":100,"node":"pve","name":"a","status":"running","template":0,"maxmem":2147483648u64},
            {"id":"lxc/101","type":"lxc","vmid":"101","node":"pve","status":"unknown","tags":"db;k8s"}
        ])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/cluster/nextid")))
        .respond_with(data(json!("102")))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    assert_eq!(c.version().await.unwrap().release, "9.1");
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes[0].mem, Some(1024));
    let r = c.cluster_resources(Some(ResourceFilter::Vm)).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].vmid, Some(101));
    assert_eq!(r[0].template, Some(false));
    assert_eq!(c.next_id(None).await.unwrap(), 102);
    assert_eq!(c.request_count(), 4);
}

#[tokio::test]
async fn qemu_create_sends_exact_form_and_returns_upid() {
    let s = server().await;
    let mut options = QemuOptions {
        name: Some("talos-cp-1".into()),
        memory: Some(2048),
        agent: Some("enabled=1".into()),
        sshkeys: Some(vec!["ssh-ed25519 AAAA+/= me@x".into()]),
        tags: Some(vec!["K8s".into(), "talos".into()]),
        ..Default::default()
    };
    options.disks.insert(
        "scsi0".into(),
        QemuDisk::import("local-lvm", "local:import/talos.raw"),
    );
    options
        .disks
        .insert("ide2".into(), QemuDisk::cloudinit("local-lvm"));
    options.net.insert(0, QemuNet::virtio("vmbr0"));
    options.ipconfig.insert(0, IpConfig::dhcp());
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu")))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "vmid=100&name=talos-cp-1&tags=k8s%3Btalos&memory=2048&agent=enabled%3D1\
             &sshkeys=ssh-ed25519%2520AAAA%252B%252F%253D%2520me%2540x\
             &ide2=local-lvm%3Acloudinit&scsi0=local-lvm%3A0%2Cimport-from%3Dlocal%3Aimport%2Ftalos.raw\
             &net0=virtio%2Cbridge%3Dvmbr0&ipconfig0=ip%3Ddhcp&start=1",
        ))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    let upid = client(&s)
        .node("pve")
        .qemu_create(&QemuCreate {
            vmid: 100,
            options,
            start: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(upid.task_type, "qmcreate");
    assert_eq!(upid.user, "root@pam!homelab");
}

#[tokio::test]
async fn qemu_config_status_and_updates() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/qemu/100/config")))
        .respond_with(data(json!({"digest":"d1","name":"vm","memory":"2048","cores":2,
            "net0":"virtio=BC:24:11:00:00:01,bridge=vmbr0","scsi0":"local-lvm:vm-100-disk-0,size=32G",
            "sshkeys":"ssh-ed25519%20AAAA%20me"})))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("PUT"))
        .and(path(api("/nodes/pve/qemu/100/config")))
        .and(body_string("cores=4&delete=ide2%2Cnet1&digest=d1"))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/config")))
        .and(body_string("onboot=1&background_delay=5"))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/qemu/100/status/current")))
        .respond_with(data(json!({"status":"running","vmid":100,"ha":{"managed":0},"agent":1,"qmpstatus":"running"})))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/qemu")))
        .respond_with(data(json!([{"vmid":100,"status":"running","name":"vm"}])))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let vm = c.node("pve").qemu(100);
    let cfg = vm.config().await.unwrap();
    assert_eq!(cfg.digest.as_deref(), Some("d1"));
    let net: QemuNet = cfg.get_parsed("net0").unwrap().unwrap();
    assert_eq!(net.macaddr.as_deref(), Some("BC:24:11:00:00:01"));
    let disk: QemuDisk = cfg.get_parsed("scsi0").unwrap().unwrap();
    assert_eq!(disk.size.as_deref(), Some("32G"));
    assert_eq!(cfg.ssh_keys().unwrap(), ["ssh-ed25519 AAAA me"]);
    vm.update_config(&QemuUpdate {
        options: QemuOptions {
            cores: Some(4),
            ..Default::default()
        },
        delete: vec!["ide2".into(), "net1".into()],
        digest: cfg.digest.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let done = vm
        .update_config_async(
            &QemuUpdate {
                options: QemuOptions {
                    onboot: Some(true),
                    ..Default::default()
                },
                ..Default::default()
            },
            Some(5),
        )
        .await
        .unwrap();
    assert_eq!(done, None);
    let st = vm.status().await.unwrap();
    assert!(st.is_running());
    assert_eq!(st.agent, Some(true));
    assert_eq!(c.node("pve").qemu_list().await.unwrap()[0].vmid, 100);
}

#[tokio::test]
async fn qemu_lifecycle_calls() {
    let s = server().await;
    for (m, p, body) in [
        ("POST", "/status/start", ""),
        ("POST", "/status/stop", ""),
        ("POST", "/status/shutdown", "timeout=60&forceStop=1"),
        ("POST", "/status/reboot", ""),
        ("POST", "/template", ""),
        ("POST", "/clone", "newid=200&name=c&full=1"),
        ("PUT", "/resize", "disk=scsi0&size=%2B10G"),
    ] {
        Mock::given(method(m))
            .and(path(api(&format!("/nodes/pve/qemu/100{p}"))))
            .and(body_string(body))
            .respond_with(data(json!(UPID)))
            .expect(1)
            .mount(&s)
            .await;
    }
    Mock::given(method("DELETE"))
        .and(path(api("/nodes/pve/qemu/100")))
        .and(query_param("purge", "1"))
        .and(query_param("destroy-unreferenced-disks", "1"))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/qemu/100/agent/network-get-interfaces")))
        .respond_with(data(json!({"result":[
            {"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8}]},
            {"name":"eth0","hardware-address":"bc:24:11:00:00:01","ip-addresses":[{"ip-address":"10.0.0.5","ip-address-type":"ipv4","prefix":24}],"statistics":{}}
        ]})))
        .expect(1)
        .mount(&s)
        .await;
    let vm = client(&s).node("pve").qemu(100);
    vm.start().await.unwrap();
    vm.stop().await.unwrap();
    vm.shutdown(Some(60), true).await.unwrap();
    vm.reboot().await.unwrap();
    vm.template().await.unwrap();
    vm.clone_to(&QemuClone {
        newid: 200,
        name: Some("c".into()),
        full: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(vm.resize("scsi0", "+10G", None).await.unwrap().is_some());
    vm.delete(true, true).await.unwrap();
    let ifs = vm.agent_network_interfaces().await.unwrap();
    assert_eq!(ifs[1].ip_addresses[0].ip_address, "10.0.0.5");
}

#[tokio::test]
async fn lxc_calls() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/lxc")))
        .and(body_string(
            "vmid=101&ostemplate=local%3Avztmpl%2Fdebian-12.tar.zst&hostname=ct1\
             &features=nesting%3D1&rootfs=local-lvm%3A8\
             &net0=name%3Deth0%2Cbridge%3Dvmbr0%2Cip%3Ddhcp\
             &ssh-public-keys=ssh-ed25519%20AAAA%20me%0Assh-rsa%20BBBB&unprivileged=1",
        ))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/lxc")))
        .respond_with(data(json!([{"vmid":"101","status":"stopped"}])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/lxc/101/config")))
        .respond_with(data(
            json!({"digest":"x","hostname":"ct1","rootfs":"local-lvm:vm-101-disk-0,size=8G",
            "features":"nesting=1"}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("PUT"))
        .and(path(api("/nodes/pve/lxc/101/config")))
        .and(body_string("memory=1024&digest=x"))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/lxc/101/status/current")))
        .respond_with(data(json!({"status":"stopped","vmid":101,"ha":{}})))
        .expect(1)
        .mount(&s)
        .await;
    for p in ["/status/start", "/status/stop"] {
        Mock::given(method("POST"))
            .and(path(api(&format!("/nodes/pve/lxc/101{p}"))))
            .respond_with(data(json!(UPID)))
            .expect(1)
            .mount(&s)
            .await;
    }
    Mock::given(method("DELETE"))
        .and(path(api("/nodes/pve/lxc/101")))
        .and(query_param("purge", "1"))
        .and(query_param("force", "0"))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let node = c.node("pve");
    let mut options = LxcOptions {
        hostname: Some("ct1".into()),
        features: Some("nesting=1".parse().unwrap()),
        rootfs: Some(LxcMountPoint::new_volume("local-lvm", 8)),
        ..Default::default()
    };
    options
        .net
        .insert(0, "name=eth0,bridge=vmbr0,ip=dhcp".parse().unwrap());
    node.lxc_create(&LxcCreate {
        vmid: 101,
        ostemplate: "local:vztmpl/debian-12.tar.zst".into(),
        options,
        ssh_public_keys: Some(vec!["ssh-ed25519 AAAA me".into(), "ssh-rsa BBBB".into()]),
        unprivileged: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(node.lxc_list().await.unwrap()[0].vmid, 101);
    let ct = node.lxc(101);
    let cfg = ct.config().await.unwrap();
    let rootfs: LxcMountPoint = cfg.get_parsed("rootfs").unwrap().unwrap();
    assert_eq!(rootfs.size.as_deref(), Some("8G"));
    ct.update_config(&LxcUpdate {
        options: LxcOptions {
            memory: Some(1024),
            ..Default::default()
        },
        digest: cfg.digest.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!ct.status().await.unwrap().is_running());
    ct.start().await.unwrap();
    ct.stop().await.unwrap();
    ct.delete(true, false).await.unwrap();
}

#[tokio::test]
async fn storage_content_download_and_streaming_upload() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/storage")))
        .and(query_param("content", "iso"))
        .respond_with(data(json!([{"storage":"local","type":"dir","content":"iso,vztmpl,import","active":1,"total":100,"used":"10","avail":90}])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/storage/local/content")))
        .and(query_param("content", "iso"))
        .respond_with(data(json!([{"volid":"local:iso/talos.iso","format":"iso","size":104857600,"content":"iso","ctime":1700000000}])))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/storage/local/download-url")))
        .and(body_string(
            "url=http%3A%2F%2F127.0.0.1%3A9%2Ftalos.iso&filename=talos.iso&content=iso\
             &checksum=abcd&checksum-algorithm=sha256&verify-certificates=0",
        ))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    let payload: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/storage/local/upload")))
        .and(header("authorization", TOKEN_HEADER))
        .and(move |req: &wiremock::Request| {
            // Content-Length (no chunking), fields before the file part, file bytes intact.
            let len_ok = req
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                == Some(req.body.len());
            let ct = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let Some(boundary) = ct.strip_prefix("multipart/form-data; boundary=") else {
                return false;
            };
            let body = &req.body;
            let find = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle);
            let content = find(b"name=\"content\"\r\n\r\nimport\r\n");
            let alg = find(b"name=\"checksum-algorithm\"\r\n\r\nsha256\r\n");
            let sum = find(b"name=\"checksum\"\r\n\r\nfeed\r\n");
            let file = find(b"name=\"filename\"; filename=\"talos.raw\"");
            let start = find(b"application/octet-stream\r\n\r\n").map(|p| p + 28);
            let tail = format!("\r\n--{boundary}--\r\n");
            let order_ok = matches!((content, alg, sum, file), (Some(a), Some(b), Some(c), Some(d)) if a < b && b < c && c < d);
            let bytes_ok = start.is_some_and(|st| {
                body.len() >= st + expected.len() + tail.len()
                    && body[st..st + expected.len()] == expected[..]
                    && body.ends_with(tail.as_bytes())
            });
            len_ok && order_ok && bytes_ok
        })
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let storages = c.node("pve").storage_list(Some("iso")).await.unwrap();
    assert!(storages[0].allows("import"));
    assert_eq!(storages[0].used, Some(10));
    let local = c.node("pve").storage("local");
    let content = local.content(Some("iso"), None).await.unwrap();
    assert_eq!(content[0].size, 104857600);
    local
        .download_url(&DownloadUrl {
            url: "http://127.0.0.1:9/talos.iso".into(),
            filename: "talos.iso".into(),
            content: "iso".into(),
            checksum: Some((ChecksumAlgorithm::Sha256, "abcd".into())),
            verify_certificates: Some(false),
            compression: None,
        })
        .await
        .unwrap();
    let progress_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = progress_seen.clone();
    let total = payload.len() as u64;
    let upid = local
        .upload(
            &Upload {
                content: "import".into(),
                filename: "talos.raw".into(),
                checksum: Some((ChecksumAlgorithm::Sha256, "feed".into())),
            },
            std::io::Cursor::new(payload),
            total,
            Some(Arc::new(move |a, b| seen.lock().unwrap().push((a, b)))),
        )
        .await
        .unwrap();
    assert_eq!(upid.to_string(), UPID);
    let seen = progress_seen.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test]
async fn tasks_status_log_and_wait() {
    let s = server().await;
    let status_path = api(&format!("/nodes/pve/tasks/{UPID_ENC}/status"));
    // Running twice, then stopped with warnings.
    Mock::given(method("GET"))
        .and(path(status_path.clone()))
        .respond_with(data(
            json!({"status":"running","upid":UPID,"type":"qmcreate"}),
        ))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(status_path))
        .respond_with(data(
            json!({"status":"stopped","exitstatus":"WARNINGS: 1","upid":UPID}),
        ))
        .expect(1)
        .with_priority(2)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api(&format!("/nodes/pve/tasks/{UPID_ENC}/log"))))
        .and(query_param("start", "0"))
        .and(query_param("limit", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data":[
            {"n":1,"t":"scsi0: successfully created disk 'local-lvm:vm-100-disk-0,size=32G'"},
            {"n":2,"t":"TASK WARNINGS: 1"}], "total": 2})))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let upid = UPID.parse().unwrap();
    let fast = WaitOptions {
        initial_interval: std::time::Duration::from_millis(5),
        max_interval: std::time::Duration::from_millis(10),
        deadline: std::time::Duration::from_secs(30),
    };
    assert_eq!(
        c.wait_task(&upid, &fast).await.unwrap(),
        TaskOutcome::Warnings(1)
    );
    let log = c.task_log(&upid, Some(0), Some(50)).await.unwrap();
    assert_eq!(log.last().unwrap().t, "TASK WARNINGS: 1");
}

#[tokio::test]
async fn task_wait_failure_and_deadline() {
    let s = server().await;
    let failed: proxmox_client::Upid = "UPID:pve:00000001:00000002:6738AA7F:qmstart:100:root@pam:"
        .parse()
        .unwrap();
    let running: proxmox_client::Upid = "UPID:pve:00000003:00000004:6738AA7F:qmclone:100:root@pam:"
        .parse()
        .unwrap();
    Mock::given(method("GET"))
        .and(path(api(&format!(
            "/nodes/pve/tasks/{}/status",
            proxmox_client::percent_encode(failed.as_str())
        ))))
        .respond_with(data(
            json!({"status":"stopped","exitstatus":"VM 100 already running"}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api(&format!(
            "/nodes/pve/tasks/{}/status",
            proxmox_client::percent_encode(running.as_str())
        ))))
        .respond_with(data(json!({"status":"running"})))
        .expect(2..)
        .mount(&s)
        .await;
    let c = client(&s);
    let opts = WaitOptions {
        initial_interval: std::time::Duration::from_millis(5),
        max_interval: std::time::Duration::from_millis(10),
        deadline: std::time::Duration::from_millis(60),
    };
    match c.wait_task(&failed, &opts).await.unwrap_err() {
        proxmox_client::Error::TaskFailed { exitstatus, upid } => {
            assert_eq!(exitstatus, "VM 100 already running");
            assert_eq!(upid, failed.as_str());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.wait_task(&running, &opts).await.unwrap_err(),
        proxmox_client::Error::TaskTimeout { .. }
    ));
}

#[tokio::test]
async fn pools_access_backup_sdn() {
    let s = server().await;
    let mocks: Vec<(&str, &str, Option<&str>, serde_json::Value)> = vec![
        (
            "GET",
            "/pools",
            None,
            json!([{"poolid":"lab","comment":"c"}]),
        ),
        (
            "POST",
            "/pools",
            Some("poolid=lab&comment=homelab"),
            json!(null),
        ),
        (
            "PUT",
            "/pools",
            Some("poolid=lab&vms=100%2C101&allow-move=1"),
            json!(null),
        ),
        (
            "GET",
            "/access/users",
            None,
            json!([{"userid":"homelab@pve","enable":1,"expire":0}]),
        ),
        (
            "POST",
            "/access/users",
            Some("userid=homelab%40pve&comment=automation&enable=1"),
            json!(null),
        ),
        (
            "POST",
            "/access/roles",
            Some("roleid=Homelab&privs=VM.Allocate%2CVM.Audit"),
            json!(null),
        ),
        (
            "GET",
            "/access/roles",
            None,
            json!([{"roleid":"Homelab","privs":"VM.Audit","special":0}]),
        ),
        (
            "POST",
            "/access/users/homelab%40pve/token/provision",
            Some("privsep=1"),
            json!({"full-tokenid":"homelab@pve!provision","value":"5f0e0000-0000-4000-8000-000000000000","info":{"privsep":1}}),
        ),
        (
            "GET",
            "/access/users/homelab%40pve/token",
            None,
            json!([{"tokenid":"provision","privsep":1}]),
        ),
        (
            "PUT",
            "/access/acl",
            Some("path=%2Fvms&roles=Homelab&tokens=homelab%40pve%21provision&propagate=1"),
            json!(null),
        ),
        (
            "GET",
            "/access/acl",
            None,
            json!([{"path":"/vms","roleid":"Homelab","type":"token","ugid":"homelab@pve!provision","propagate":1}]),
        ),
        (
            "GET",
            "/cluster/backup",
            None,
            json!([{"id":"backup-1","schedule":"sun 01:00","enabled":1,"next-run":1700000000}]),
        ),
        (
            "POST",
            "/cluster/backup",
            Some("id=backup-1&schedule=sun%2001%3A00&storage=local&vmid=100&mode=snapshot"),
            json!(null),
        ),
        (
            "GET",
            "/cluster/sdn/zones",
            None,
            json!([{"zone":"lab","type":"simple","digest":"x"}]),
        ),
        (
            "POST",
            "/cluster/sdn/zones",
            Some("zone=lab&type=simple"),
            json!(null),
        ),
        (
            "POST",
            "/cluster/sdn/vnets",
            Some("vnet=vnet1&zone=lab&tag=100"),
            json!(null),
        ),
        (
            "GET",
            "/cluster/sdn/vnets",
            None,
            json!([{"vnet":"vnet1","type":"vnet","zone":"lab"}]),
        ),
        (
            "POST",
            "/cluster/sdn/vnets/vnet1/subnets",
            Some("subnet=10.10.0.0%2F24&type=subnet&gateway=10.10.0.1&snat=1"),
            json!(null),
        ),
        ("PUT", "/cluster/sdn", Some(""), json!(UPID)),
    ];
    for (m, p, body, resp) in mocks {
        let mut mock = Mock::given(method(m)).and(path(api(p)));
        if let Some(b) = body {
            mock = mock.and(body_string(b));
        }
        mock.respond_with(data(resp)).expect(1).mount(&s).await;
    }
    Mock::given(method("DELETE"))
        .and(path(api("/pools")))
        .and(query_param("poolid", "lab"))
        .respond_with(data(json!(null)))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let pools = c.pools();
    assert_eq!(pools.list().await.unwrap()[0].poolid, "lab");
    pools.create("lab", Some("homelab")).await.unwrap();
    pools
        .update(
            "lab",
            &PoolUpdate {
                vms: vec![100, 101],
                allow_move: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    pools.delete("lab").await.unwrap();
    let access = c.access();
    assert_eq!(access.users().await.unwrap()[0].enable, Some(true));
    access
        .create_user(&UserCreate {
            userid: "homelab@pve".into(),
            comment: Some("automation".into()),
            enable: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    access
        .create_role("Homelab", &["VM.Allocate", "VM.Audit"])
        .await
        .unwrap();
    assert_eq!(access.roles().await.unwrap()[0].roleid, "Homelab");
    let tok = access
        .create_token("homelab@pve", "provision", true, None)
        .await
        .unwrap();
    assert_eq!(tok.full_tokenid, "homelab@pve!provision");
    assert!(
        !format!("{tok:?}").contains("5f0e0000"),
        "secret leaked in Debug"
    );
    assert_eq!(
        access.tokens("homelab@pve").await.unwrap()[0].tokenid,
        "provision"
    );
    access
        .update_acl(&AclUpdate {
            path: "/vms".into(),
            roles: vec!["Homelab".into()],
            tokens: vec!["homelab@pve!provision".into()],
            propagate: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(access.acl().await.unwrap()[0].kind, "token");
    let jobs = c.backup_jobs();
    assert_eq!(jobs.list().await.unwrap()[0].enabled, Some(true));
    jobs.create(
        Some("backup-1"),
        &BackupJobParams {
            schedule: Some("sun 01:00".into()),
            storage: Some("local".into()),
            vmid: vec![100],
            mode: Some("snapshot".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sdn = c.sdn();
    assert_eq!(sdn.zones().await.unwrap()[0].kind, "simple");
    sdn.create_zone("lab", "simple", &vec![]).await.unwrap();
    sdn.create_vnet("vnet1", "lab", Some(100), None)
        .await
        .unwrap();
    assert_eq!(sdn.vnets().await.unwrap()[0].fields["vnet"], "vnet1");
    sdn.create_subnet("vnet1", "10.10.0.0/24", Some("10.10.0.1"), Some(true))
        .await
        .unwrap();
    sdn.apply().await.unwrap();
}

#[tokio::test]
async fn raw_escape_hatch() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/certificates/info")))
        .respond_with(data(
            json!([{"fingerprint":"AB:CD","filename":"pve-ssl.pem"}]),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/agent")))
        .and(body_string_contains("command=ping"))
        .respond_with(data(json!({"result":{}})))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let v: serde_json::Value = c.get("nodes/pve/certificates/info", &[]).await.unwrap();
    assert_eq!(v[0]["fingerprint"], "AB:CD");
    let _: serde_json::Value = c
        .post("/nodes/pve/qemu/100/agent", &[("command", "ping".into())])
        .await
        .unwrap();
}
