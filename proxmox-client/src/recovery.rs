//! Writes whose answer was lost. A connection that closes before the answer leaves two
//! possibilities: the request never reached pvedaemon (nothing happened; sending it again
//! is right) or it did and its worker task runs (sending it again would fail with "already
//! exists" or do the work twice). For requests that start a worker task, the node's task
//! list tells the two apart: pve-manager's `GET /nodes/{node}/tasks` lists tasks by type,
//! VMID and start time (`source=all` covers running and finished ones). The task types and
//! ids below are those qemu-server (`PVE/API2/Qemu.pm`: `qmcreate`, `qmstart`, `qmstop`,
//! `qmshutdown`, `qmreboot`, `qmdestroy`, `qmtemplate`, `qmconfig`, `resize`), pve-container
//! (`PVE/API2/LXC.pm`, `LXC/Status.pm`: `vzcreate`, `vzstart`, ..., `vzdestroy`,
//! `vztemplate`) and pve-storage (`download`, by storage) give their workers.

use serde::Deserialize;

use crate::request::{ApiRequest, Method, ParamValue};

/// The worker task a write request starts: node, task type and task id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectedTask {
    pub node: String,
    pub ty: String,
    pub id: String,
}

fn param<'a>(req: &'a ApiRequest, name: &str) -> Option<&'a ParamValue> {
    req.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn param_text(v: &ParamValue) -> String {
    match v {
        ParamValue::Str(s) => s.clone(),
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Num(n) => n.to_string(),
        ParamValue::Bool(b) => u8::from(*b).to_string(),
        ParamValue::Secret(_) => String::new(),
    }
}

/// The task `req` starts, when it is one whose lost answer can be recovered from the task
/// list (`None` for reads and for writes without a worker).
pub(crate) fn expected_task(req: &ApiRequest) -> Option<ExpectedTask> {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let node = |n: &str| n.to_string();
    let (ty, node_name, id) = match (req.method, segs.as_slice()) {
        (Method::Post, ["nodes", n, "qemu"]) => (
            "qmcreate".to_string(),
            node(n),
            param_text(param(req, "vmid")?),
        ),
        (Method::Post, ["nodes", n, "lxc"]) => (
            "vzcreate".to_string(),
            node(n),
            param_text(param(req, "vmid")?),
        ),
        (Method::Post, ["nodes", n, kind @ ("qemu" | "lxc"), vmid, "status", action])
            if matches!(*action, "start" | "stop" | "shutdown" | "reboot") =>
        {
            let prefix = if *kind == "qemu" { "qm" } else { "vz" };
            (format!("{prefix}{action}"), node(n), vmid.to_string())
        }
        (Method::Delete, ["nodes", n, kind @ ("qemu" | "lxc"), vmid]) => {
            let prefix = if *kind == "qemu" { "qm" } else { "vz" };
            (format!("{prefix}destroy"), node(n), vmid.to_string())
        }
        (Method::Post, ["nodes", n, kind @ ("qemu" | "lxc"), vmid, "template"]) => {
            let prefix = if *kind == "qemu" { "qm" } else { "vz" };
            (format!("{prefix}template"), node(n), vmid.to_string())
        }
        (Method::Post, ["nodes", n, "qemu", vmid, "config"]) => {
            ("qmconfig".to_string(), node(n), vmid.to_string())
        }
        (Method::Put, ["nodes", n, "qemu", vmid, "resize"]) => {
            ("resize".to_string(), node(n), vmid.to_string())
        }
        (Method::Post, ["nodes", n, "storage", storage, "download-url"]) => {
            ("download".to_string(), node(n), storage.to_string())
        }
        _ => return None,
    };
    Some(ExpectedTask {
        node: node_name,
        ty,
        id,
    })
}

/// For a synchronous create that names its object (`POST /cluster/backup` with `id`,
/// `POST /cluster/mapping/pci` with `id`): where to read it back. Found means the lost
/// answer was a success; not found means the request never ran.
pub(crate) fn created_object(req: &ApiRequest) -> Option<String> {
    if req.method != Method::Post {
        return None;
    }
    // The create's path and the parameter naming the object; `GET {base}/{id}` reads it
    // (pve-manager `PVE/API2/Backup.pm`, `PVE/API2/Cluster/Mapping/PCI.pm`; pve-storage
    // `PVE/API2/Storage/Config.pm` `create`/`read`, keyed by `storage`).
    let (base, key) = match req.path.as_str() {
        "/cluster/backup" => ("/cluster/backup", "id"),
        "/cluster/mapping/pci" => ("/cluster/mapping/pci", "id"),
        "/storage" => ("/storage", "storage"),
        _ => return None,
    };
    let id = param_text(param(req, key)?);
    (!id.is_empty() && !id.contains('/')).then(|| format!("{base}/{id}"))
}

/// Whether the read-back of a create says the object is not there: not found, or a
/// parameter error naming it missing (pve-manager `PVE/API2/Backup.pm` `read_job`:
/// `raise_param_exc({ id => "No such job '$id'" })`, an HTTP 400).
pub(crate) fn absent(e: &crate::Error) -> bool {
    match e {
        crate::Error::NotFound { .. } => true,
        crate::Error::Validation { errors, .. } => errors
            .values()
            .any(|m| m.to_ascii_lowercase().starts_with("no such ")),
        _ => false,
    }
}

/// Whether a write without a worker may simply be sent again: setting a configuration to
/// the same values twice is harmless, unless it names the digest it expects (the first,
/// lost, attempt changed the digest) or deletes keys.
pub(crate) fn idempotent_write(req: &ApiRequest) -> bool {
    matches!(req.method, Method::Put | Method::Post)
        && req.path.ends_with("/config")
        && param(req, "digest").is_none()
        && param(req, "delete").is_none()
}

/// One row of the node's task list.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskRow {
    pub upid: String,
    #[serde(default)]
    pub starttime: Option<u64>,
}

/// The newest task in `rows` started at or after `since` (epoch seconds).
pub(crate) fn newest_since(rows: &[TaskRow], since: u64) -> Option<&str> {
    rows.iter()
        .filter(|r| r.starttime.is_some_and(|t| t >= since))
        .max_by_key(|r| r.starttime)
        .map(|r| r.upid.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, params: &[(&str, ParamValue)]) -> ApiRequest {
        ApiRequest {
            method,
            path: path.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn writes_map_to_their_worker_tasks() {
        let create = req(
            Method::Post,
            "/nodes/pve/qemu",
            &[("vmid", ParamValue::Int(301))],
        );
        assert_eq!(
            expected_task(&create),
            Some(ExpectedTask {
                node: "pve".into(),
                ty: "qmcreate".into(),
                id: "301".into()
            })
        );
        let start = req(Method::Post, "/nodes/pve2/lxc/108/status/start", &[]);
        assert_eq!(expected_task(&start).unwrap().ty, "vzstart");
        let destroy = req(Method::Delete, "/nodes/pve/qemu/9000", &[]);
        assert_eq!(expected_task(&destroy).unwrap().ty, "qmdestroy");
        let dl = req(Method::Post, "/nodes/pve/storage/local/download-url", &[]);
        assert_eq!(expected_task(&dl).unwrap().id, "local");
        assert!(expected_task(&req(Method::Get, "/nodes/pve/qemu", &[])).is_none());
        assert!(expected_task(&req(Method::Post, "/nodes/pve/qemu/100/clone", &[])).is_none());
    }

    #[test]
    fn named_creates_are_read_back() {
        let job = req(
            Method::Post,
            "/cluster/backup",
            &[("id", ParamValue::Str("homelab-nightly".into()))],
        );
        assert_eq!(
            created_object(&job).as_deref(),
            Some("/cluster/backup/homelab-nightly")
        );
        assert!(created_object(&req(Method::Post, "/cluster/backup", &[])).is_none());
        let storage = req(
            Method::Post,
            "/storage",
            &[("storage", ParamValue::Str("tank".into()))],
        );
        assert_eq!(created_object(&storage).as_deref(), Some("/storage/tank"));
        let no_such_job = crate::Error::Validation {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: [(
                "id".to_string(),
                "No such job 'homelab-nightly'".to_string(),
            )]
            .into(),
        };
        assert!(absent(&no_such_job));
        let other = crate::Error::Validation {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: [("id".to_string(), "invalid format".to_string())].into(),
        };
        assert!(!absent(&other));
    }

    #[test]
    fn only_plain_config_sets_are_resent() {
        assert!(idempotent_write(&req(
            Method::Put,
            "/nodes/pve/lxc/100/config",
            &[("memory", ParamValue::Int(512))]
        )));
        assert!(!idempotent_write(&req(
            Method::Put,
            "/nodes/pve/lxc/100/config",
            &[("digest", ParamValue::Str("x".into()))]
        )));
        assert!(!idempotent_write(&req(
            Method::Post,
            "/nodes/pve/qemu",
            &[]
        )));
    }

    #[test]
    fn the_newest_task_since_the_request_is_ours() {
        let rows = vec![
            TaskRow {
                upid: "old".into(),
                starttime: Some(90),
            },
            TaskRow {
                upid: "new".into(),
                starttime: Some(101),
            },
        ];
        assert_eq!(newest_since(&rows, 100), Some("new"));
        assert_eq!(newest_since(&rows, 102), None);
    }
}
