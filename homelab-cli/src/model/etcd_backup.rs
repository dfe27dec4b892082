//! `talos.etcd_backup`: encrypted etcd snapshots (see `docs/disaster-recovery.md`).
//!
//! ```yaml
//! talos:
//!   etcd_backup: before_changes        # short form
//!   # or
//!   etcd_backup:
//!     when: before_changes             # or `manual` (only `talos etcd snapshot`)
//!     keep: 10                         # snapshots kept per cluster, 0 = all
//!     dir: backups/etcd                # relative to homelab.yaml
//! ```

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When snapshots are taken without being asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Before `up` changes a control plane (replace, update, reconfigure, upgrade, destroy).
    BeforeChanges,
    /// Only with `homelab-cli talos etcd snapshot`.
    #[default]
    Manual,
}

/// The long form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdBackup {
    /// When snapshots are taken.
    #[serde(default)]
    pub when: When,
    /// Snapshots of the cluster kept in `dir`, newest first (0: all). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<usize>,
    /// Where snapshots go, relative to homelab.yaml. Default `backups/etcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// What `talos.etcd_backup` accepts: `before_changes` / `manual`, or the long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EtcdBackupSetting {
    /// `etcd_backup: before_changes`.
    Short(When),
    /// `etcd_backup: { when: ..., keep: ..., dir: ... }`.
    Long(EtcdBackup),
}

impl EtcdBackupSetting {
    /// The long form of either.
    pub fn resolved(&self) -> EtcdBackup {
        match self {
            EtcdBackupSetting::Short(w) => EtcdBackup {
                when: *w,
                ..EtcdBackup::default()
            },
            EtcdBackupSetting::Long(b) => b.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms() {
        let s: EtcdBackupSetting = serde_yaml_ng::from_str("before_changes").unwrap();
        assert_eq!(s.resolved().when, When::BeforeChanges);
        let l: EtcdBackupSetting =
            serde_yaml_ng::from_str("{when: before_changes, keep: 3, dir: b}").unwrap();
        let r = l.resolved();
        assert_eq!((r.when, r.keep), (When::BeforeChanges, Some(3)));
        assert_eq!(r.dir, Some(PathBuf::from("b")));
        assert!(serde_yaml_ng::from_str::<EtcdBackupSetting>("sometimes").is_err());
        assert!(serde_yaml_ng::from_str::<EtcdBackupSetting>("{keeep: 1}").is_err());
    }
}
