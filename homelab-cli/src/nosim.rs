//! `simlab` in a binary built without the `sim` feature: there is no simulated lab, so a
//! [`SimLab`] cannot exist (the type is uninhabited) and `--simulate` is not offered.

/// Where a config's simulated lab would keep its state (the same path as with `sim`; a
/// binary without it never has one, but recovery advice names the path).
pub fn state_dir(config_dir: &std::path::Path) -> std::path::PathBuf {
    config_dir.join(".homelab").join("sim")
}

/// Request counts of the simulated Proxmox VE (never produced without the `sim` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    /// Every request.
    pub total: u64,
    /// Requests other than GET.
    pub mutating: u64,
    /// Requests the simulator refused as not matching the PVE 9.1 API schema.
    pub schema_rejected: u64,
}

/// The simulated lab; without the `sim` feature no value of it can exist.
#[derive(Debug)]
pub enum SimLab {}

impl SimLab {
    /// Proxmox API requests received since the lab started.
    pub fn requests(&self) -> Requests {
        match *self {}
    }

    /// Stop everything.
    pub async fn shutdown(self) {
        match self {}
    }

    /// How metal nodes boot in the simulated lab.
    pub fn metal_boot(
        &self,
        _config_dir: &std::path::Path,
    ) -> miette::Result<crate::engine::metal::MetalBoot> {
        match *self {}
    }
}
