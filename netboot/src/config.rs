//! What the server serves, to whom, and where it listens.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use secrecy::SecretSlice;

use crate::Error;

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The dashed lowercase form used in URLs (`52-54-00-12-34-56`).
    pub fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }

    /// From a DHCP `chaddr` (Ethernet only: six bytes).
    pub fn from_chaddr(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Colons or dashes between six hex pairs, any case.
    fn from_str(s: &str) -> Result<MacAddr, Error> {
        let bad = || Error::InvalidMac(s.to_owned());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

/// How the DHCP side behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhcpMode {
    /// The only DHCP server on an isolated link: a fixed lease per declared MAC.
    Full(FullDhcp),
    /// Beside an existing DHCP server: boot options only, no addresses (PXE proxyDHCP).
    Proxy,
}

/// Addressing handed out in full mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullDhcp {
    /// Subnet mask (option 1).
    pub subnet_mask: Ipv4Addr,
    /// Default gateway (option 3), if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (option 51).
    pub lease_secs: u32,
}

impl FullDhcp {
    /// A /`prefix` network with no router or DNS and one-hour leases.
    pub fn with_prefix(prefix: u8) -> Result<FullDhcp, Error> {
        if prefix > 32 {
            return Err(Error::InvalidConfig(format!(
                "prefix length {prefix} is longer than 32"
            )));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        Ok(FullDhcp {
            subnet_mask: Ipv4Addr::from(mask),
            router: None,
            dns: Vec::new(),
            lease_secs: 3600,
        })
    }
}

/// The CPU architecture of a declared machine (selects its kernel and UEFI binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// AArch64.
    Arm64,
}

/// The first-stage binaries served over TFTP, relative to the TFTP root
/// ([`ServerConfigBuilder::tftp_root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// For legacy BIOS PXE (option 93 = 0), e.g. Debian's `undionly.kpxe`.
    pub bios: String,
    /// For x86-64 UEFI (option 93 = 7 or 9), e.g. `ipxe.efi`.
    pub uefi_x64: String,
    /// For ARM64 UEFI (option 93 = 11), e.g. `ipxe-arm64.efi`.
    pub uefi_arm64: String,
}

impl Default for BootFiles {
    /// The names Debian's `ipxe` package uses in `/usr/lib/ipxe`.
    fn default() -> BootFiles {
        BootFiles {
            bios: "undionly.kpxe".into(),
            uefi_x64: "ipxe.efi".into(),
            uefi_arm64: "ipxe-arm64.efi".into(),
        }
    }
}

/// One declared machine.
#[derive(Clone)]
pub struct Host {
    /// Its name (for the progress view and the DHCP hostname option).
    pub name: String,
    /// Its MAC address: the only key the server answers to.
    pub mac: MacAddr,
    /// Fixed address: required in full mode (the lease), optional in proxy mode (then the
    /// address is learned from the client's DHCP REQUEST to the site's server).
    pub address: Option<Ipv4Addr>,
    /// Architecture.
    pub arch: Arch,
    /// The kernel file to serve.
    pub kernel: PathBuf,
    /// The initramfs file to serve.
    pub initramfs: PathBuf,
    /// The kernel command line (without `talos.config=`, which the server adds).
    pub cmdline: Vec<String>,
    /// The machine config, in memory only; served to this machine alone.
    pub config: Arc<SecretSlice<u8>>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .field("address", &self.address)
            .field("arch", &self.arch)
            .field("kernel", &self.kernel)
            .field("initramfs", &self.initramfs)
            .field("cmdline", &self.cmdline)
            .field("config", &"[redacted]")
            .finish()
    }
}

/// The ports the three services listen on (non-standard ones for tests and the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// DHCP server port (67).
    pub dhcp: u16,
    /// Where replies to unconfigured clients are broadcast (68).
    pub dhcp_client: u16,
    /// PXE proxyDHCP boot-server port (4011), used in proxy mode.
    pub proxy: u16,
    /// TFTP (69).
    pub tftp: u16,
    /// HTTP (0 picks a free one).
    pub http: u16,
}

impl Default for Ports {
    fn default() -> Ports {
        Ports {
            dhcp: 67,
            dhcp_client: 68,
            proxy: 4011,
            tftp: 69,
            http: 8080,
        }
    }
}

/// Everything the server needs. Build with [`ServerConfig::builder`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) server_ip: Ipv4Addr,
    pub(crate) interface: Option<String>,
    pub(crate) bind_ip: Ipv4Addr,
    pub(crate) mode: DhcpMode,
    pub(crate) ports: Ports,
    pub(crate) tftp_root: PathBuf,
    pub(crate) boot_files: BootFiles,
    pub(crate) hosts: BTreeMap<MacAddr, Host>,
}

impl ServerConfig {
    /// Start a configuration for a server reachable at `server_ip`.
    pub fn builder(server_ip: Ipv4Addr) -> ServerConfigBuilder {
        ServerConfigBuilder {
            server_ip,
            interface: None,
            bind_ip: None,
            mode: DhcpMode::Proxy,
            ports: Ports::default(),
            tftp_root: None,
            boot_files: BootFiles::default(),
            hosts: Vec::new(),
        }
    }

    /// The address clients are told to use for TFTP and HTTP.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    /// The DHCP mode.
    pub fn mode(&self) -> &DhcpMode {
        &self.mode
    }

    /// The declared machines by MAC.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// The declared machine with this MAC.
    pub fn host(&self, mac: &MacAddr) -> Option<&Host> {
        self.hosts.get(mac)
    }

    /// The configured ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    pub(crate) fn http_base(&self, http_port: u16) -> String {
        if http_port == 80 {
            format!("http://{}", self.server_ip)
        } else {
            format!("http://{}:{}", self.server_ip, http_port)
        }
    }

    pub(crate) fn sock(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.bind_ip, port))
    }
}

/// Builder for [`ServerConfig`].
#[derive(Debug)]
pub struct ServerConfigBuilder {
    server_ip: Ipv4Addr,
    interface: Option<String>,
    bind_ip: Option<Ipv4Addr>,
    mode: DhcpMode,
    ports: Ports,
    tftp_root: Option<PathBuf>,
    boot_files: BootFiles,
    hosts: Vec<Host>,
}

impl ServerConfigBuilder {
    /// Bind the DHCP socket to this interface (`SO_BINDTODEVICE`), so broadcasts go out
    /// there; needs CAP_NET_RAW.
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interface = Some(name.into());
        self
    }

    /// The address TFTP and HTTP listen on (default: the server address). DHCP always
    /// listens on 0.0.0.0 (clients without an address broadcast).
    pub fn bind_ip(mut self, ip: Ipv4Addr) -> Self {
        self.bind_ip = Some(ip);
        self
    }

    /// Full DHCP or proxyDHCP (the default).
    pub fn mode(mut self, mode: DhcpMode) -> Self {
        self.mode = mode;
        self
    }

    /// Listening ports.
    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// The directory TFTP serves (read-only), e.g. `/usr/lib/ipxe`.
    pub fn tftp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tftp_root = Some(dir.into());
        self
    }

    /// The first-stage file names within the TFTP root.
    pub fn boot_files(mut self, files: BootFiles) -> Self {
        self.boot_files = files;
        self
    }

    /// Declare a machine.
    pub fn host(mut self, host: Host) -> Self {
        self.hosts.push(host);
        self
    }

    /// Check and finish.
    pub fn build(self) -> Result<ServerConfig, Error> {
        let tftp_root = self.tftp_root.ok_or_else(|| {
            Error::InvalidConfig("no TFTP root directory (the iPXE binaries) given".into())
        })?;
        if self.hosts.is_empty() {
            return Err(Error::InvalidConfig("no machines declared".into()));
        }
        let mut hosts = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for host in self.hosts {
            if matches!(self.mode, DhcpMode::Full(_)) && host.address.is_none() {
                return Err(Error::InvalidConfig(format!(
                    "machine `{}` ({}) has no address; full DHCP mode needs one per machine",
                    host.name, host.mac
                )));
            }
            if let Some(ip) = host.address {
                if ip == self.server_ip {
                    return Err(Error::InvalidConfig(format!(
                        "machine `{}` has the server's own address {ip}",
                        host.name
                    )));
                }
                if let Some(other) = addresses.insert(ip, host.name.clone()) {
                    return Err(Error::InvalidConfig(format!(
                        "machines `{other}` and `{}` share the address {ip}",
                        host.name
                    )));
                }
            }
            let mac = host.mac;
            let name = host.name.clone();
            if let Some(other) = hosts.insert(mac, host) {
                return Err(Error::InvalidConfig(format!(
                    "machines `{}` and `{name}` share the MAC {mac}",
                    other.name
                )));
            }
        }
        Ok(ServerConfig {
            server_ip: self.server_ip,
            interface: self.interface,
            bind_ip: self.bind_ip.unwrap_or(self.server_ip),
            mode: self.mode,
            ports: self.ports,
            tftp_root,
            boot_files: self.boot_files,
            hosts,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_both_separators_and_rejects_junk() {
        let a: MacAddr = "52:54:00:AB:cd:01".parse().unwrap();
        let b: MacAddr = "52-54-00-ab-cd-01".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "52:54:00:ab:cd:01");
        assert_eq!(a.dashed(), "52-54-00-ab-cd-01");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:01:02",
            "5:54:00:ab:cd:01",
            "zz:54:00:ab:cd:01",
        ] {
            assert!(
                bad.parse::<MacAddr>().unwrap_err().is_invalid_config(),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefix_to_mask() {
        assert_eq!(
            FullDhcp::with_prefix(24).unwrap().subnet_mask,
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert_eq!(
            FullDhcp::with_prefix(0).unwrap().subnet_mask,
            Ipv4Addr::UNSPECIFIED
        );
        assert!(FullDhcp::with_prefix(33).is_err());
    }
}
