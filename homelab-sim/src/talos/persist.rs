//! The simulated nodes' JSON state files (etcd membership, Kubernetes objects and
//! workloads): read as absent when there is no file yet, written owner-only.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The value in `path`, `None` when the file does not exist; the error names the file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Write `value` to `path` (0600); a failure is logged as `cannot save <what>`, since the
/// simulated node keeps running on its in-memory state.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, what: &str) {
    if let Ok(json) = serde_json::to_vec_pretty(value)
        && let Err(e) = talos_api::talosconfig::write_private(path, &json)
    {
        tracing::error!(error = %e, "cannot save {what}");
    }
}
