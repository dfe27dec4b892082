//! QEMU and LXC guests: create, config (pending, digest, lock), power, clone, template,
//! resize, destroy, guest agent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::api::{Reply, check_node, config_json, flag, normalize_tags, req, vmid_of};
use super::auth::{Caller, uuid};
use super::error::{ApiError, ApiResult};
use super::hardware;
use super::schema::{Match, Params, lookup};
use super::sim::{Sim, TaskCtx, now};
use super::state::{Guest, Kind, State, Volume};

mod agent;
mod clone;
mod create;
mod destroy;
mod helpers;
mod power;
mod read;
mod resize;
mod update;

use self::agent::*;
use self::clone::*;
use self::create::*;
use self::destroy::*;
use self::helpers::*;
use self::power::*;
use self::read::*;
use self::resize::*;
use self::update::*;

pub use self::helpers::{fmt_size, gen_mac, is_disk_key, parse_size};

/// Route `/nodes/{node}/qemu...` and `/nodes/{node}/lxc...`.
pub async fn dispatch(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    m: &str,
    rest: &str,
    p: Params,
) -> ApiResult<Reply> {
    match (m, rest) {
        ("GET", "") => list(sim, caller, kind, &p),
        ("POST", "") => create(sim, caller, kind, p).await,
        ("GET", "/{vmid}") => Ok(json!([
            {"subdir": "config"}, {"subdir": "pending"}, {"subdir": "status"},
            {"subdir": "agent"}, {"subdir": "clone"}, {"subdir": "resize"},
        ])
        .into()),
        ("DELETE", "/{vmid}") => destroy(sim, caller, kind, &p).await,
        ("GET", "/{vmid}/config") => get_config(sim, kind, &p),
        ("POST", "/{vmid}/config") => update(sim, caller, kind, p, true).await,
        ("PUT", "/{vmid}/config") => update(sim, caller, kind, p, false).await,
        ("GET", "/{vmid}/pending") => pending(sim, kind, &p),
        ("GET", "/{vmid}/status/current") => status(sim, kind, &p),
        ("POST", "/{vmid}/status/start") => start(sim, caller, kind, &p).await,
        ("POST", "/{vmid}/status/stop") => stop(sim, caller, kind, &p, "stop").await,
        ("POST", "/{vmid}/status/shutdown") => stop(sim, caller, kind, &p, "shutdown").await,
        ("POST", "/{vmid}/status/reboot") => reboot(sim, caller, kind, &p).await,
        ("POST", "/{vmid}/clone") => clone(sim, caller, &p).await,
        ("POST", "/{vmid}/template") if kind == Kind::Lxc => lxc_template(sim, caller, &p).await,
        ("POST", "/{vmid}/template") => template(sim, caller, &p).await,
        ("PUT", "/{vmid}/resize") if kind == Kind::Lxc => lxc_resize(sim, caller, &p).await,
        ("PUT", "/{vmid}/resize") => resize(sim, caller, &p).await,
        ("GET", "/{vmid}/agent/network-get-interfaces") => agent(sim, &p, "network-get-interfaces"),
        ("POST", "/{vmid}/agent/ping") => agent(sim, &p, "ping"),
        ("POST", "/{vmid}/agent") => agent(sim, &p, req(&p, "command")?),
        ("GET", "/{vmid}/interfaces") => lxc_interfaces(sim, &p),
        _ => Err(ApiError::not_implemented(m, rest)),
    }
}
