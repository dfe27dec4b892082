//! Typed async client for the Proxmox VE REST API.
//!
//! - [`Client`] (built with [`ClientBuilder`] or [`Client::from_env`]) speaks
//!   `https://HOST:8006/api2/json` with an API token or a ticket login (renewed, with the
//!   CSRF token on writes), over rustls (ring) with system roots, a custom CA, or SHA-256
//!   fingerprint pinning of a self-signed node certificate.
//! - Typed handles: [`Client::node`] → [`api::Node`] → [`Guest`] (either kind:
//!   `node.guest(GuestKind::Qemu, 100)`, every change a [`Task`] to `.wait()`),
//!   [`api::Vm`], [`api::Container`], [`api::Storage`]; [`Client::pools`], [`Client::access`], [`Client::backup_jobs`],
//!   [`Client::sdn`]; tasks with [`Client::wait_task`].
//! - Every call is a pure [`ApiRequest`] built in [`requests`]; the raw escape hatch is
//!   [`Client::get`]/[`Client::post`]/[`Client::put`]/[`Client::delete`] and
//!   [`Client::execute`].
//! - Property strings ([`property`]) as types in both directions, UPIDs ([`Upid`]), and one
//!   error enum ([`Error`]) keeping HTTP status and server message, with predicates
//!   ([`Error::is_not_found`], [`Error::is_locked`], [`Error::is_digest_mismatch`],
//!   [`Error::is_not_running`], ...) so callers never match message text; volume IDs
//!   ([`VolumeId`]).
//!
//! ```no_run
//! use proxmox_client::{Client, WaitOptions};
//! use proxmox_client::property::{QemuDisk, QemuNet};
//! use proxmox_client::requests::{QemuCreate, QemuOptions};
//!
//! # async fn demo() -> proxmox_client::Result<()> {
//! let client = Client::from_env()?; // PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_VE_FINGERPRINT
//! let vmid = client.next_id(None).await?;
//! let mut options = QemuOptions { name: Some("demo".into()), memory: Some(2048), ..Default::default() };
//! options.disks.insert("scsi0".into(), QemuDisk::new_volume("local-lvm", 8));
//! options.net.insert(0, QemuNet::virtio("vmbr0"));
//! let upid = client.node("pve").qemu_create(&QemuCreate { vmid, options, ..Default::default() }).await?;
//! let outcome = client.wait_task(&upid, &WaitOptions::default()).await?;
//! println!("created {vmid}: {outcome:?}");
//! # Ok(()) }
//! ```

pub mod api;
mod client;
mod error;
pub mod guest;
pub mod models;
pub mod plugins;
mod predicates;
pub mod property;
mod recovery;
mod request;
pub mod requests;
pub mod sdn;
#[cfg(feature = "snippets")]
pub mod snippets;
mod task;
pub mod tls;
mod upid;
mod volume;
pub mod vzdump;

pub use api::{Progress, WaitOptions};
pub use client::{
    Client, ClientBuilder, Credentials, DEFAULT_TICKET_RENEWAL, ENV_API_TOKEN, ENV_CA_FILE,
    ENV_ENDPOINT, ENV_FINGERPRINT, ENV_INSECURE, ENV_PASSWORD, ENV_USERNAME, RetryPolicy,
    decode_envelope, normalize_base_url,
};
pub use error::{Error, Result};
pub use guest::{Guest, GuestKind};
pub use models::{ResourceFilter, TaskOutcome};
pub use request::{
    ApiRequest, Method, ParamValue, encode_form, path_of, percent_decode, percent_encode,
};
pub use task::{Task, TaskProgress};
pub use tls::{Fingerprint, TlsVerification};
pub use upid::Upid;
pub use volume::{ContentKind, VolumeId};
