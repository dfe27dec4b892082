//! Error classification and retries against wiremock, and the reason-phrase path against a
//! raw HTTP/1.1 server (wiremock cannot set a custom reason phrase).

use proxmox_client::{Client, Error, RetryPolicy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

fn pve_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"data": null, "message": format!("{message}\n")}))
}

#[tokio::test]
async fn classified_errors_keep_status_and_message() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/start")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "data": null,
            "message": "Parameter verification failed.\n",
            "errors": {"timeout": "type check ('integer') failed - got 'x'\n"}
        })))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve/qemu/100/config")))
        .respond_with(pve_error(
            500,
            "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist",
        ))
        .expect(1) // not found is not retried even on GET
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu")))
        .respond_with(pve_error(
            500,
            "unable to create VM 100 - VM 100 already exists on node 'pve'",
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes/pve2/qemu")))
        .respond_with(ResponseTemplate::new(595))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/access/acl")))
        .respond_with(pve_error(
            403,
            "Permission check failed (/access, Sys.Audit)",
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/version")))
        .respond_with(pve_error(401, "invalid token value!"))
        .expect(1)
        .mount(&s)
        .await;
    let c = client(&s);
    let raw_start: Result<serde_json::Value, _> = c
        .post(
            "/nodes/pve/qemu/100/status/start",
            &[("timeout", "x".into())],
        )
        .await;
    match raw_start.unwrap_err() {
        Error::Validation {
            status,
            message,
            errors,
        } => {
            assert_eq!(status, 400);
            assert_eq!(message, "Parameter verification failed.");
            assert_eq!(errors["timeout"], "type check ('integer') failed - got 'x'");
        }
        other => panic!("{other:?}"),
    }
    let e = c.node("pve").qemu(100).config().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { status: 500, .. }), "{e:?}");
    let e = c
        .node("pve")
        .qemu_create(&proxmox_client::requests::QemuCreate {
            vmid: 100,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert!(e.to_string().contains("already exists on node 'pve'"));
    let e = c.node("pve2").qemu_list().await.unwrap_err();
    assert!(
        matches!(e, Error::NodeUnreachable { status: 595, .. }),
        "{e:?}"
    );
    let e = c.access().acl().await.unwrap_err();
    assert!(matches!(e, Error::Permission { status: 403, .. }), "{e:?}");
    let e = c.version().await.unwrap_err();
    assert!(matches!(e, Error::Auth { status: 401, .. }), "{e:?}");
}

#[tokio::test]
async fn lock_timeouts_and_worker_start_failures_are_retried() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/clone")))
        .respond_with(pve_error(
            500,
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
        ))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/clone")))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .with_priority(2)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/start")))
        .respond_with(pve_error(500, "got no worker upid - start worker failed"))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/start")))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .with_priority(2)
        .mount(&s)
        .await;
    let c = client(&s);
    let vm = c.node("pve").qemu(100);
    vm.clone_to(&proxmox_client::requests::QemuClone {
        newid: 101,
        ..Default::default()
    })
    .await
    .unwrap();
    vm.start().await.unwrap();
    assert_eq!(c.request_count(), 5);
}

#[tokio::test]
async fn unsafe_writes_are_not_retried_and_retries_are_bounded() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/stop")))
        .respond_with(pve_error(500, "VM 100 not running"))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/reboot")))
        .respond_with(pve_error(500, "VM is locked (backup)"))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes")))
        .respond_with(pve_error(500, "cluster not ready - no quorum?"))
        .expect(3) // max_attempts = 3
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/template")))
        .respond_with(pve_error(
            500,
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
        ))
        .expect(3)
        .mount(&s)
        .await;
    let c = client(&s);
    let vm = c.node("pve").qemu(100);
    let e = vm.stop().await.unwrap_err();
    assert_eq!(e.server_message(), Some("VM 100 not running"));
    let e = vm.reboot().await.unwrap_err();
    assert!(matches!(e, Error::Locked { .. }) && !e.is_retryable());
    let e = c.nodes().await.unwrap_err();
    assert!(matches!(e, Error::Api { status: 500, .. }));
    let e = vm.template().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

/// Serves one canned HTTP/1.1 response per connection.
async fn raw_server(status_line: &'static str, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status_line}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn message_comes_from_the_reason_phrase_on_older_pve() {
    // PVE before libpve-http-server-perl 5.2 sends only {"data":null}; the text is in the
    // status line.
    let url = raw_server(
        "500 can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout",
        r#"{"data":null}"#,
    )
    .await;
    let c = Client::builder()
        .base_url(url)
        .api_token("root@pam!t", "x")
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let e = c.node("pve").qemu(101).start().await.unwrap_err();
    match &e {
        Error::Locked { status, message } => {
            assert_eq!(*status, 500);
            assert_eq!(
                message,
                "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"
            );
        }
        other => panic!("{other:?}"),
    }
    let url = raw_server("595 No route to host", "").await;
    let c = Client::builder()
        .base_url(url)
        .api_token("root@pam!t", "x")
        .build()
        .unwrap();
    let e = c.node("pve2").qemu(101).status().await.unwrap_err();
    assert!(
        matches!(&e, Error::NodeUnreachable { status: 595, message } if message == "No route to host"),
        "{e:?}"
    );
}

#[tokio::test]
async fn undecodable_success_is_a_decode_error() {
    let s = server().await;
    Mock::given(method("GET"))
        .and(path(api("/version")))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .expect(1)
        .mount(&s)
        .await;
    let e = client(&s).version().await.unwrap_err();
    assert!(matches!(e, Error::Decode { status: 200, .. }), "{e:?}");
}
