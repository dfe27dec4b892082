//! Backups now: `POST /nodes/{node}/vzdump` (pve-manager `PVE/API2/VZDump.pm`, `vzdump`),
//! which answers with the UPID of the worker that writes the archives.

use crate::api::Node;
use crate::error::{Error, Result};
use crate::request::{ApiRequest, Method};
use crate::task::Task;
use crate::upid::Upid;

/// What to back up and how (the parameters of `vzdump` this client sends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VzdumpOptions {
    /// The guests (`vmid`, a comma-separated list on the wire). At least one.
    pub vmids: Vec<u32>,
    /// Target storage (`storage`); the node's default when `None`.
    pub storage: Option<String>,
    /// `snapshot`, `suspend` or `stop` (`mode`).
    pub mode: Option<String>,
    /// `zstd`, `lzo`, `gzip` or `0` (`compress`).
    pub compress: Option<String>,
    /// The archives' notes (`notes-template`, e.g. `{{guestname}}`).
    pub notes_template: Option<String>,
    /// Protect the archives from pruning (`protected`).
    pub protected: bool,
}

impl VzdumpOptions {
    /// The request for `node` (pure; checked before anything is sent).
    pub fn request(&self, node: &str) -> Result<ApiRequest> {
        if self.vmids.is_empty() {
            return Err(Error::invalid("vmid", "no guest to back up"));
        }
        if let Some(bad) = self
            .vmids
            .iter()
            .find(|v| !(100..=999_999_999).contains(*v))
        {
            return Err(Error::invalid(
                "vmid",
                format!("{bad} is outside 100..=999999999"),
            ));
        }
        let ids = self
            .vmids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut r = ApiRequest::new(Method::Post, &["nodes", node, "vzdump"]).param("vmid", ids);
        if let Some(s) = &self.storage {
            r = r.param("storage", s.as_str());
        }
        if let Some(m) = &self.mode {
            r = r.param("mode", m.as_str());
        }
        if let Some(c) = &self.compress {
            r = r.param("compress", c.as_str());
        }
        if let Some(n) = &self.notes_template {
            r = r.param("notes-template", n.as_str());
        }
        if self.protected {
            r = r.param("protected", true);
        }
        Ok(r)
    }
}

impl Node {
    /// `POST /nodes/{node}/vzdump`: back the guests up now → the worker's task.
    pub async fn vzdump(&self, o: &VzdumpOptions) -> Result<Task> {
        let upid: Upid = self.client.execute(&o.request(&self.node)?).await?;
        Ok(Task::new(self.client.clone(), upid))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_a_comma_list_and_none_is_refused() {
        let o = VzdumpOptions {
            vmids: vec![100, 117],
            storage: Some("tank-backups".into()),
            protected: true,
            ..VzdumpOptions::default()
        };
        let r = o.request("pve").unwrap();
        let dbg = format!("{r:?}");
        assert!(dbg.contains("vzdump"), "{dbg}");
        assert!(dbg.contains("100,117"), "{dbg}");
        assert!(dbg.contains("tank-backups"), "{dbg}");
        assert!(VzdumpOptions::default().request("pve").is_err());
        let bad = VzdumpOptions {
            vmids: vec![7],
            ..VzdumpOptions::default()
        };
        assert!(bad.request("pve").is_err());
    }
}
