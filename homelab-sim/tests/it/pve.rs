//! Integration tests of the simulated Proxmox VE over real TLS (pinned by fingerprint),
//! with plain reqwest: envelope, errors, validation, auth, tasks, locks, guests, storage,
//! persistence and faults.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homelab_sim::lab::{Lab, LabHandle};
use homelab_sim::runtime::{GuestRuntime, GuestStart};
use serde_json::{Value, json};
use sha2::Digest;

// ----------------------------------------------------------------------------- helpers

/// Trust exactly one certificate: the one whose SHA-256 matches the pin.
fn pinned_client(fingerprint: &str) -> reqwest::Client {
    let cfg = homelab_sim::tls::PinnedVerifier::new(fingerprint)
        .unwrap()
        .client_config()
        .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .unwrap()
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) body: Value,
    pub(crate) raw: String,
}

impl Resp {
    pub(crate) fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "{self:?}");
        &self.body["data"]
    }
    pub(crate) fn error(&self, param: &str) -> &str {
        self.body["errors"][param]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {param}: {self:?}"))
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) auth: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) csrf: Option<String>,
}

impl Api {
    pub(crate) fn token(lab: &LabHandle) -> Self {
        Api {
            client: pinned_client(&lab.fingerprint()),
            base: lab.api_url(),
            auth: Some(lab.authorization()),
            cookie: None,
            csrf: None,
        }
    }
    pub(crate) fn anonymous(lab: &LabHandle) -> Self {
        Api {
            auth: None,
            ..Api::token(lab)
        }
    }
    pub(crate) fn with_auth(&self, auth: &str) -> Self {
        Api {
            auth: Some(auth.to_string()),
            ..self.clone()
        }
    }
    pub(crate) async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let mut rb = rb;
        if let Some(a) = &self.auth {
            rb = rb.header("Authorization", a);
        }
        if let Some(c) = &self.cookie {
            rb = rb.header("Cookie", format!("PVEAuthCookie={c}"));
        }
        if let Some(c) = &self.csrf {
            rb = rb.header("CSRFPreventionToken", c);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let reason = r
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .unwrap_or_else(|| r.status().canonical_reason().unwrap_or("").to_string());
        let raw = r.text().await.unwrap();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            reason,
            body,
            raw,
        }
    }
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send(self.client.post(self.url(path)).form(form)).await
    }
    pub(crate) async fn put(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send(self.client.put(self.url(path)).form(form)).await
    }
    pub(crate) async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path))).await
    }
    /// Poll a task until it stops; returns its status object.
    pub(crate) async fn wait(&self, upid: &str) -> Value {
        let node = upid.split(':').nth(1).unwrap();
        let path = format!("/nodes/{node}/tasks/{}/status", enc(upid));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.get(&path).await;
            let d = st.data().clone();
            if d["status"] == "stopped" {
                return d;
            }
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    pub(crate) async fn wait_ok(&self, r: Resp) -> Value {
        let upid = r.data().as_str().unwrap().to_string();
        let st = self.wait(&upid).await;
        assert_eq!(st["exitstatus"], "OK", "{upid}: {st}");
        st
    }
    pub(crate) async fn log(&self, upid: &str) -> Vec<String> {
        let node = upid.split(':').nth(1).unwrap();
        let r = self
            .get(&format!("/nodes/{node}/tasks/{}/log?limit=500", enc(upid)))
            .await;
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap().to_string())
            .collect()
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Debug, Default)]
struct TestRuntime {
    fail: bool,
    events: Mutex<Vec<String>>,
}

impl GuestRuntime for TestRuntime {
    fn started(&self, guest: &GuestStart) -> Result<Vec<IpAddr>, String> {
        self.events
            .lock()
            .unwrap()
            .push(format!("started {} {}", guest.vmid, guest.name));
        if self.fail {
            return Err("no kernel found".into());
        }
        Ok(vec![
            format!("10.9.0.{}", guest.vmid % 200).parse().unwrap(),
        ])
    }
    fn stopped(&self, _node: &str, vmid: u32) {
        self.events.lock().unwrap().push(format!("stopped {vmid}"));
    }
    fn destroyed(&self, _node: &str, vmid: u32) {
        self.events
            .lock()
            .unwrap()
            .push(format!("destroyed {vmid}"));
    }
}

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(50))
        .agent_delay(Duration::from_millis(200))
        .lock_timeout(Duration::from_millis(300))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap()
}

/// Serve `body` over plain HTTP on loopback for download-url tests.
pub(crate) async fn file_server(body: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(body)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn create_vm(api: &Api, vmid: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("vmid", vmid),
        ("name", "talos-cp-1"),
        ("memory", "2048"),
        ("cores", "2"),
        ("net0", "virtio,bridge=vmbr0,firewall=1"),
        ("scsi0", "local-lvm:8,discard=on,ssd=1"),
        ("tags", "Talos;k8s, cp"),
    ];
    form.extend_from_slice(extra);
    api.post("/nodes/pve/qemu", &form).await
}

// ----------------------------------------------------------------------------- tests

#[tokio::test]
async fn envelope_auth_and_pinning() {
    let lab = lab().await;
    let api = Api::token(&lab);
    let v = api.get("/version").await;
    assert_eq!(v.data()["release"], "9.1");
    assert!(v.raw.starts_with("{\"data\":"));

    let nodes = api.get("/nodes").await;
    assert_eq!(nodes.data()[0]["node"], "pve");
    assert_eq!(nodes.data()[0]["ssl_fingerprint"], lab.fingerprint());

    let anon = Api::anonymous(&lab).get("/version").await;
    assert_eq!((anon.status, anon.reason.as_str()), (401, "No ticket"));
    let bad = api
        .with_auth("PVEAPIToken=root@pam!homelab-sim=00000000-0000-0000-0000-000000000000")
        .get("/version")
        .await;
    assert_eq!(
        (bad.status, bad.reason.as_str()),
        (401, "Authentication failed!")
    );

    let missing = api.get("/nodes/pve/nope").await;
    assert_eq!(missing.status, 501);
    assert_eq!(
        missing.reason,
        "Method 'GET /nodes/pve/nope' not implemented"
    );
    assert_eq!(missing.body["data"], Value::Null);

    // A client pinned to another fingerprint refuses the connection.
    let wrong = pinned_client(&["AA"; 32].join(":"));
    assert!(wrong.get(lab.api_url() + "/version").send().await.is_err());
    // The certificate the server presents is the one whose fingerprint the lab reports.
    let cert = lab.cert_pem();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    let fp_again = api.get("/nodes/pve/certificates/info").await;
    assert_eq!(fp_again.data()[0]["fingerprint"], lab.fingerprint());
}

#[tokio::test]
async fn validation_errors_are_pves() {
    let lab = lab().await;
    let api = Api::token(&lab);
    assert_eq!(lab.requests().schema_rejected, 0);
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "99"),
                ("cores", "abc"),
                ("start", "true"),
                ("bogus", "1"),
                ("net0", "virtio,tag=5000"),
                ("scsihw", "nvme"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    assert_eq!(r.body["message"], "Parameter verification failed.\n");
    // Counted, so that end-to-end runs can assert that nothing they sent was refused.
    assert_eq!(lab.requests().schema_rejected, 1);
    assert_eq!(
        r.error("vmid"),
        "invalid format - value does not look like a valid VM ID\n"
    );
    assert_eq!(
        r.error("cores"),
        "type check ('integer') failed - got 'abc'"
    );
    assert_eq!(
        r.error("start"),
        "type check ('boolean') failed - got 'true'"
    );
    assert_eq!(
        r.error("bogus"),
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(
        r.error("net0"),
        "invalid format - format error\nnet0.tag: value must have a maximum value of 4094\n"
    );
    assert!(
        r.error("scsihw")
            .starts_with("value 'nvme' does not have a value in the enumeration 'lsi, ")
    );

    let r = api.post("/nodes/pve/qemu", &[("name", "x")]).await;
    assert_eq!(
        r.error("vmid"),
        "property is missing and it is not optional"
    );

    let r = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "100"), ("sockets", "0"), ("memory", "x")],
        )
        .await;
    assert_eq!(r.error("sockets"), "value must have a minimum value of 1");
    assert_eq!(
        r.error("memory"),
        "invalid format - format error\nmemory.current: type check ('integer') failed - got 'x'\n"
    );

    // JSON bodies accept real booleans; path/body conflicts are refused.
    let r = api
        .send(
            api.client
                .post(api.url("/nodes/pve/qemu"))
                .json(&json!({"vmid": 120, "start": false, "node": "other"})),
        )
        .await;
    assert_eq!(
        r.error("node"),
        "duplicate parameter (already defined in URI) with conflicting values!"
    );
    // A body on GET is refused like pveproxy does.
    let r = api
        .send(api.client.get(api.url("/version")).body("a=b"))
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (501, "Unexpected content for method 'GET'")
    );
}

#[tokio::test]
async fn ticket_login_and_csrf() {
    let lab = lab().await;
    let api = Api::anonymous(&lab);
    let bad = api
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "wrong")],
        )
        .await;
    assert_eq!(
        (bad.status, bad.reason.as_str()),
        (401, "authentication failure")
    );
    let r = api
        .post(
            "/access/ticket",
            &[
                ("username", "root"),
                ("realm", "pam"),
                ("password", lab.root_password()),
            ],
        )
        .await;
    let d = r.data().clone();
    assert!(d["ticket"].as_str().unwrap().starts_with("PVE:root@pam:"));
    let mut t = api.clone();
    t.cookie = Some(d["ticket"].as_str().unwrap().to_string());
    assert_eq!(t.get("/version").await.status, 200);
    let no_csrf = t.post("/pools", &[("poolid", "k8s")]).await;
    assert_eq!(
        (no_csrf.status, no_csrf.reason.as_str()),
        (401, "Permission denied - invalid csrf token")
    );
    t.csrf = Some(d["CSRFPreventionToken"].as_str().unwrap().to_string());
    assert_eq!(t.post("/pools", &[("poolid", "k8s")]).await.status, 200);
    // Renewal: the current ticket works as the password.
    let renewed = api
        .post(
            "/access/ticket",
            &[
                ("username", "root@pam"),
                ("password", d["ticket"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(renewed.status, 200);
    // API tokens cannot use ticket-only endpoints.
    let tok = Api::token(&lab)
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "x")],
        )
        .await;
    assert_eq!(tok.status, 403);
    assert_eq!(
        tok.reason,
        "Permission check failed (URI '/access/ticket' not available with API token, need proper ticket.)"
    );
}

#[tokio::test]
async fn vm_lifecycle_with_agent_and_runtime() {
    let runtime = Arc::new(TestRuntime::default());
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(50))
        .agent_delay(Duration::from_millis(200))
        .stats_interval(Duration::from_secs(3600))
        .runtime(runtime.clone())
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);
    let r = create_vm(
        &api,
        "100",
        &[
            ("agent", "1"),
            ("ide2", "local-lvm:cloudinit"),
            ("cipassword", "hunter2"),
        ],
    )
    .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:pve:"), "{upid}");
    assert!(
        upid.contains(":qmcreate:100:root@pam!homelab-sim:"),
        "{upid}"
    );
    api.wait_ok(r).await;
    let log = api.log(&upid).await;
    assert!(
        log.iter().any(|l| l.starts_with(
            "scsi0: successfully created disk 'local-lvm:vm-100-disk-0,discard=on,size=8G,ssd=1'"
        )),
        "{log:?}"
    );
    assert!(
        log.iter().any(
            |l| l == "ide2: successfully created disk 'local-lvm:vm-100-cloudinit,media=cdrom'"
        ),
        "{log:?}"
    );
    assert_eq!(log.last().unwrap(), "TASK OK");

    let cfg = api.get("/nodes/pve/qemu/100/config").await;
    let c = cfg.data();
    assert!(
        c["net0"].as_str().unwrap().starts_with("virtio=BC:24:11:"),
        "{c}"
    );
    assert!(
        c["net0"]
            .as_str()
            .unwrap()
            .ends_with(",bridge=vmbr0,firewall=1")
    );
    assert_eq!(c["tags"], "cp;k8s;talos");
    assert_eq!(c["memory"], "2048");
    assert_eq!(c["cores"], 2);
    assert!(c["smbios1"].as_str().unwrap().starts_with("uuid="));
    assert!(c["meta"].as_str().unwrap().starts_with("creation-qemu="));
    assert_eq!(c["boot"], "order=scsi0;net0");
    assert_eq!(c["cipassword"], "**********");
    assert_eq!(c["digest"].as_str().unwrap().len(), 40);
    assert!(c.get("lock").is_none());

    // Same VMID again: one vmlist for VMs and CTs.
    let dup = create_vm(&api, "100", &[]).await;
    assert_eq!(dup.status, 500);
    assert_eq!(
        dup.reason,
        "unable to create VM 100 - VM 100 already exists on node 'pve'"
    );
    assert_eq!(api.get("/cluster/nextid").await.data(), "101");
    assert_eq!(
        api.get("/cluster/nextid?vmid=100").await.error("vmid"),
        "VM 100 already exists"
    );

    let stop = api.post("/nodes/pve/qemu/100/status/stop", &[]).await;
    assert_eq!(
        (stop.status, stop.reason.as_str()),
        (500, "VM 100 not running")
    );
    let agent = api
        .get("/nodes/pve/qemu/100/agent/network-get-interfaces")
        .await;
    assert_eq!(agent.reason, "VM 100 is not running");

    api.wait_ok(api.post("/nodes/pve/qemu/100/status/start", &[]).await)
        .await;
    assert_eq!(
        api.get("/nodes/pve/qemu/100/status/current").await.data()["status"],
        "running"
    );
    // The agent answers once it is up; then it reports the runtime's address.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ifaces = loop {
        let r = api
            .get("/nodes/pve/qemu/100/agent/network-get-interfaces")
            .await;
        if r.status == 200 {
            break r.data().clone();
        }
        assert_eq!(r.reason, "QEMU guest agent is not running");
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let eth0 = &ifaces["result"][1];
    assert_eq!(eth0["ip-addresses"][0]["ip-address"], "10.9.0.100");
    assert!(
        eth0["hardware-address"]
            .as_str()
            .unwrap()
            .starts_with("bc:24:11:")
    );

    // Starting a running VM fails inside the task.
    let again = api.post("/nodes/pve/qemu/100/status/start", &[]).await;
    let st = api.wait(again.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "VM 100 already running");

    let del = api.delete("/nodes/pve/qemu/100").await;
    assert_eq!(del.reason, "VM 100 is running - destroy failed");
    api.wait_ok(api.post("/nodes/pve/qemu/100/status/shutdown", &[]).await)
        .await;
    api.wait_ok(
        api.delete("/nodes/pve/qemu/100?purge=1&destroy-unreferenced-disks=1")
            .await,
    )
    .await;
    let gone = api.get("/nodes/pve/qemu/100/config").await;
    assert_eq!(
        gone.reason,
        "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist"
    );
    let content = api.get("/nodes/pve/storage/local-lvm/content").await;
    assert_eq!(content.data().as_array().unwrap().len(), 0);
    assert_eq!(
        *runtime.events.lock().unwrap(),
        vec!["started 100 talos-cp-1", "stopped 100", "destroyed 100"]
    );
}

#[tokio::test]
async fn pending_changes_digest_and_reboot() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.wait_ok(create_vm(&api, "101", &[]).await).await;
    api.wait_ok(api.post("/nodes/pve/qemu/101/status/start", &[]).await)
        .await;
    let digest = api.get("/nodes/pve/qemu/101/config").await.data()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // cores is not hot-pluggable: it goes to pending; the name applies at once.
    let r = api
        .put(
            "/nodes/pve/qemu/101/config",
            &[("cores", "4"), ("name", "renamed"), ("digest", &digest)],
        )
        .await;
    assert_eq!(r.data(), &Value::Null);
    let stale = api
        .put(
            "/nodes/pve/qemu/101/config",
            &[("cores", "8"), ("digest", &digest)],
        )
        .await;
    assert_eq!(
        (stale.status, stale.reason.as_str()),
        (500, "checksum mismatch (file change by other user?)")
    );
    let pending = api.get("/nodes/pve/qemu/101/pending").await;
    let cores = pending
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "cores")
        .unwrap()
        .clone();
    assert_eq!(cores, json!({"key": "cores", "value": "2", "pending": "4"}));
    let current = api.get("/nodes/pve/qemu/101/config?current=1").await;
    assert_eq!(current.data()["cores"], 2);
    assert_eq!(current.data()["name"], "renamed");
    assert_eq!(
        api.get("/nodes/pve/qemu/101/config").await.data()["cores"],
        4
    );
    let empty = api.put("/nodes/pve/qemu/101/config", &[]).await;
    assert_eq!(empty.reason, "no options specified");

    api.wait_ok(api.post("/nodes/pve/qemu/101/status/reboot", &[]).await)
        .await;
    assert_eq!(
        api.get("/nodes/pve/qemu/101/config?current=1").await.data()["cores"],
        4
    );
    assert!(
        api.get("/nodes/pve/qemu/101/pending")
            .await
            .data()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("pending").is_none())
    );

    // POST config is the async form: it returns a qmconfig UPID (or null with background_delay).
    let r = api
        .post("/nodes/pve/qemu/101/config", &[("description", "hello")])
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(upid.contains(":qmconfig:101:"));
    api.wait(&upid).await;
    let r = api
        .post(
            "/nodes/pve/qemu/101/config",
            &[("onboot", "1"), ("background_delay", "5")],
        )
        .await;
    assert_eq!(r.data(), &Value::Null);
    // Removing a disk without force keeps its volume as unused0.
    api.wait_ok(api.post("/nodes/pve/qemu/101/status/stop", &[]).await)
        .await;
    api.put("/nodes/pve/qemu/101/config", &[("delete", "scsi0")])
        .await
        .data();
    let c = api.get("/nodes/pve/qemu/101/config").await;
    assert_eq!(c.data()["unused0"], "local-lvm:vm-101-disk-0");
}

#[tokio::test]
async fn locks_and_lock_timeouts() {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(1500))
        .lock_timeout(Duration::from_millis(100))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);
    let r = create_vm(&api, "102", &[]).await;
    let upid = r.data().as_str().unwrap().to_string();
    // While the create task runs the config carries `lock: create`.
    let cfg = api.get("/nodes/pve/qemu/102/config").await;
    assert_eq!(cfg.data()["lock"], "create");
    let res = api.get("/cluster/resources?type=vm").await;
    assert_eq!(res.data()[0]["lock"], "create");
    assert_eq!(res.data()[0]["status"], "unknown");
    let start = api.post("/nodes/pve/qemu/102/status/start", &[]).await;
    assert_eq!(
        (start.status, start.reason.as_str()),
        (500, "VM is locked (create)")
    );
    // skiplock is root@pam's alone (the token is root's, but not root itself).
    let skip = api
        .post("/nodes/pve/qemu/102/status/start", &[("skiplock", "1")])
        .await;
    assert_eq!(skip.error("skiplock"), "Only root may use this option.");
    api.wait(&upid).await;

    lab.faults().lock_timeouts(1);
    let r = api
        .put("/nodes/pve/qemu/102/config", &[("name", "x")])
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            500,
            "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout"
        )
    );
    assert_eq!(
        r.body["message"],
        "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout\n"
    );
    assert_eq!(
        api.put("/nodes/pve/qemu/102/config", &[("name", "x")])
            .await
            .status,
        200
    );

    // Real contention: a running task holds the guest lock longer than lock_timeout.
    let start = api.post("/nodes/pve/qemu/102/status/start", &[]).await;
    let upid = start.data().as_str().unwrap().to_string();
    let r = api
        .put("/nodes/pve/qemu/102/config", &[("name", "y")])
        .await;
    assert_eq!(
        r.reason,
        "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout"
    );
    api.wait(&upid).await;
}

#[tokio::test]
async fn tasks_end_ok_warnings_or_error() {
    let runtime = Arc::new(TestRuntime {
        fail: true,
        ..TestRuntime::default()
    });
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(30))
        .runtime(runtime)
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);
    // A failed autostart is only a warning of the create task.
    let r = create_vm(&api, "103", &[("start", "1")]).await;
    let upid = r.data().as_str().unwrap().to_string();
    let st = api.wait(&upid).await;
    assert_eq!(st["exitstatus"], "WARNINGS: 1");
    let log = api.log(&upid).await;
    assert_eq!(log.last().unwrap(), "TASK WARNINGS: 1");
    assert!(log.iter().any(|l| l == "Execute autostart"));
    // A failing start is the task's error.
    let r = api.post("/nodes/pve/qemu/103/status/start", &[]).await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "start failed: no kernel found");

    lab.faults().fail_tasks(
        Some("qmclone"),
        1,
        "clone failed: can't lock file '/var/lock/qemu-server/lock-103.conf' - got timeout",
    );
    let r = api
        .post("/nodes/pve/qemu/103/clone", &[("newid", "104")])
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    let st = api.wait(&upid).await;
    assert_eq!(
        st["exitstatus"],
        "clone failed: can't lock file '/var/lock/qemu-server/lock-103.conf' - got timeout"
    );
    assert_eq!(
        api.log(&upid).await.last().unwrap(),
        "TASK ERROR: clone failed: can't lock file '/var/lock/qemu-server/lock-103.conf' - got timeout"
    );

    // Task log paging and the task list.
    let page = api
        .get(&format!(
            "/nodes/pve/tasks/{}/log?start=0&limit=1",
            enc(&upid)
        ))
        .await;
    assert_eq!(page.data().as_array().unwrap().len(), 1);
    assert_eq!(page.data()[0]["n"], 1);
    assert!(page.body["total"].as_u64().unwrap() >= 1);
    let list = api.get("/nodes/pve/tasks?typefilter=qmcreate").await;
    assert_eq!(list.data()[0]["status"], "WARNINGS: 1");
    let errs = api.get("/nodes/pve/tasks?errors=1").await;
    assert_eq!(errs.data().as_array().unwrap().len(), 2);

    let unknown = api
        .get(&format!(
            "/nodes/pve/tasks/{}/status",
            enc("UPID:pve:00001234:00000001:5F000000:qmstart:100:root@pam:")
        ))
        .await;
    assert_eq!(unknown.error("upid"), "no such task");
    let garbage = api.get("/nodes/pve/tasks/nonsense/status").await;
    assert_eq!(garbage.error("upid"), "unable to parse worker upid");
}

#[tokio::test]
async fn cluster_resources_lag_behind() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.wait_ok(create_vm(&api, "105", &[]).await).await;
    let r = api.get("/cluster/resources?type=vm").await;
    let e = &r.data()[0];
    // pvestatd has not broadcast yet: no name, status unknown; tags are current.
    assert_eq!(e["status"], "unknown");
    assert_eq!(e["tags"], "cp;k8s;talos");
    assert!(e.get("name").is_none());
    lab.refresh_stats();
    let r = api.get("/cluster/resources?type=vm").await;
    let e = &r.data()[0];
    assert_eq!(e["status"], "stopped");
    assert_eq!(e["name"], "talos-cp-1");
    assert_eq!(e["maxmem"], 2048u64 << 20);
    assert_eq!(e["maxdisk"], 8u64 << 30);
    assert_eq!(e["template"], 0);
    assert_eq!(e["id"], "qemu/105");
    let all = api.get("/cluster/resources").await;
    let types: std::collections::BTreeSet<&str> = all
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains("node") && types.contains("storage") && types.contains("qemu"));
}

#[tokio::test]
async fn storage_download_upload_and_import() {
    const IMAGE: &[u8] = b"not really a talos image, but bytes all the same";
    let lab = lab().await;
    let api = Api::token(&lab);
    let base = file_server(IMAGE).await;
    let sum = hex::encode(sha2::Sha256::digest(IMAGE));
    let url = format!("{base}/talos-nocloud-amd64.raw");
    let r = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[
                ("url", &url),
                ("filename", "talos-nocloud-amd64.raw"),
                ("content", "import"),
                ("checksum", &sum),
                ("checksum-algorithm", "sha256"),
            ],
        )
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(
        upid.contains(":download:talos-nocloud-amd64.raw:"),
        "{upid}"
    );
    api.wait_ok(r).await;
    let content = api
        .get("/nodes/pve/storage/local/content?content=import")
        .await;
    let vol = &content.data()[0];
    assert_eq!(vol["volid"], "local:import/talos-nocloud-amd64.raw");
    assert_eq!(vol["size"], IMAGE.len());
    assert_eq!(vol["format"], "raw");

    // Checksum mismatch: the task fails.
    let r = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[
                ("url", &url),
                ("filename", "x.iso"),
                ("content", "iso"),
                ("checksum", "00"),
                ("checksum-algorithm", "md5"),
            ],
        )
        .await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert!(
        st["exitstatus"]
            .as_str()
            .unwrap()
            .starts_with("checksum mismatch"),
        "{st}"
    );
    // Extension and content rules.
    let r = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[("url", &url), ("filename", "x.raw"), ("content", "iso")],
        )
        .await;
    assert_eq!(r.error("filename"), "wrong file extension");
    let r = api
        .post(
            "/nodes/pve/storage/local-lvm/download-url",
            &[("url", &url), ("filename", "x.iso"), ("content", "iso")],
        )
        .await;
    assert_eq!(
        r.reason,
        "storage 'local-lvm' is not configured for content-type 'iso'"
    );
    let r = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[
                ("url", "ftp://x/y.iso"),
                ("filename", "y.iso"),
                ("content", "iso"),
            ],
        )
        .await;
    assert_eq!(r.error("url"), "value does not match the regex pattern");

    // Upload (multipart, fields before the file).
    let form = reqwest::multipart::Form::new()
        .text("content", "iso")
        .text("checksum-algorithm", "sha256")
        .text("checksum", sum.clone())
        .part(
            "filename",
            reqwest::multipart::Part::bytes(IMAGE).file_name("talos amd64.iso"),
        );
    let r = api
        .send(
            api.client
                .post(api.url("/nodes/pve/storage/local/upload"))
                .multipart(form),
        )
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(upid.contains(":imgcopy::"), "{upid}");
    api.wait_ok(r).await;
    let isos = api
        .get("/nodes/pve/storage/local/content?content=iso")
        .await;
    assert_eq!(isos.data()[0]["volid"], "local:iso/talos_amd64.iso");
    let form = reqwest::multipart::Form::new()
        .text("content", "snippets")
        .part(
            "filename",
            reqwest::multipart::Part::bytes(IMAGE).file_name("user.yaml"),
        );
    let r = api
        .send(
            api.client
                .post(api.url("/nodes/pve/storage/local/upload"))
                .multipart(form),
        )
        .await;
    assert_eq!(
        r.error("content"),
        "value 'snippets' does not have a value in the enumeration 'iso, vztmpl, import'"
    );

    // Import the downloaded image as a VM disk.
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "110"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/talos-nocloud-amd64.raw,discard=on",
                ),
            ],
        )
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    api.wait_ok(r).await;
    assert!(
        api.log(&upid)
            .await
            .iter()
            .any(|l| l == "importing disk 'local:import/talos-nocloud-amd64.raw' to VM 110 ...")
    );
    let c = api.get("/nodes/pve/qemu/110/config").await;
    assert_eq!(
        c.data()["scsi0"],
        format!("local-lvm:vm-110-disk-0,discard=on,size={}", IMAGE.len())
    );
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "111"),
                (
                    "scsi0",
                    "local-lvm:8,import-from=local:import/talos-nocloud-amd64.raw",
                ),
            ],
        )
        .await;
    assert_eq!(
        r.error("scsi0"),
        "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"
    );
    let status = api.get("/nodes/pve/storage/local-lvm/status").await;
    assert_eq!(status.data()["used"], IMAGE.len());
}

#[tokio::test]
async fn clone_template_and_resize() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.wait_ok(create_vm(&api, "120", &[]).await).await;
    api.wait_ok(api.post("/nodes/pve/qemu/120/template", &[]).await)
        .await;
    let tpl = api.get("/nodes/pve/qemu/120/config").await;
    assert_eq!(tpl.data()["template"], 1);
    assert!(
        tpl.data()["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:base-120-disk-0,")
    );
    let again = api.post("/nodes/pve/qemu/120/template", &[]).await;
    assert_eq!(again.reason, "you can't convert a template to a template");

    let r = api
        .post(
            "/nodes/pve/qemu/120/clone",
            &[("newid", "121"), ("name", "worker-1")],
        )
        .await;
    api.wait_ok(r).await;
    let c = api.get("/nodes/pve/qemu/121/config").await;
    assert_eq!(c.data()["name"], "worker-1");
    assert!(
        c.data()["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:vm-121-disk-0,")
    );
    assert_ne!(c.data()["net0"], tpl.data()["net0"]);
    assert!(
        c.data()["net0"]
            .as_str()
            .unwrap()
            .starts_with("virtio=BC:24:11:")
    );
    assert_ne!(c.data()["smbios1"], tpl.data()["smbios1"]);
    let dup = api
        .post("/nodes/pve/qemu/120/clone", &[("newid", "121")])
        .await;
    assert_eq!(
        dup.reason,
        "unable to create VM 121: config file already exists"
    );

    let r = api
        .put(
            "/nodes/pve/qemu/121/resize",
            &[("disk", "scsi0"), ("size", "+2G")],
        )
        .await;
    api.wait_ok(r).await;
    let scsi0 = api.get("/nodes/pve/qemu/121/config").await.data()["scsi0"].clone();
    assert!(scsi0.as_str().unwrap().contains(",size=10G,"), "{scsi0}");
    let r = api
        .put(
            "/nodes/pve/qemu/121/resize",
            &[("disk", "scsi0"), ("size", "1G")],
        )
        .await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "shrinking disks is not supported");
}

#[tokio::test]
async fn containers_share_the_vmlist() {
    const TEMPLATE: &[u8] = b"tarball";
    let lab = lab().await;
    let api = Api::token(&lab);
    let form = reqwest::multipart::Form::new()
        .text("content", "vztmpl")
        .part(
            "filename",
            reqwest::multipart::Part::bytes(TEMPLATE)
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
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("hostname", "dns"),
            ],
        )
        .await;
    api.wait_ok(r).await;
    let c = api.get("/nodes/pve/lxc/200/config").await;
    assert_eq!(c.data()["hostname"], "dns");
    assert_eq!(c.data()["ostype"], "debian");
    assert_eq!(c.data()["unprivileged"], 1);
    assert!(
        c.data()["net0"]
            .as_str()
            .unwrap()
            .contains("hwaddr=BC:24:11:")
    );
    let vm = create_vm(&api, "200", &[]).await;
    assert_eq!(
        vm.reason,
        "unable to create VM 200 - VM 200 already exists on node 'pve'"
    );
    let ct = api
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
            ],
        )
        .await;
    assert_eq!(ct.reason, "CT 200 already exists on node 'pve'");
    let qm = api.get("/nodes/pve/qemu/200/config").await;
    assert_eq!(
        qm.reason,
        "Configuration file 'nodes/pve/qemu-server/200.conf' does not exist"
    );
    api.wait_ok(api.post("/nodes/pve/lxc/200/status/start", &[]).await)
        .await;
    let ifs = api.get("/nodes/pve/lxc/200/interfaces").await;
    assert_eq!(ifs.data()[1]["name"], "eth0");
    let stop = api.post("/nodes/pve/lxc/200/status/stop", &[]).await;
    api.wait_ok(stop).await;
    let again = api.post("/nodes/pve/lxc/200/status/stop", &[]).await;
    assert_eq!(again.reason, "CT 200 not running");
    // The LXC template call answers null although a vztemplate task runs.
    let t = api.post("/nodes/pve/lxc/200/template", &[]).await;
    assert_eq!(t.data(), &Value::Null);
    // Finished tasks are what the default (archive) task list shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let task = loop {
        let tasks = api.get("/nodes/pve/tasks?typefilter=vztemplate").await;
        if let Some(t) = tasks.data().as_array().unwrap().first() {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "vztemplate task never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(task["status"], "OK");
    assert_eq!(
        api.get("/nodes/pve/lxc/200/config").await.data()["template"],
        1
    );
    let cfg = api.get("/nodes/pve/lxc/200/config").await;
    assert!(
        cfg.data()["rootfs"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:base-200-disk-0")
    );
}

#[tokio::test]
async fn restricted_token_permissions() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.post(
        "/access/users",
        &[("userid", "tofu@pve"), ("comment", "automation")],
    )
    .await
    .data();
    api.post(
        "/access/roles",
        &[
            ("roleid", "Provisioner"),
            ("privs", "VM.Audit,Datastore.Audit"),
        ],
    )
    .await
    .data();
    let tok = api
        .post("/access/users/tofu@pve/token/ci", &[("privsep", "1")])
        .await;
    let d = tok.data().clone();
    assert_eq!(d["full-tokenid"], "tofu@pve!ci");
    let secret = d["value"].as_str().unwrap();
    assert_eq!(secret.len(), 36);
    let again = api.post("/access/users/tofu@pve/token/ci", &[]).await;
    assert_eq!(again.reason, "Token already exists.");
    let bad_role = api
        .put(
            "/access/acl",
            &[("path", "/"), ("roles", "Nope"), ("users", "tofu@pve")],
        )
        .await;
    assert_eq!(bad_role.reason, "role 'Nope' does not exist");
    for (k, v) in [("users", "tofu@pve"), ("tokens", "tofu@pve!ci")] {
        api.put(
            "/access/acl",
            &[("path", "/"), ("roles", "Provisioner"), (k, v)],
        )
        .await
        .data();
    }
    let acl = api.get("/access/acl").await;
    assert_eq!(acl.data().as_array().unwrap().len(), 2);
    api.wait_ok(create_vm(&api, "130", &[]).await).await;

    let tofu = api.with_auth(&format!("PVEAPIToken=tofu@pve!ci={secret}"));
    let res = tofu.get("/cluster/resources?type=vm").await;
    assert_eq!(res.data()[0]["vmid"], 130);
    assert_eq!(tofu.get("/nodes/pve/qemu").await.data()[0]["vmid"], 130);
    let denied = create_vm(&tofu, "131", &[]).await;
    // qemu-server create_vm: neither /vms/131 nor a pool grants VM.Allocate, so
    // `raise_perm_exc()` without a reason.
    assert_eq!(
        (denied.status, denied.reason.as_str()),
        (403, "Permission check failed")
    );
    // privsep: the token's own ACL limits it even where the user has more.
    api.put(
        "/access/acl",
        &[
            ("path", "/vms"),
            ("roles", "PVEVMAdmin"),
            ("users", "tofu@pve"),
        ],
    )
    .await
    .data();
    let still = create_vm(&tofu, "131", &[]).await;
    assert_eq!(still.status, 403);
    api.put(
        "/access/acl",
        &[
            ("path", "/vms"),
            ("roles", "PVEVMAdmin"),
            ("tokens", "tofu@pve!ci"),
        ],
    )
    .await
    .data();
    api.put(
        "/access/acl",
        &[
            ("path", "/storage"),
            ("roles", "PVEDatastoreUser"),
            ("tokens", "tofu@pve!ci"),
            ("users", "tofu@pve"),
        ],
    )
    .await
    .data();
    // net0's bridge: SDN.Use on /sdn/zones/localnetwork/vmbr0 (check_vnet_access).
    api.put(
        "/access/acl",
        &[
            ("path", "/sdn/zones/localnetwork"),
            ("roles", "PVESDNUser"),
            ("tokens", "tofu@pve!ci"),
            ("users", "tofu@pve"),
        ],
    )
    .await
    .data();
    let ok = create_vm(&tofu, "131", &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    // Without VM.Audit the guest is not listed at all.
    api.put(
        "/access/acl",
        &[
            ("path", "/vms/130"),
            ("roles", "NoAccess"),
            ("tokens", "tofu@pve!ci"),
        ],
    )
    .await
    .data();
    let ids: Vec<u64> = tofu
        .get("/nodes/pve/qemu")
        .await
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["vmid"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![131]);
    api.delete("/access/users/tofu@pve/token/ci").await.data();
    assert_eq!(tofu.get("/version").await.status, 401);
}

#[tokio::test]
async fn pools_backup_jobs_and_sdn() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.post("/pools", &[("poolid", "k8s"), ("comment", "cluster")])
        .await
        .data();
    assert_eq!(
        api.post("/pools", &[("poolid", "k8s")]).await.reason,
        "pool 'k8s' already exists"
    );
    api.wait_ok(create_vm(&api, "140", &[("pool", "k8s")]).await)
        .await;
    let p = api.get("/pools?poolid=k8s").await;
    assert_eq!(p.data()[0]["members"][0]["id"], "qemu/140");
    // pve-manager PVE/API2/Pool.pm `delete_pool`: the refusal names what is left.
    assert_eq!(
        api.delete("/pools?poolid=k8s").await.reason,
        "pool 'k8s' is not empty (contains VM 140)"
    );
    assert_eq!(
        api.put("/pools", &[("poolid", "k8s"), ("vms", "140")])
            .await
            .reason,
        "VM 140 is already a pool member"
    );
    api.put(
        "/pools",
        &[("poolid", "k8s"), ("vms", "140"), ("delete", "1")],
    )
    .await
    .data();
    assert_eq!(
        api.put(
            "/pools",
            &[("poolid", "k8s"), ("vms", "140"), ("delete", "1")],
        )
        .await
        .reason,
        "VM 140 is not a pool member"
    );
    // Nested pools (`create_pool`): the parent must exist, levels start with a letter, and
    // a parent with a sub-pool is not empty.
    assert_eq!(
        api.post("/pools", &[("poolid", "nope/db")]).await.reason,
        "parent 'nope' of pool 'nope/db' does not exist"
    );
    assert_eq!(
        api.post("/pools", &[("poolid", "k8s/9db")]).await.reason,
        "pool name must start with a letter"
    );
    api.post("/pools", &[("poolid", "k8s/db"), ("comment", "")])
        .await
        .data();
    let list = api.get("/pools").await;
    let sub = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["poolid"] == "k8s/db")
        .cloned()
        .unwrap();
    assert!(
        sub.get("comment").is_none(),
        "an empty comment is not stored: {sub}"
    );
    assert_eq!(
        api.delete("/pools?poolid=k8s").await.reason,
        "pool 'k8s' is not empty (contains pool 'k8s/db')"
    );
    api.delete("/pools?poolid=k8s/db").await.data();
    api.delete("/pools?poolid=k8s").await.data();

    api.post(
        "/cluster/backup",
        &[
            ("id", "nightly"),
            ("schedule", "02:00"),
            ("storage", "local"),
            ("vmid", "140"),
            ("mode", "snapshot"),
        ],
    )
    .await
    .data();
    let jobs = api.get("/cluster/backup").await;
    assert_eq!(jobs.data()[0]["id"], "nightly");
    assert!(jobs.data()[0]["next-run"].as_u64().is_some());
    // Destroying with purge removes the guest from backup jobs.
    api.wait_ok(api.delete("/nodes/pve/qemu/140?purge=1").await)
        .await;
    assert_eq!(api.get("/cluster/backup/nightly").await.data()["vmid"], "");

    api.post("/cluster/sdn/zones", &[("zone", "lab"), ("type", "simple")])
        .await
        .data();
    let bad = api
        .post("/cluster/sdn/vnets", &[("vnet", "v1"), ("zone", "nozone")])
        .await;
    assert_eq!(
        bad.reason,
        "create sdn vnet object failed: unknown section type ''"
    );
    // A vnet in a simple zone takes no tag (pve-network `Zones/SimplePlugin.pm`).
    let bad = api
        .post(
            "/cluster/sdn/vnets",
            &[("vnet", "v1"), ("zone", "lab"), ("tag", "5")],
        )
        .await;
    assert_eq!(
        bad.reason,
        "create sdn vnet object failed: 400 Parameter verification failed."
    );
    api.post("/cluster/sdn/vnets", &[("vnet", "vnet1"), ("zone", "lab")])
        .await
        .data();
    api.post(
        "/cluster/sdn/vnets/vnet1/subnets",
        &[
            ("subnet", "10.0.0.0/24"),
            ("type", "subnet"),
            ("gateway", "10.0.0.1"),
        ],
    )
    .await
    .data();
    let z = api.get("/cluster/sdn/zones?pending=1").await;
    assert_eq!(z.data()[0]["state"], "new");
    assert!(
        api.get("/cluster/sdn/zones?running=1")
            .await
            .data()
            .as_array()
            .unwrap()
            .is_empty()
    );
    // VXLAN (pve-network `Zones/VxlanPlugin.pm`): peers or a fabric, a VNI per vnet,
    // unique across vxlan zones. The whole message carries the parameter errors.
    let bad = api
        .post("/cluster/sdn/zones", &[("zone", "ov"), ("type", "vxlan")])
        .await;
    assert_eq!(bad.status, 500);
    assert!(
        bad.raw
            .contains("peers: must have exactly one of peers / fabric defined"),
        "{}",
        bad.raw
    );
    api.post(
        "/cluster/sdn/zones",
        &[
            ("zone", "ov"),
            ("type", "vxlan"),
            ("peers", "10.0.0.1,10.0.0.2"),
        ],
    )
    .await
    .data();
    let bad = api
        .post("/cluster/sdn/vnets", &[("vnet", "v2"), ("zone", "ov")])
        .await;
    assert!(bad.raw.contains("tag: missing vxlan tag"), "{}", bad.raw);
    api.post(
        "/cluster/sdn/vnets",
        &[("vnet", "v2"), ("zone", "ov"), ("tag", "100")],
    )
    .await
    .data();
    let bad = api
        .post(
            "/cluster/sdn/vnets",
            &[("vnet", "v3"), ("zone", "ov"), ("tag", "100")],
        )
        .await;
    assert!(
        bad.raw
            .contains("tag: vxlan tag 100 already exist in vnet v2 in zone ov"),
        "{}",
        bad.raw
    );
    api.wait_ok(api.put("/cluster/sdn", &[]).await).await;
    let z = api.get("/cluster/sdn/zones?pending=1").await;
    assert!(z.data()[0].get("state").is_none());
    let s = api.get("/cluster/sdn/vnets/vnet1/subnets").await;
    assert_eq!(s.data()[0]["subnet"], "lab-10.0.0.0-24");
    // A gateway outside the subnet is refused; a change is pending until applied.
    let bad = api
        .put(
            "/cluster/sdn/vnets/vnet1/subnets/lab-10.0.0.0-24",
            &[("gateway", "10.9.0.1")],
        )
        .await;
    assert_eq!(
        bad.reason,
        "update sdn subnet object failed: 400 Parameter verification failed."
    );
    api.put(
        "/cluster/sdn/vnets/vnet1/subnets/lab-10.0.0.0-24",
        &[("gateway", "10.0.0.254")],
    )
    .await
    .data();
    let s = api.get("/cluster/sdn/vnets/vnet1/subnets?pending=1").await;
    assert_eq!(s.data()[0]["state"], "changed");
    assert_eq!(s.data()[0]["gateway"], "10.0.0.1");
    assert_eq!(s.data()[0]["pending"]["gateway"], "10.0.0.254");
    // A vnet with subnets cannot go (pve-network `VnetPlugin.pm` `on_delete_hook`).
    let bad = api.delete("/cluster/sdn/vnets/vnet1").await;
    assert_eq!(
        bad.reason,
        "delete sdn vnet object failed: 400 Parameter verification failed."
    );
    // A guest on the applied vnet starts; one on an unknown bridge does not.
    let on = |vmid: &'static str, bridge: &'static str| {
        vec![
            ("vmid", vmid),
            ("name", "on-vnet"),
            ("memory", "512"),
            ("net0", bridge),
            ("scsi0", "local-lvm:1"),
        ]
    };
    api.wait_ok(
        api.post("/nodes/pve/qemu", &on("141", "virtio,bridge=vnet1"))
            .await,
    )
    .await;
    api.wait_ok(api.post("/nodes/pve/qemu/141/status/start", &[]).await)
        .await;
    api.wait_ok(
        api.post("/nodes/pve/qemu", &on("142", "virtio,bridge=vnet9"))
            .await,
    )
    .await;
    let t = api.post("/nodes/pve/qemu/142/status/start", &[]).await;
    let st = api.wait(t.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "bridge 'vnet9' does not exist", "{st}");
}

#[tokio::test]
async fn state_persists_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (fp, old_auth) = {
        let lab = Lab::builder()
            .state_dir(dir.path())
            .task_duration(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let api = Api::token(&lab);
        api.wait_ok(create_vm(&api, "150", &[("cipassword", "s3cr3t-pw")]).await)
            .await;
        api.wait_ok(api.post("/nodes/pve/qemu/150/status/start", &[]).await)
            .await;
        api.post("/pools", &[("poolid", "kept")]).await.data();
        let fp = lab.fingerprint();
        let auth = lab.authorization();
        lab.shutdown().await;
        (fp, auth)
    };
    let raw = std::fs::read_to_string(dir.path().join("pve-state.json")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pve-ssl.key.der"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "TLS key readable by others: {mode:o}");
    }
    assert!(
        !raw.contains(old_auth.rsplit('=').next().unwrap()),
        "token secret on disk"
    );
    assert!(!raw.contains("s3cr3t-pw"), "cloud-init password on disk");
    let runtime = Arc::new(TestRuntime::default());
    let lab = Lab::builder()
        .state_dir(dir.path())
        .runtime(runtime.clone())
        .start()
        .await
        .unwrap();
    assert_eq!(lab.fingerprint(), fp);
    let api = Api::token(&lab);
    let c = api.get("/nodes/pve/qemu/150/config").await;
    assert_eq!(c.data()["name"], "talos-cp-1");
    assert_eq!(
        api.get("/nodes/pve/qemu/150/status/current").await.data()["status"],
        "running"
    );
    assert_eq!(api.get("/pools").await.data()[0]["poolid"], "kept");
    assert_eq!(
        runtime.events.lock().unwrap().as_slice(),
        ["started 150 talos-cp-1"]
    );
    // The bootstrap token's secret rotates with each process.
    assert_eq!(api.with_auth(&old_auth).get("/version").await.status, 401);
    let tasks = api.get("/nodes/pve/tasks").await;
    assert!(tasks.data().as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn faults_offline_node_failures_and_counters() {
    let lab = Lab::builder()
        .nodes(["pve1", "pve2"])
        .task_duration(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);
    let before = lab.requests();
    api.get("/version").await;
    let after = lab.requests();
    assert_eq!(after.total, before.total + 1);
    assert_eq!(after.mutating, before.mutating);
    api.post("/pools", &[("poolid", "p")]).await.data();
    assert_eq!(lab.requests().mutating, after.mutating + 1);

    lab.faults().set_node_offline("pve2", true);
    let r = api.get("/nodes/pve2/qemu").await;
    assert_eq!((r.status, r.reason.as_str()), (595, "No route to host"));
    assert!(r.raw.is_empty());
    assert_eq!(api.get("/nodes/pve1/qemu").await.status, 200);
    let nodes = api.get("/nodes").await;
    let pve2 = nodes
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "pve2")
        .unwrap()
        .clone();
    assert_eq!(pve2["status"], "offline");
    lab.faults().set_node_offline("pve2", false);
    assert_eq!(api.get("/nodes/pve2/qemu").await.status, 200);
    let unknown = api.get("/nodes/pve9/qemu").await;
    assert_eq!(unknown.reason, "no such cluster node 'pve9'");

    lab.faults().fail_paths(
        "/nextid",
        1.0,
        500,
        "got no worker upid - start worker failed",
    );
    let r = api.get("/cluster/nextid").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "got no worker upid - start worker failed")
    );
    lab.faults().clear();
    assert_eq!(api.get("/cluster/nextid").await.status, 200);

    lab.faults().storage_lock_timeouts(1);
    let r = api
        .post(
            "/nodes/pve1/qemu",
            &[("vmid", "160"), ("scsi0", "local-lvm:4")],
        )
        .await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(
        st["exitstatus"],
        "unable to create VM 160 - cfs-lock 'storage-local-lvm' error: got lock request timeout"
    );
    // A failed create leaves nothing behind.
    assert_eq!(
        api.get("/nodes/pve1/qemu")
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    lab.faults().set_latency(Duration::from_millis(5));
    assert_eq!(api.get("/version").await.status, 200);
}

#[tokio::test]
async fn sshkeys_must_arrive_url_encoded() {
    let lab = lab().await;
    let api = Api::token(&lab);
    // Sent raw (the form layer encodes it once): the server sees spaces and refuses it.
    let raw = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "170"), ("sshkeys", "ssh-ed25519 AAAAC3Nz me@host")],
        )
        .await;
    assert_eq!(
        raw.error("sshkeys"),
        "invalid format - invalid urlencoded string: ssh-ed25519 AAAAC3Nz me@host\n"
    );
    // Percent-encoded but not a key ssh-keygen reads: refused after decoding.
    let junk = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "170"),
                ("sshkeys", "ssh-ed25519%20AAAAC3Nz%20me%40host"),
            ],
        )
        .await;
    assert_eq!(
        (junk.status, junk.reason.as_str()),
        (500, "SSH public key validation error")
    );
    // Percent-encoded first (as bpg and our client do): accepted and stored once-encoded.
    let once = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s%2B0Ehn3TIoNVFHW9S5ZlHT%2BkSpf93%20me%40host";
    api.wait_ok(
        api.post("/nodes/pve/qemu", &[("vmid", "170"), ("sshkeys", once)])
            .await,
    )
    .await;
    let c = api.get("/nodes/pve/qemu/170/config").await;
    assert_eq!(c.data()["sshkeys"], once);
}

/// A sibling service started with the lab (how the Image Factory simulator plugs in).
#[derive(Debug)]
struct EchoService;

impl homelab_sim::lab::LabService for EchoService {
    fn name(&self) -> &str {
        "echo"
    }
    fn start(
        self: Box<Self>,
        mut ctx: homelab_sim::lab::ServiceContext,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, homelab_sim::Error>> + Send>,
    > {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("tcp://{}", listener.local_addr().unwrap());
            assert!(!ctx.tls.fingerprint().is_empty());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        c = listener.accept() => {
                            let (mut tcp, _) = c.unwrap();
                            use tokio::io::AsyncWriteExt;
                            tcp.write_all(b"hello\n").await.unwrap();
                        }
                        _ = ctx.shutdown.changed() => break,
                    }
                }
            });
            Ok(url)
        })
    }
}

#[tokio::test]
async fn sibling_services_start_with_the_lab() {
    let lab = Lab::builder()
        .service(Box::new(EchoService))
        .start()
        .await
        .unwrap();
    let url = lab.service_url("echo").unwrap().to_string();
    let mut tcp = tokio::net::TcpStream::connect(url.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let mut buf = String::new();
    use tokio::io::AsyncReadExt;
    tcp.read_to_string(&mut buf).await.unwrap();
    assert_eq!(buf, "hello\n");
    assert!(lab.service_url("nope").is_none());
    lab.shutdown().await;
}
