//! Ticket login: the cookie on every request, the CSRF token on writes only, re-login when
//! the server stops accepting the ticket, and clear errors for bad credentials.

use proxmox_client::{Client, Error, RetryPolicy};
use serde_json::json;
use wiremock::matchers::{body_string, header, header_exists, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const TICKET: &str = "PVE:root@pam:6738AA7F::c2lnbmF0dXJl+/=";
const TICKET_COOKIE: &str = "PVEAuthCookie=PVE%3Aroot%40pam%3A6738AA7F%3A%3Ac2lnbmF0dXJl%2B%2F%3D";
const CSRF: &str = "6738AA7F:Y3NyZnRva2Vu";

fn password_client(uri: String) -> Client {
    Client::builder()
        .base_url(uri)
        .password("root@pam", "s3cret pass")
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn ticket_cookie_and_csrf_on_writes() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/access/ticket")))
        .and(body_string("username=root%40pam&password=s3cret%20pass"))
        .respond_with(data(
            json!({"username":"root@pam","ticket":TICKET,"CSRFPreventionToken":CSRF,"cap":{}}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/version")))
        .and(header("cookie", TICKET_COOKIE))
        .and(move |r: &wiremock::Request| !r.headers.contains_key("csrfpreventiontoken"))
        .respond_with(data(
            json!({"version":"9.1.1","release":"9.1","repoid":"x"}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/nodes/pve/qemu/100/status/start")))
        .and(header("cookie", TICKET_COOKIE))
        .and(header("csrfpreventiontoken", CSRF))
        .respond_with(data(json!(UPID)))
        .expect(1)
        .mount(&s)
        .await;
    let c = password_client(s.uri());
    c.version().await.unwrap();
    // A clone shares the ticket: no second login.
    c.clone().node("pve").qemu(100).start().await.unwrap();
}

#[tokio::test]
async fn relogin_when_the_ticket_is_rejected() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/access/ticket")))
        .respond_with(data(
            json!({"username":"root@pam","ticket":TICKET,"CSRFPreventionToken":CSRF}),
        ))
        .expect(2)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes")))
        .and(header_exists("cookie"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"data":null,"message":"invalid ticket\n"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes")))
        .respond_with(data(json!([])))
        .expect(1)
        .with_priority(2)
        .mount(&s)
        .await;
    let c = password_client(s.uri());
    assert!(c.nodes().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/access/ticket")))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"data":null,"message":"authentication failure\n"})),
        )
        .expect(1)
        .mount(&s)
        .await;
    let c = password_client(s.uri());
    let e = c.login_now().await.unwrap_err();
    assert!(
        matches!(&e, Error::Auth { message, .. } if message == "authentication failure"),
        "{e:?}"
    );
}

#[tokio::test]
async fn ticket_is_renewed_with_the_current_ticket_as_password() {
    let s = server().await;
    Mock::given(method("POST"))
        .and(path(api("/access/ticket")))
        .and(body_string("username=root%40pam&password=s3cret%20pass"))
        .respond_with(data(
            json!({"username":"root@pam","ticket":TICKET,"CSRFPreventionToken":CSRF}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/access/ticket")))
        .and(body_string(
            "username=root%40pam&password=PVE%3Aroot%40pam%3A6738AA7F%3A%3Ac2lnbmF0dXJl%2B%2F%3D",
        ))
        .respond_with(data(json!({"username":"root@pam","ticket":"PVE:root@pam:6738AA80::bmV3","CSRFPreventionToken":CSRF})))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/version")))
        .and(header("cookie", TICKET_COOKIE))
        .respond_with(data(
            json!({"version":"9.1.1","release":"9.1","repoid":"x"}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/nodes")))
        .and(header(
            "cookie",
            "PVEAuthCookie=PVE%3Aroot%40pam%3A6738AA80%3A%3AbmV3",
        ))
        .respond_with(data(json!([])))
        .expect(1)
        .mount(&s)
        .await;
    let c = Client::builder()
        .base_url(s.uri())
        .password("root@pam", "s3cret pass")
        .ticket_renewal(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    c.version().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    c.nodes().await.unwrap();
}
