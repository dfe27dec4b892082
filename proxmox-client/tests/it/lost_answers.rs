//! Writes whose answer is lost (issue 18), against the simulated Proxmox VE with injected
//! connection faults, and an endpoint that never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use homelab_sim::lab::{Lab, LabHandle};
use proxmox_client::{Client, Error, RetryPolicy, Upid, WaitOptions};

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

fn client(lab: &LabHandle) -> Client {
    Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .retry_policy(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .build()
        .unwrap()
}

fn wait() -> WaitOptions {
    WaitOptions {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
    }
}

async fn create(c: &Client, vmid: i64) -> Result<Upid, Error> {
    c.post(
        "/nodes/pve/qemu",
        &[
            ("vmid", proxmox_client::ParamValue::Int(vmid)),
            ("name", proxmox_client::ParamValue::Str("lost".into())),
            ("memory", proxmox_client::ParamValue::Int(512)),
        ],
    )
    .await
}

#[tokio::test]
async fn a_create_whose_answer_was_dropped_returns_the_task_it_started() {
    let lab = lab().await;
    let c = client(&lab);
    lab.faults().drop_next("/nodes/pve/qemu", 1);
    let upid = create(&c, 301).await.unwrap();
    assert_eq!(upid.task_type, "qmcreate");
    c.wait_task(&upid, &wait()).await.unwrap();
    // Created once: no "already exists" from a second POST.
    let vms = c.node("pve").qemu_list().await.unwrap();
    assert_eq!(vms.iter().filter(|v| v.vmid == 301).count(), 1);
}

#[tokio::test]
async fn a_create_reset_before_it_ran_is_sent_again() {
    let lab = lab().await;
    let c = client(&lab);
    lab.faults().reset_next("/nodes/pve/qemu", 1);
    let upid = create(&c, 302).await.unwrap();
    c.wait_task(&upid, &wait()).await.unwrap();
    let cfg = c.node("pve").qemu(302).config().await.unwrap();
    assert_eq!(cfg.get_str("name").as_deref(), Some("lost"));
}

#[tokio::test]
async fn a_start_whose_answer_was_dropped_is_not_started_twice() {
    let lab = lab().await;
    let c = client(&lab);
    let upid = create(&c, 303).await.unwrap();
    c.wait_task(&upid, &wait()).await.unwrap();
    lab.faults().drop_next("/status/start", 1);
    let upid = c.node("pve").qemu(303).start().await.unwrap();
    assert_eq!(upid.task_type, "qmstart");
    c.wait_task(&upid, &wait()).await.unwrap();
    assert_eq!(
        c.node("pve").qemu(303).status().await.unwrap().status,
        "running"
    );
}

/// A TCP endpoint that accepts connections and never says a word (a blackholed HTTPS
/// endpoint, as far as the TLS connector can tell). Counts the connections.
async fn silent_endpoint() -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    (format!("https://{addr}"), count)
}

#[tokio::test]
async fn a_silent_endpoint_fails_on_the_first_connect_timeout_with_a_clear_message() {
    let (url, connections) = silent_endpoint().await;
    let c = Client::builder()
        .base_url(url)
        .api_token_string("root@pam!homelab=00000000-1111-2222-3333-444444444444")
        .pin_fingerprint(
            "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
        )
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = c.nodes().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("connect timeout"), "{text}");
    assert!(text.contains("firewall"), "{text}");
    // Not retried: one connection, not one per attempt.
    assert_eq!(connections.load(Ordering::SeqCst), 1, "{text}");
}

/// Task-status polls lost beyond the request's own retries (here: no retries at all) do not
/// fail the wait: a poll is a read, polled again within the deadline.
#[tokio::test]
async fn lost_task_status_polls_are_polled_again() {
    let lab = lab().await;
    let c = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let upid = create(&c, 305).await.unwrap();
    lab.faults().reset_next("/status", 2);
    lab.faults().drop_next("/status", 2);
    c.wait_task(&upid, &wait()).await.unwrap();

    // More losses in a row than the bound: the wait reports the transport error.
    let upid = create(&c, 306).await.unwrap();
    lab.faults().reset_next("/status", 50);
    let err = c.wait_task(&upid, &wait()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
}

/// The same through a `Task` handle (what a create or start returns).
#[tokio::test]
async fn a_task_handle_polls_a_lost_status_again() {
    let lab = lab().await;
    let c = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let upid = create(&c, 307).await.unwrap();
    c.wait_task(&upid, &wait()).await.unwrap();
    let task = c
        .node("pve")
        .guest(proxmox_client::GuestKind::Qemu, 307)
        .start(&Default::default())
        .await
        .unwrap();
    lab.faults().drop_next("/tasks/UPID", 3);
    task.wait(&wait()).await.unwrap();
}
