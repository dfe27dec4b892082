//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl's typed clients send for built-in types (`kubectl create namespace|configmap|
//! secret`), turned into the JSON objects the store keeps.
//!
//! The envelope is apimachinery's (`k8s.io/apimachinery/pkg/runtime/serializer/protobuf`):
//! the 4-byte magic `k8s\0`, then a `runtime.Unknown` (`typeMeta` = 1, `raw` = 2,
//! `contentEncoding` = 3, `contentType` = 4) whose `raw` is the object. Field numbers of the
//! objects follow `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto` (proto2); fields not listed here
//! are skipped as unknown fields.

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::Message;
use serde_json::{Value, json};

/// The content type kubectl's typed clients send.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

fn meta_json(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (k, v) in [
        ("name", m.name),
        ("generateName", m.generate_name),
        ("namespace", m.namespace),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.insert(k.into(), json!(v));
        }
    }
    if !m.labels.is_empty() {
        out.insert("labels".into(), json!(m.labels));
    }
    if !m.annotations.is_empty() {
        out.insert("annotations".into(), json!(m.annotations));
    }
    if !m.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(m.finalizers));
    }
    Value::Object(out)
}

fn b64(map: BTreeMap<String, Vec<u8>>) -> Value {
    let m: BTreeMap<String, String> = map
        .into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    json!(m)
}

/// Decode a protobuf body into the object's JSON form.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body lacks the k8s envelope")?;
    let u = Unknown::decode(rest).map_err(|e| format!("invalid protobuf envelope: {e}"))?;
    let tm = u.type_meta.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = u.raw.unwrap_or_default();
    let mut obj = match kind.as_str() {
        "ConfigMap" => {
            let c = ConfigMap::decode(&raw[..]).map_err(|e| e.to_string())?;
            let mut o = json!({"metadata": meta_json(c.metadata)});
            if !c.data.is_empty() {
                o["data"] = json!(c.data);
            }
            if !c.binary_data.is_empty() {
                o["binaryData"] = b64(c.binary_data);
            }
            if let Some(i) = c.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        "Secret" => {
            let s = Secret::decode(&raw[..]).map_err(|e| e.to_string())?;
            let mut o = json!({"metadata": meta_json(s.metadata)});
            if !s.data.is_empty() {
                o["data"] = b64(s.data);
            }
            if !s.string_data.is_empty() {
                o["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type.filter(|t| !t.is_empty()) {
                o["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        "Namespace" => {
            let n = Namespace::decode(&raw[..]).map_err(|e| e.to_string())?;
            json!({"metadata": meta_json(n.metadata)})
        }
        other => return Err(format!("no protobuf decoding for kind {other:?} here")),
    };
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!(tm.api_version.unwrap_or_else(|| "v1".into()));
    Ok(obj)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_create_namespace_body() {
        // The body kubectl 1.32 sends for `kubectl create namespace apps` (from `-v=8`).
        let body: Vec<u8> = [
            0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x4e, 0x61,
            0x6d, 0x65, 0x73, 0x70, 0x61, 0x63, 0x65, 0x12, 0x1c, 0x0a, 0x14, 0x0a, 0x04, 0x61,
            0x70, 0x70, 0x73, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38,
            0x00, 0x42, 0x00, 0x12, 0x00, 0x1a, 0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00,
        ]
        .to_vec();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "apps"}})
        );
    }

    #[test]
    fn configmap_and_secret_round_trip() {
        let cm = ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("c".into()),
                namespace: Some("n".into()),
                ..Default::default()
            }),
            data: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
            }),
            raw: Some(cm.encode_to_vec()),
            content_encoding: None,
            content_type: None,
        };
        let mut body = MAGIC.to_vec();
        body.extend(env.encode_to_vec());
        let v = decode(&body).unwrap();
        assert_eq!(v["data"]["k"], "v");
        assert_eq!(v["metadata"]["namespace"], "n");
        let s = Secret {
            metadata: Some(ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: [("p".to_string(), b"hi".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
            }),
            raw: Some(s.encode_to_vec()),
            content_encoding: None,
            content_type: None,
        };
        let mut body = MAGIC.to_vec();
        body.extend(env.encode_to_vec());
        let v = decode(&body).unwrap();
        assert_eq!(v["data"]["p"], "aGk=");
        assert!(decode(b"{}").is_err());
    }
}
