//! `Reset` options: what `talosctl reset --graceful --reboot --system-labels-to-wipe STATE
//! --system-labels-to-wipe EPHEMERAL` sends (siderolabs/talos `cmd/talosctl/cmd/talos/reset.go`
//! fills `ResetRequest` the same way: one `ResetPartitionSpec{label, wipe: true}` per label).

use crate::proto::machine::{self, ResetPartitionSpec};

/// A system partition (volume label) `Reset` can wipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemPartition {
    /// `STATE`: the machine configuration; wiping it returns the node to maintenance mode.
    State,
    /// `EPHEMERAL`: `/var` (etcd data, kubelet, containers).
    Ephemeral,
    /// `META`: Talos' key-value partition.
    Meta,
}

impl SystemPartition {
    /// The volume label Talos uses.
    pub fn label(self) -> &'static str {
        match self {
            SystemPartition::State => "STATE",
            SystemPartition::Ephemeral => "EPHEMERAL",
            SystemPartition::Meta => "META",
        }
    }
}

/// What a `Reset` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetOptions {
    /// Cordon and drain the node and, on a control plane, leave etcd first.
    pub graceful: bool,
    /// Reboot afterwards (else the machine powers off).
    pub reboot: bool,
    /// The system partitions to wipe; empty wipes the whole system disk.
    pub wipe: Vec<SystemPartition>,
}

impl ResetOptions {
    /// Graceful, wiping STATE and EPHEMERAL: the node leaves the cluster and comes back in
    /// maintenance mode (with `reboot`) or powers off.
    pub fn graceful_wipe_state(reboot: bool) -> Self {
        ResetOptions {
            graceful: true,
            reboot,
            wipe: vec![SystemPartition::State, SystemPartition::Ephemeral],
        }
    }

    /// The request on the wire.
    pub fn to_request(&self) -> machine::ResetRequest {
        machine::ResetRequest {
            graceful: self.graceful,
            reboot: self.reboot,
            system_partitions_to_wipe: self
                .wipe
                .iter()
                .map(|p| ResetPartitionSpec {
                    label: p.label().to_string(),
                    wipe: true,
                })
                .collect(),
            user_disks_to_wipe: Vec::new(),
            mode: machine::reset_request::WipeMode::All as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graceful_wipe_names_state_and_ephemeral() {
        let r = ResetOptions::graceful_wipe_state(true).to_request();
        assert!(r.graceful && r.reboot);
        let labels: Vec<&str> = r
            .system_partitions_to_wipe
            .iter()
            .map(|p| p.label.as_str())
            .collect();
        assert_eq!(labels, ["STATE", "EPHEMERAL"]);
        assert!(r.system_partitions_to_wipe.iter().all(|p| p.wipe));
        assert_eq!(
            ResetOptions::default()
                .to_request()
                .system_partitions_to_wipe,
            []
        );
    }
}
