//! A throwaway link: a veth pair whose host end stays in this namespace (where the server
//! runs) and whose client end lives in a new network namespace. Removed on drop, even when
//! the test fails.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether a tool is here. Missing: fail under CI, skip loudly elsewhere.
pub fn require(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            missing.push(*tool);
        }
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if missing.is_empty() && root {
        return true;
    }
    let why = if root {
        format!("missing tools: {}", missing.join(", "))
    } else {
        "not root (network namespaces need it)".to_owned()
    };
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but this test cannot run: {why} (.ci/run installs them)");
    }
    eprintln!(
        "SKIPPED (loudly): {why}; install busybox tftp-hpa curl iproute2 ipxe qemu-system-x86 and run as root"
    );
    false
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

pub fn run(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Debug)]
pub struct Link {
    pub ns: String,
    pub host_if: String,
    pub client_if: String,
    pub subnet: [u8; 3],
}

impl Link {
    /// A new namespace and veth pair; the host end gets `<subnet>.1/24`.
    pub fn new() -> Link {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}{n}", pid % 0xfffff);
        let link = Link {
            ns: format!("nbt-{tag}"),
            host_if: format!("nbh{tag}"),
            client_if: format!("nbc{tag}"),
            subnet: [10, 213, u8::try_from((pid * 8 + n) % 250).unwrap() + 1],
        };
        run(&["ip", "netns", "add", &link.ns]);
        run(&[
            "ip",
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &link.client_if,
        ]);
        run(&["ip", "link", "set", &link.client_if, "netns", &link.ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", link.ip(1)),
            "dev",
            &link.host_if,
        ]);
        run(&["ip", "link", "set", &link.host_if, "up"]);
        link.exec_ok(&["ip", "link", "set", "lo", "up"]);
        link.exec_ok(&["ip", "link", "set", &link.client_if, "up"]);
        link
    }

    pub fn ip(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], last)
    }

    pub fn server_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// Run a command inside the client namespace.
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}{}",
            self.ns,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Give the client end a MAC (the link goes down and up).
    pub fn set_mac(&self, mac: &str) {
        self.exec_ok(&["ip", "link", "set", &self.client_if, "down"]);
        self.exec_ok(&["ip", "link", "set", &self.client_if, "address", mac]);
        self.exec_ok(&["ip", "link", "set", &self.client_if, "up"]);
    }

    /// Set the client's only address.
    pub fn set_addr(&self, ip: Ipv4Addr) {
        self.exec_ok(&["ip", "addr", "flush", "dev", &self.client_if]);
        self.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &self.client_if,
        ]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace destroys the client end, which destroys the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
