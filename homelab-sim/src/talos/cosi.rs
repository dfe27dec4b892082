//! The COSI resource API a node's apid serves (`cosi.resource.State`): what `talosctl get`
//! reads. Only the resources homelab reads are modelled: the machine config and the
//! installed extensions.
//!
//! Read from siderolabs/talos at tag v1.12.0 and cosi-project/runtime:
//! - `internal/app/machined/pkg/system/services/machined.go`: `/cosi.resource.State/Get` and
//!   `List` are allowed to os:admin, os:operator and os:reader; writes to os:admin only.
//! - `internal/app/resources/access.go`, `AccessPolicy`: writes are refused ("write access is
//!   not allowed"); a type without a resource definition is refused with
//!   `resource type "<type>" is not supported` (PermissionDenied); a `Sensitive` type (the
//!   machine config) needs os:admin, else `not authorized`. The maintenance server
//!   (`internal/app/maintenance/server.go`) wraps the same policy, with no client roles.
//! - cosi-project/runtime `pkg/state/protobuf/server/server.go`: Get answers NotFound with
//!   the state's text, `resource <type>(<ns>/<id>@undefined) doesn't exist`
//!   (`pkg/state/impl/inmem/errors.go`, `Metadata.String`); List streams one message per
//!   resource. Each resource carries its spec marshaled to protobuf and to YAML
//!   (`pkg/resource/protobuf/resource.go`, `FromResource`/`Marshal`).
//! - `pkg/machinery/resources/config/machine_config.go`: namespace `config`, type
//!   `MachineConfigs.config.talos.dev`, ID `v1alpha1` (running) and `persistent` (on disk,
//!   ahead after a staged apply: `v1alpha2_state.go` `SetConfig` with `PersistentID`); the
//!   `talos.dev/yaml-spec` annotation; protobuf spec `MachineConfigSpec.yaml_marshalled`, the
//!   bytes as submitted; YAML spec the config as one string.
//! - `internal/app/machined/pkg/controllers/runtime/extension_status.go`: one
//!   `ExtensionStatuses.runtime.talos.dev` per extension layer, ID the layer image without
//!   `.sqsh`; the Image Factory adds a virtual `schematic` extension whose version is the
//!   schematic ID (siderolabs/image-factory `internal/artifacts/schematic.go`). A node
//!   installed from the vanilla installer lists none. The simulated node knows only its
//!   schematic ID, so it lists that one extension.

use std::time::SystemTime;

use prost::Message as _;
use talos_api::cosi::{
    ACTIVE_ID, CONFIG_NAMESPACE, EXTENSION_STATUS_TYPE, ExtensionCompatibility,
    ExtensionConstraint, ExtensionLayer, ExtensionMetadata, MACHINE_CONFIG_TYPE, PERSISTENT_ID,
    RUNTIME_NAMESPACE, SCHEMATIC_EXTENSION,
};
use talos_api::proto::cosi::resource as pb;
use talos_api::proto::cosi::resource::state_server::{State, StateServer};
use tonic::{Request, Response, Status};

use super::apid::{Apid, dial, proxy_targets};

/// The State service of one apid.
pub(super) fn state_server(apid: Apid) -> StateServer<Apid> {
    StateServer::new(apid)
}

const READ_ROLES: &[&str] = &["os:admin", "os:operator", "os:reader"];

/// Where a call goes: this node, or the one `node` (or a single `nodes`) names. COSI calls
/// are proxied one-to-one.
fn target<T>(apid: &Apid, req: &Request<T>) -> Result<Option<Apid>, Status> {
    if apid.maintenance || apid.trusted {
        return Ok(None);
    }
    match proxy_targets(req)? {
        None => Ok(None),
        Some(t) if t.len() == 1 => dial(&apid.peers(), &t[0]).map(Some),
        Some(_) => Err(Status::invalid_argument(
            "one-to-many proxying is not supported for this API",
        )),
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn metadata(ns: &str, ty: &str, id: &str) -> pb::Metadata {
    let now = timestamp(SystemTime::now());
    pb::Metadata {
        namespace: ns.into(),
        r#type: ty.into(),
        id: id.into(),
        version: "1".into(),
        owner: String::new(),
        phase: "running".into(),
        created: Some(now),
        updated: Some(now),
        finalizers: vec![],
        labels: Default::default(),
        annotations: Default::default(),
    }
}

/// A string as go-yaml marshals it when it spans lines: a literal block, indented by 4.
fn yaml_block(text: &str) -> String {
    let chomp = if text.ends_with("\n\n") {
        "+"
    } else if text.ends_with('\n') {
        ""
    } else {
        "-"
    };
    let mut out = format!("|{chomp}\n");
    for l in text.lines() {
        if l.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn machine_config_resource(id: &str, text: &str) -> pb::Resource {
    let mut md = metadata(CONFIG_NAMESPACE, MACHINE_CONFIG_TYPE, id);
    md.annotations
        .insert("talos.dev/yaml-spec".into(), "1".into());
    pb::Resource {
        metadata: Some(md),
        spec: Some(pb::Spec {
            proto_spec: talos_api::proto::resource::config::MachineConfigSpec {
                yaml_marshalled: text.as_bytes().to_vec(),
            }
            .encode_to_vec(),
            yaml_spec: yaml_block(text),
        }),
    }
}

fn schematic_resource(schematic: &str) -> pb::Resource {
    let layer = ExtensionLayer {
        image: "0.sqsh".into(),
        metadata: Some(ExtensionMetadata {
            name: SCHEMATIC_EXTENSION.into(),
            version: schematic.into(),
            author: "Image Factory".into(),
            description: "Virtual extension which specifies the schematic of the image built with Image Factory.".into(),
            compatibility: Some(ExtensionCompatibility {
                talos: Some(ExtensionConstraint {
                    version: ">= 1.0.0".into(),
                }),
            }),
            extra_info: String::new(),
        }),
    };
    let yaml = format!(
        "image: 0.sqsh\nmetadata:\n    name: {SCHEMATIC_EXTENSION}\n    version: {schematic}\n    author: Image Factory\n    description: Virtual extension which specifies the schematic of the image built with Image Factory.\n    compatibility:\n        talos:\n            version: '>= 1.0.0'\n"
    );
    pb::Resource {
        metadata: Some(metadata(RUNTIME_NAMESPACE, EXTENSION_STATUS_TYPE, "0")),
        spec: Some(pb::Spec {
            proto_spec: layer.encode_to_vec(),
            yaml_spec: yaml,
        }),
    }
}

fn unsupported(ty: &str) -> Status {
    Status::permission_denied(format!("resource type {ty:?} is not supported"))
}

/// The access policy: known types only; the machine config needs os:admin (in maintenance
/// mode nobody has it).
fn check_access<T>(apid: &Apid, req: &Request<T>, ty: &str) -> Result<(), Status> {
    match ty {
        MACHINE_CONFIG_TYPE => {
            if apid.maintenance {
                return Err(Status::permission_denied("not authorized"));
            }
            apid.require(req, &["os:admin"])
        }
        EXTENSION_STATUS_TYPE => Ok(()),
        other => Err(unsupported(other)),
    }
}

fn not_found(ty: &str, ns: &str, id: &str) -> Status {
    Status::not_found(format!("resource {ty}({ns}/{id}@undefined) doesn't exist"))
}

type ListStream = tonic::codegen::BoxStream<pb::ListResponse>;

#[tonic::async_trait]
impl State for Apid {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.require(&req, READ_ROLES)?;
        if let Some(peer) = target(self, &req)? {
            return peer.get(Request::new(req.into_inner())).await;
        }
        let ty = req.get_ref().r#type.clone();
        check_access(self, &req, &ty)?;
        let r = req.into_inner();
        self.node.record_read(&format!("Get {ty}"));
        let st = self.node.state();
        let resource = match (r.namespace.as_str(), ty.as_str()) {
            (CONFIG_NAMESPACE, MACHINE_CONFIG_TYPE) => {
                let text = match r.id.as_str() {
                    ACTIVE_ID => st.config.clone(),
                    PERSISTENT_ID => st.staged.clone().or(st.config.clone()),
                    _ => None,
                };
                text.map(|t| machine_config_resource(&r.id, &t))
            }
            (RUNTIME_NAMESPACE, EXTENSION_STATUS_TYPE) => st
                .schematic
                .filter(|s| s != super::day2::VANILLA_SCHEMATIC && r.id == "0")
                .map(|s| schematic_resource(&s)),
            _ => None,
        };
        let resource = resource.ok_or_else(|| not_found(&ty, &r.namespace, &r.id))?;
        Ok(Response::new(pb::GetResponse {
            resource: Some(resource),
        }))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<ListStream>, Status> {
        self.require(&req, READ_ROLES)?;
        if let Some(peer) = target(self, &req)? {
            return peer.list(Request::new(req.into_inner())).await;
        }
        let ty = req.get_ref().r#type.clone();
        check_access(self, &req, &ty)?;
        let r = req.into_inner();
        self.node.record_read(&format!("List {ty}"));
        let st = self.node.state();
        let items: Vec<pb::Resource> = match (r.namespace.as_str(), ty.as_str()) {
            (CONFIG_NAMESPACE, MACHINE_CONFIG_TYPE) => {
                let mut v = Vec::new();
                if let Some(c) = &st.config {
                    v.push(machine_config_resource(ACTIVE_ID, c));
                    let persistent = st.staged.as_deref().unwrap_or(c);
                    v.push(machine_config_resource(PERSISTENT_ID, persistent));
                }
                v
            }
            (RUNTIME_NAMESPACE, EXTENSION_STATUS_TYPE) => st
                .schematic
                .filter(|s| s != super::day2::VANILLA_SCHEMATIC)
                .map(|s| vec![schematic_resource(&s)])
                .unwrap_or_default(),
            _ => vec![],
        };
        let stream = futures_util::stream::iter(
            items
                .into_iter()
                .map(|resource| {
                    Ok(pb::ListResponse {
                        resource: Some(resource),
                    })
                })
                .collect::<Vec<_>>(),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        assert_eq!(yaml_block("a: 1\nb: 2\n"), "|\n    a: 1\n    b: 2\n");
        assert_eq!(yaml_block("a\n\nb"), "|-\n    a\n\n    b\n");
    }
}
