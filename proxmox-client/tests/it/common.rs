//! Shared wiremock setup: a server with a catch-all that fails the test loudly.

use proxmox_client::{Client, RetryPolicy};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN_HEADER: &str = "PVEAPIToken=root@pam!homelab=00000000-1111-2222-3333-444444444444";
pub const UPID: &str = "UPID:pve:0003C2FF:00829204:6738AA7F:qmcreate:100:root@pam!homelab:";
pub const UPID_ENC: &str =
    "UPID%3Apve%3A0003C2FF%3A00829204%3A6738AA7F%3Aqmcreate%3A100%3Aroot%40pam%21homelab%3A";

/// A mock server whose unmatched requests answer 599 and fail verification on drop.
pub async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599).set_body_string("UNMATCHED REQUEST"))
        .with_priority(u8::MAX)
        .expect(0)
        .named("catch-all: a request no mock expected")
        .mount(&server)
        .await;
    server
}

/// A token-auth client for the mock server, with fast retries.
pub fn client(server: &MockServer) -> Client {
    Client::builder()
        .base_url(server.uri())
        .api_token_string("root@pam!homelab=00000000-1111-2222-3333-444444444444")
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::from_millis(5),
            max_delay: std::time::Duration::from_millis(20),
        })
        .build()
        .unwrap()
}

pub fn data(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "data": v }))
}

pub fn api(p: &str) -> String {
    format!("/api2/json{p}")
}

/// A check that cannot run here (a tool or reference file is missing): a loud `SKIPPED`
/// line on a developer's machine, a failure in CI (`CI` set), so CI never passes by skipping.
pub fn skip_or_fail(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        panic!(
            "{reason} (CI is set: a check that cannot run is a failure; .ci/run installs what tests need)"
        );
    }
    eprintln!("SKIPPED: {reason}");
}
