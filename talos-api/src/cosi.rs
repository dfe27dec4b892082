//! The COSI resource API as `talosctl get` uses it: the `cosi.resource.State` service that
//! apid serves (and proxies to other nodes with one-to-one `node` metadata).
//!
//! What `talosctl get machineconfig` does (siderolabs/talos v1.12.0,
//! `cmd/talosctl/cmd/talos/get.go` → `cmd/talosctl/pkg/talos/helpers/resources.go`,
//! `ForEachResource`): `c.COSI.Get` (with an ID) or `c.COSI.List` (without), where `c.COSI` is
//! cosi-project/runtime's protobuf client adapter over `cosi.resource.State`
//! (`pkg/machinery/client/client.go`). The server side is cosi-project/runtime
//! `pkg/state/protobuf/server/server.go`: the resource's metadata, its spec marshaled to
//! protobuf (`Spec.proto_spec`) and to YAML (`Spec.yaml_spec`).
//!
//! The machine config (`pkg/machinery/resources/config/machine_config.go`): namespace
//! `config`, type `MachineConfigs.config.talos.dev`, ID `v1alpha1` (the running config) or
//! `persistent` (the one on disk, ahead after a staged apply); its protobuf spec is
//! `resource.config.MachineConfigSpec { bytes yaml_marshalled = 1; }`, the config as it was
//! submitted. The type is `Sensitive`: only `os:admin` may read it
//! (`internal/app/resources/access.go`, `AccessPolicy`).
//!
//! Installed extensions (`pkg/machinery/resources/runtime/extension_status.go`): namespace
//! `runtime`, type `ExtensionStatuses.runtime.talos.dev`, one per extension layer. An image
//! built by the Image Factory carries a virtual extension named `schematic` whose version is
//! the schematic ID (siderolabs/image-factory `internal/artifacts/schematic.go`,
//! `schematicExtension`); an image without it is the vanilla one.

use prost::Message as _;
use tracing::Instrument as _;
use zeroize::Zeroizing;

use crate::client::{Client, MAX_MESSAGE_SIZE, transport_error};
use crate::error::{Error, Result};
use crate::proto::cosi::resource as pb;
use crate::proto::cosi::resource::state_client::StateClient;

/// Namespace of the configuration resources.
pub const CONFIG_NAMESPACE: &str = "config";
/// Type of the machine-config resource.
pub const MACHINE_CONFIG_TYPE: &str = "MachineConfigs.config.talos.dev";
/// ID of the machine config the node runs.
pub const ACTIVE_ID: &str = "v1alpha1";
/// ID of the machine config saved on the node's STATE partition (ahead after a staged apply).
pub const PERSISTENT_ID: &str = "persistent";
/// Namespace of the runtime resources.
pub const RUNTIME_NAMESPACE: &str = "runtime";
/// Type of the installed-extension resources.
pub const EXTENSION_STATUS_TYPE: &str = "ExtensionStatuses.runtime.talos.dev";
/// Name of the Image Factory's virtual extension that carries the schematic ID.
pub const SCHEMATIC_EXTENSION: &str = "schematic";
/// The schematic without customisations (talosctl `constants.ImageFactoryEmptySchematicID`).
pub const EMPTY_SCHEMATIC_ID: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// The spec of an `ExtensionStatus` resource: Talos's `extensions.Layer`, marshaled by
/// protoenc from its struct tags (siderolabs/talos `pkg/machinery/extensions/config.go`
/// `Layer`, `metadata.go` `Metadata`/`Compatibility`/`Constraint`); upstream has no `.proto`
/// for it, the field numbers are those tags.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionLayer {
    /// The squashfs image (`000.sqsh`).
    #[prost(string, tag = "1")]
    pub image: String,
    /// The extension's manifest metadata.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ExtensionMetadata>,
}

/// `extensions.Metadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionMetadata {
    /// Name (`qemu-guest-agent`, `schematic`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Version (for `schematic`: the schematic ID).
    #[prost(string, tag = "2")]
    pub version: String,
    /// Author.
    #[prost(string, tag = "3")]
    pub author: String,
    /// Description.
    #[prost(string, tag = "4")]
    pub description: String,
    /// Compatibility.
    #[prost(message, optional, tag = "5")]
    pub compatibility: Option<ExtensionCompatibility>,
    /// Extra information (for `schematic`: the schematic document).
    #[prost(string, tag = "6")]
    pub extra_info: String,
}

/// `extensions.Compatibility`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionCompatibility {
    /// The Talos version constraint.
    #[prost(message, optional, tag = "1")]
    pub talos: Option<ExtensionConstraint>,
}

/// `extensions.Constraint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionConstraint {
    /// A semver constraint (`>= 1.0.0`).
    #[prost(string, tag = "1")]
    pub version: String,
}

/// One installed extension as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtensionStatus {
    /// Resource ID.
    pub id: String,
    /// Extension name.
    pub name: String,
    /// Extension version.
    pub version: String,
}

impl Client {
    /// Raw `cosi.resource.State` stub (escape hatch); add proxy metadata yourself.
    pub fn state_service(&self) -> StateClient<tonic::transport::Channel> {
        StateClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// `cosi.resource.State/Get`: one resource (`talosctl get <type> <id>`).
    pub async fn get_resource(&self, namespace: &str, ty: &str, id: &str) -> Result<pb::Resource> {
        const M: &str = "/cosi.resource.State/Get";
        let span =
            tracing::debug_span!("talos_rpc", method = M, endpoint = %self.endpoint(), ty, id);
        async {
            let req = self.one_to_one_request(
                M,
                pb::GetRequest {
                    namespace: namespace.to_string(),
                    r#type: ty.to_string(),
                    id: id.to_string(),
                    options: Some(pb::GetOptions {}),
                },
            )?;
            let resp = self
                .state_service()
                .get(req)
                .await
                .map_err(|s| transport_error(M, self.endpoint(), s))?;
            resp.into_inner().resource.ok_or_else(|| Error::Grpc {
                method: M.into(),
                code: tonic::Code::Internal,
                message: "the reply carries no resource".into(),
            })
        }
        .instrument(span)
        .await
    }

    /// `cosi.resource.State/List`: every resource of a type (`talosctl get <type>`).
    pub async fn list_resources(&self, namespace: &str, ty: &str) -> Result<Vec<pb::Resource>> {
        const M: &str = "/cosi.resource.State/List";
        let span = tracing::debug_span!("talos_rpc", method = M, endpoint = %self.endpoint(), ty);
        async {
            let req = self.one_to_one_request(
                M,
                pb::ListRequest {
                    namespace: namespace.to_string(),
                    r#type: ty.to_string(),
                    options: Some(pb::ListOptions::default()),
                },
            )?;
            let mut stream = self
                .state_service()
                .list(req)
                .await
                .map_err(|s| transport_error(M, self.endpoint(), s))?
                .into_inner();
            let mut out = Vec::new();
            while let Some(item) = stream
                .message()
                .await
                .map_err(|s| transport_error(M, self.endpoint(), s))?
            {
                out.extend(item.resource);
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }

    /// The machine config the node runs, byte for byte as it was submitted
    /// (`talosctl get machineconfig v1alpha1`). Needs the `os:admin` role.
    pub async fn machine_config(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.machine_config_with_id(ACTIVE_ID).await
    }

    /// A machine-config resource by ID ([`ACTIVE_ID`] or [`PERSISTENT_ID`]).
    pub async fn machine_config_with_id(&self, id: &str) -> Result<Zeroizing<Vec<u8>>> {
        let r = self
            .get_resource(CONFIG_NAMESPACE, MACHINE_CONFIG_TYPE, id)
            .await?;
        machine_config_bytes(&r)
    }

    /// The installed extensions (`talosctl get extensions`).
    pub async fn extensions(&self) -> Result<Vec<ExtensionStatus>> {
        let items = self
            .list_resources(RUNTIME_NAMESPACE, EXTENSION_STATUS_TYPE)
            .await?;
        items.iter().map(extension_status).collect()
    }

    /// The schematic ID the node was installed from: the version of the `schematic`
    /// extension, or [`EMPTY_SCHEMATIC_ID`] for an image without one.
    pub async fn schematic(&self) -> Result<String> {
        Ok(schematic_of(&self.extensions().await?))
    }
}

/// The schematic ID among installed extensions ([`EMPTY_SCHEMATIC_ID`] when none says).
pub fn schematic_of(extensions: &[ExtensionStatus]) -> String {
    extensions
        .iter()
        .find(|e| e.name == SCHEMATIC_EXTENSION)
        .map_or_else(|| EMPTY_SCHEMATIC_ID.to_string(), |e| e.version.clone())
}

/// The config bytes of a `MachineConfigs.config.talos.dev` resource (its protobuf spec).
pub fn machine_config_bytes(r: &pb::Resource) -> Result<Zeroizing<Vec<u8>>> {
    let spec = r
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("machine-config resource without a spec".into()))?;
    let decoded =
        crate::proto::resource::config::MachineConfigSpec::decode(spec.proto_spec.as_slice())
            .map_err(|e| Error::InvalidConfig(format!("machine-config resource spec: {e}")))?;
    Ok(Zeroizing::new(decoded.yaml_marshalled))
}

/// An `ExtensionStatus` resource's ID, name and version (from its protobuf spec).
pub fn extension_status(r: &pb::Resource) -> Result<ExtensionStatus> {
    let id = r
        .metadata
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default();
    let spec = r
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig(format!("extension status {id} without a spec")))?;
    let layer = ExtensionLayer::decode(spec.proto_spec.as_slice())
        .map_err(|e| Error::InvalidConfig(format!("extension status {id}: {e}")))?;
    let m = layer.metadata.unwrap_or_default();
    Ok(ExtensionStatus {
        id,
        name: m.name,
        version: m.version,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wire_numbers_match_upstream() {
        // GetRequest: namespace=1 (0x0a), type=2 (0x12), id=3 (0x1a).
        let b = pb::GetRequest {
            namespace: "config".into(),
            r#type: "T".into(),
            id: "v1alpha1".into(),
            options: None,
        }
        .encode_to_vec();
        assert_eq!(&b[..8], b"\x0a\x06config");
        assert_eq!(&b[8..11], b"\x12\x01T");
        assert_eq!(b[11], 0x1a);
        // MachineConfigSpec: yaml_marshalled=1 (bytes).
        let spec = crate::proto::resource::config::MachineConfigSpec {
            yaml_marshalled: b"version: v1alpha1\n".to_vec(),
        }
        .encode_to_vec();
        assert_eq!(spec[0], 0x0a);
        let r = pb::Resource {
            metadata: None,
            spec: Some(pb::Spec {
                proto_spec: spec,
                yaml_spec: String::new(),
            }),
        };
        assert_eq!(
            machine_config_bytes(&r).unwrap().as_slice(),
            b"version: v1alpha1\n"
        );
        // Spec: proto_spec=1, yaml_spec=2; Metadata labels=10, annotations=11.
        let m = pb::Metadata {
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(m[0], (10 << 3) | 2);
    }

    #[test]
    fn the_schematic_is_the_virtual_extension_or_the_empty_one() {
        let layer = |name: &str, version: &str| pb::Resource {
            metadata: Some(pb::Metadata {
                id: "1".into(),
                ..Default::default()
            }),
            spec: Some(pb::Spec {
                proto_spec: ExtensionLayer {
                    image: "001.sqsh".into(),
                    metadata: Some(ExtensionMetadata {
                        name: name.into(),
                        version: version.into(),
                        ..Default::default()
                    }),
                }
                .encode_to_vec(),
                yaml_spec: String::new(),
            }),
        };
        let exts = vec![
            extension_status(&layer("qemu-guest-agent", "10.0.2")).unwrap(),
            extension_status(&layer("schematic", "abc")).unwrap(),
        ];
        assert_eq!(schematic_of(&exts), "abc");
        assert_eq!(schematic_of(&exts[..1]), EMPTY_SCHEMATIC_ID);
    }
}
