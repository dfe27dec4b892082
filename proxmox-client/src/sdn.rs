//! SDN configuration with its staged ("pending") and applied ("running") state.
//!
//! Proxmox VE stages every change to `/cluster/sdn/zones`, `/vnets` and `/subnets` until
//! `PUT /cluster/sdn` applies them cluster-wide. A listing with `pending=1` shows the
//! applied values at the top level, a `state` (`new`, `changed`, `deleted`) and a
//! `pending` object with what changes (a removed key reads `"deleted"`); [`SdnEntry`]
//! turns that into the two configurations. Requests are pure functions ([`zones_list`],
//! [`vnet_create`], ...); [`SdnConfig`] (from [`Client::sdn_config`]) sends them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::request::{ApiRequest, Method, ParamValue};
use crate::requests::ExtraParams;
use crate::{Client, Result, Upid};

/// Which configuration a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SdnView {
    /// The staged configuration (what the next apply makes current).
    #[default]
    Staged,
    /// Applied values with `state` and `pending` (`pending=1`).
    Pending,
    /// The applied configuration only (`running=1`).
    Running,
}

fn view(r: ApiRequest, v: SdnView) -> ApiRequest {
    match v {
        SdnView::Staged => r,
        SdnView::Pending => r.param("pending", true),
        SdnView::Running => r.param("running", true),
    }
}

/// `GET /cluster/sdn/zones`.
pub fn zones_list(v: SdnView) -> ApiRequest {
    view(
        ApiRequest::new(Method::Get, &["cluster", "sdn", "zones"]),
        v,
    )
}

/// `GET /cluster/sdn/vnets`.
pub fn vnets_list(v: SdnView) -> ApiRequest {
    view(
        ApiRequest::new(Method::Get, &["cluster", "sdn", "vnets"]),
        v,
    )
}

/// `GET /cluster/sdn/vnets/{vnet}/subnets`.
pub fn subnets_list(vnet: &str, v: SdnView) -> ApiRequest {
    view(
        ApiRequest::new(Method::Get, &["cluster", "sdn", "vnets", vnet, "subnets"]),
        v,
    )
}

/// Options of a zone, vnet or subnet as `(name, value)` pairs; list-valued options
/// (`dhcp-range`) repeat their name, one pair per element.
pub type SdnParams = ExtraParams;

fn with_delete(r: ApiRequest, delete: &[&str]) -> ApiRequest {
    if delete.is_empty() {
        r
    } else {
        r.param("delete", delete.join(","))
    }
}

/// `POST /cluster/sdn/zones` with `type` and options.
pub fn zone_create(zone: &str, zone_type: &str, p: &SdnParams) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "zones"])
        .param("zone", zone)
        .param("type", zone_type)
        .params(p.iter().cloned())
}

/// `PUT /cluster/sdn/zones/{zone}`, removing the options in `delete`.
pub fn zone_update(zone: &str, p: &SdnParams, delete: &[&str]) -> ApiRequest {
    with_delete(
        ApiRequest::new(Method::Put, &["cluster", "sdn", "zones", zone]).params(p.iter().cloned()),
        delete,
    )
}

/// `DELETE /cluster/sdn/zones/{zone}`.
pub fn zone_delete(zone: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "sdn", "zones", zone])
}

/// `POST /cluster/sdn/vnets` in `zone` with options (`tag`, `alias`, `vlanaware`).
pub fn vnet_create(vnet: &str, zone: &str, p: &SdnParams) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "vnets"])
        .param("vnet", vnet)
        .param("zone", zone)
        .params(p.iter().cloned())
}

/// `PUT /cluster/sdn/vnets/{vnet}` (`zone` may be among the options).
pub fn vnet_update(vnet: &str, p: &SdnParams, delete: &[&str]) -> ApiRequest {
    with_delete(
        ApiRequest::new(Method::Put, &["cluster", "sdn", "vnets", vnet]).params(p.iter().cloned()),
        delete,
    )
}

/// `DELETE /cluster/sdn/vnets/{vnet}` (Proxmox refuses while subnets exist).
pub fn vnet_delete(vnet: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "sdn", "vnets", vnet])
}

/// `POST /cluster/sdn/vnets/{vnet}/subnets` for `cidr` (`10.0.0.0/24`).
pub fn subnet_create(vnet: &str, cidr: &str, p: &SdnParams) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "vnets", vnet, "subnets"])
        .param("subnet", cidr)
        .param("type", "subnet")
        .params(p.iter().cloned())
}

/// `PUT /cluster/sdn/vnets/{vnet}/subnets/{id}` (`id` as [`subnet_id`] makes it).
pub fn subnet_update(vnet: &str, id: &str, p: &SdnParams, delete: &[&str]) -> ApiRequest {
    with_delete(
        ApiRequest::new(
            Method::Put,
            &["cluster", "sdn", "vnets", vnet, "subnets", id],
        )
        .params(p.iter().cloned()),
        delete,
    )
}

/// `DELETE /cluster/sdn/vnets/{vnet}/subnets/{id}`.
pub fn subnet_delete(vnet: &str, id: &str) -> ApiRequest {
    ApiRequest::new(
        Method::Delete,
        &["cluster", "sdn", "vnets", vnet, "subnets", id],
    )
}

/// `PUT /cluster/sdn`: apply every staged change → task (`reloadnetworkall`).
pub fn apply() -> ApiRequest {
    ApiRequest::new(Method::Put, &["cluster", "sdn"])
}

/// The id Proxmox gives the subnet `cidr` of a vnet in `zone`: `zone-10.0.0.0-24`
/// (pve-network `API2/Network/SDN/Subnets.pm` `create`).
pub fn subnet_id(zone: &str, cidr: &str) -> String {
    format!("{zone}-{}", cidr.replace('/', "-"))
}

/// Where an object stands between staged and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdnState {
    /// Staged, never applied.
    New,
    /// Applied, with staged changes.
    Changed,
    /// Applied, staged for removal.
    Deleted,
}

/// One zone, vnet or subnet from a `pending=1` listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SdnEntry {
    /// Its id (`zone`, `vnet` or `subnet` field).
    pub id: String,
    /// Applied options (`None`: never applied).
    pub running: Option<BTreeMap<String, String>>,
    /// Staged options (`None`: staged for removal).
    pub staged: Option<BTreeMap<String, String>>,
    /// Its state, when staged and applied differ.
    pub state: Option<SdnState>,
}

impl SdnEntry {
    /// Whether staged changes wait for an apply.
    pub fn is_pending(&self) -> bool {
        self.state.is_some()
    }
}

/// A value as text: numbers and booleans as PVE writes them, lists (`dhcp-range`) and
/// objects as sorted comma-joined property strings.
pub fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => {
            let mut items: Vec<String> = a.iter().filter_map(text_of).collect();
            items.sort();
            Some(items.join(";"))
        }
        Value::Object(o) => {
            let mut items: Vec<String> = o
                .iter()
                .filter_map(|(k, v)| text_of(v).map(|v| format!("{k}={v}")))
                .collect();
            items.sort();
            Some(items.join(","))
        }
    }
}

const META: &[&str] = &["digest", "state", "pending"];

/// Parse a `pending=1` listing whose objects carry their id in field `id_key`.
pub fn parse_pending(id_key: &str, list: &[Value]) -> Vec<SdnEntry> {
    list.iter()
        .filter_map(|o| {
            let o = o.as_object()?;
            let id = o.get(id_key).and_then(Value::as_str)?.to_string();
            let state = match o.get("state").and_then(Value::as_str) {
                Some("new") => Some(SdnState::New),
                Some("changed") => Some(SdnState::Changed),
                Some("deleted") => Some(SdnState::Deleted),
                _ => None,
            };
            let top: BTreeMap<String, String> = o
                .iter()
                .filter(|(k, _)| !META.contains(&k.as_str()) && k.as_str() != id_key)
                .filter_map(|(k, v)| text_of(v).map(|t| (k.clone(), t)))
                .collect();
            let pending = o.get("pending").and_then(Value::as_object);
            let running = (state != Some(SdnState::New)).then(|| top.clone());
            let staged = match state {
                Some(SdnState::Deleted) => None,
                _ => {
                    // A new object has only `type` and `vnet` at the top level.
                    let mut s = top;
                    for (k, v) in pending.into_iter().flatten() {
                        if v.as_str() == Some("deleted") {
                            s.remove(k);
                        } else if let Some(t) = text_of(v) {
                            s.insert(k.clone(), t);
                        }
                    }
                    Some(s)
                }
            };
            Some(SdnEntry {
                id,
                running,
                staged,
                state,
            })
        })
        .collect()
}

/// Zones, vnets and subnets with their staged and applied state.
#[derive(Debug, Clone)]
pub struct SdnConfig {
    client: Client,
}

impl Client {
    /// SDN configuration with pending state, updates and apply.
    pub fn sdn_config(&self) -> SdnConfig {
        SdnConfig {
            client: self.clone(),
        }
    }
}

async fn unit(client: &Client, req: &ApiRequest) -> Result<()> {
    let _: Value = client.execute(req).await?;
    Ok(())
}

impl SdnConfig {
    /// Zones (`pending=1`).
    pub async fn zones(&self) -> Result<Vec<SdnEntry>> {
        let v: Vec<Value> = self.client.execute(&zones_list(SdnView::Pending)).await?;
        Ok(parse_pending("zone", &v))
    }
    /// Vnets (`pending=1`).
    pub async fn vnets(&self) -> Result<Vec<SdnEntry>> {
        let v: Vec<Value> = self.client.execute(&vnets_list(SdnView::Pending)).await?;
        Ok(parse_pending("vnet", &v))
    }
    /// Subnets of `vnet` (`pending=1`).
    pub async fn subnets(&self, vnet: &str) -> Result<Vec<SdnEntry>> {
        let v: Vec<Value> = self
            .client
            .execute(&subnets_list(vnet, SdnView::Pending))
            .await?;
        Ok(parse_pending("subnet", &v))
    }
    /// Create a zone.
    pub async fn create_zone(&self, zone: &str, zone_type: &str, p: &SdnParams) -> Result<()> {
        unit(&self.client, &zone_create(zone, zone_type, p)).await
    }
    /// Update a zone.
    pub async fn update_zone(&self, zone: &str, p: &SdnParams, delete: &[&str]) -> Result<()> {
        unit(&self.client, &zone_update(zone, p, delete)).await
    }
    /// Delete a zone.
    pub async fn delete_zone(&self, zone: &str) -> Result<()> {
        unit(&self.client, &zone_delete(zone)).await
    }
    /// Create a vnet.
    pub async fn create_vnet(&self, vnet: &str, zone: &str, p: &SdnParams) -> Result<()> {
        unit(&self.client, &vnet_create(vnet, zone, p)).await
    }
    /// Update a vnet.
    pub async fn update_vnet(&self, vnet: &str, p: &SdnParams, delete: &[&str]) -> Result<()> {
        unit(&self.client, &vnet_update(vnet, p, delete)).await
    }
    /// Delete a vnet.
    pub async fn delete_vnet(&self, vnet: &str) -> Result<()> {
        unit(&self.client, &vnet_delete(vnet)).await
    }
    /// Create a subnet.
    pub async fn create_subnet(&self, vnet: &str, cidr: &str, p: &SdnParams) -> Result<()> {
        unit(&self.client, &subnet_create(vnet, cidr, p)).await
    }
    /// Update a subnet.
    pub async fn update_subnet(
        &self,
        vnet: &str,
        id: &str,
        p: &SdnParams,
        delete: &[&str],
    ) -> Result<()> {
        unit(&self.client, &subnet_update(vnet, id, p, delete)).await
    }
    /// Delete a subnet.
    pub async fn delete_subnet(&self, vnet: &str, id: &str) -> Result<()> {
        unit(&self.client, &subnet_delete(vnet, id)).await
    }
    /// Apply every staged change → the `reloadnetworkall` task.
    pub async fn apply(&self) -> Result<Upid> {
        self.client.execute(&apply()).await
    }
}

/// A parameter list from text options (`dhcp-range` split into one pair per range).
pub fn params_of(opts: &BTreeMap<String, String>) -> SdnParams {
    let mut out = Vec::new();
    for (k, v) in opts {
        if k == "dhcp-range" {
            for r in v.split(';').filter(|r| !r.is_empty()) {
                out.push((k.clone(), ParamValue::Str(r.to_string())));
            }
        } else {
            out.push((k.clone(), typed(k, v)));
        }
    }
    out
}

/// The schema type of an SDN option: integers and booleans keep their type.
fn typed(key: &str, v: &str) -> ParamValue {
    const INTS: &[&str] = &["tag", "mtu", "vxlan-port", "vrf-vxlan", "dp-id"];
    const BOOLS: &[&str] = &[
        "snat",
        "vlanaware",
        "isolate-ports",
        "advertise-subnets",
        "exitnodes-local-routing",
        "bridge-disable-mac-learning",
        "disable-arp-nd-suppression",
    ];
    if INTS.contains(&key)
        && let Ok(n) = v.parse::<i64>()
    {
        return ParamValue::Int(n);
    }
    if BOOLS.contains(&key) {
        match v {
            "1" | "true" => return ParamValue::Bool(true),
            "0" | "false" => return ParamValue::Bool(false),
            _ => {}
        }
    }
    ParamValue::Str(v.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pending_listing_gives_both_configurations() {
        let list = vec![
            json!({"subnet": "z-10.0.0.0-24", "type": "subnet", "vnet": "v1",
                   "gateway": "10.0.0.1", "snat": 1, "digest": "x",
                   "state": "changed", "pending": {"gateway": "10.0.0.254", "snat": "deleted"}}),
            json!({"subnet": "z-10.1.0.0-24", "type": "subnet", "vnet": "v1",
                   "state": "new", "pending": {"cidr": "10.1.0.0/24",
                   "dhcp-range": ["start-address=10.1.0.10,end-address=10.1.0.20"]}}),
            json!({"subnet": "z-10.2.0.0-24", "type": "subnet", "vnet": "v1",
                   "state": "deleted", "pending": {}}),
            json!({"subnet": "z-10.3.0.0-24", "type": "subnet", "vnet": "v1"}),
        ];
        let e = parse_pending("subnet", &list);
        assert_eq!(e[0].state, Some(SdnState::Changed));
        assert_eq!(e[0].running.as_ref().unwrap()["gateway"], "10.0.0.1");
        let s = e[0].staged.as_ref().unwrap();
        assert_eq!(s["gateway"], "10.0.0.254");
        assert!(!s.contains_key("snat"));
        assert!(e[1].running.is_none());
        assert_eq!(
            e[1].staged.as_ref().unwrap()["dhcp-range"],
            "start-address=10.1.0.10,end-address=10.1.0.20"
        );
        assert!(e[2].staged.is_none() && e[2].is_pending());
        assert!(!e[3].is_pending());
        assert_eq!(e[3].running, e[3].staged);
    }

    #[test]
    fn requests_encode_lists_and_views() {
        let mut o = BTreeMap::new();
        o.insert("dhcp-range".to_string(), "a=1;b=2".to_string());
        o.insert("gateway".to_string(), "10.0.0.1".to_string());
        let r = subnet_create("v1", "10.0.0.0/24", &params_of(&o));
        assert_eq!(r.path, "/cluster/sdn/vnets/v1/subnets");
        let enc = r.encoded_params();
        assert!(enc.contains("dhcp-range=a%3D1&dhcp-range=b%3D2"), "{enc}");
        assert_eq!(
            zones_list(SdnView::Pending).encoded_params(),
            "pending=1".to_string()
        );
        assert_eq!(subnet_id("lab", "10.0.0.0/24"), "lab-10.0.0.0-24");
        let d = subnet_update("v1", "lab-10.0.0.0-24", &vec![], &["gateway", "snat"]);
        assert_eq!(d.encoded_params(), "delete=gateway%2Csnat");
    }
}
