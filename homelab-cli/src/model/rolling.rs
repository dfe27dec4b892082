//! `talos.upgrade`: how rolling changes proceed (see `docs/day2.md`).

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How rolling Talos upgrades proceed: control planes always one at a time (etcd keeps
/// its quorum), workers in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradePolicy {
    /// How many workers may be down for an upgrade at the same time (at least 1; default
    /// 1). Workers roll in batches of at most this many, in declaration order; each batch
    /// waits for the previous one to be healthy.
    #[serde(default = "one")]
    pub max_unavailable: NonZeroU32,
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

impl Default for UpgradePolicy {
    fn default() -> Self {
        UpgradePolicy {
            max_unavailable: one(),
        }
    }
}

impl UpgradePolicy {
    /// Whether it is the default (not written back out).
    pub fn is_default(&self) -> bool {
        *self == UpgradePolicy::default()
    }
}
