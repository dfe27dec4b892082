//! The strongest check here: QEMU's own iPXE ROM network-boots a VM from the server over a
//! tap device in a network namespace. iPXE takes the lease, loads our script, fetches the
//! kernel and initramfs; the booted kernel (Debian's cloud kernel standing in for Talos's,
//! which cannot be downloaded here) fetches the `talos.config=` URL from the command line,
//! as Talos does, and prints the config's SHA-256 on the serial console. Both DHCP modes:
//! full, and proxy beside busybox `udhcpd` as the site's server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netboot::{Arch, DhcpMode, Event, FullDhcp, Host, MacAddr, Ports, Server, ServerConfig};

use crate::clients::{CONFIG, IPXE_DIR};
use crate::netns::{Link, require};

const MAC: &str = "52:54:00:d1:00:42";

fn payload_dir() -> PathBuf {
    std::env::var_os("NETBOOT_QEMU_PAYLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/homelab-netboot/qemu-payload"))
}

fn payload_present(dir: &Path) -> bool {
    if dir.join("vmlinuz").is_file() && dir.join("initramfs.gz").is_file() {
        return true;
    }
    let why = format!(
        "no QEMU payload in {} (run netboot/tests/qemu-payload.sh {0}; .ci/run does)",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {why}");
    }
    eprintln!("SKIPPED (loudly): {why}");
    false
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

struct Vm(std::process::Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In the namespace: a bridge joining the veth end and a tap for the VM; the tap's name.
fn bridge_and_tap(link: &Link) -> String {
    let tag = link.ns.trim_start_matches("nbt-").to_owned();
    let (tap, bridge) = (format!("nbp{tag}"), format!("nbb{tag}"));
    link.exec_ok(&["ip", "link", "add", &bridge, "type", "bridge"]);
    link.exec_ok(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]);
    link.exec_ok(&["ip", "link", "set", &link.client_if, "master", &bridge]);
    link.exec_ok(&["ip", "link", "set", &tap, "master", &bridge]);
    link.exec_ok(&["ip", "link", "set", &tap, "up"]);
    link.exec_ok(&["ip", "link", "set", &bridge, "up"]);
    tap
}

/// The declared machine: the payload kernel fetching its `talos.config=`.
fn host(mac: MacAddr, address: Option<std::net::Ipv4Addr>, payload: &Path) -> Host {
    Host {
        name: "metal-qemu".into(),
        mac,
        address,
        arch: Arch::Amd64,
        kernel: payload.join("vmlinuz"),
        initramfs: payload.join("initramfs.gz"),
        cmdline: vec!["console=ttyS0".into(), "panic=-1".into(), "quiet".into()],
        config: Arc::new(CONFIG.to_vec().into()),
    }
}

/// Network-boot a VM on `tap` until its kernel reports the config fetch; every server
/// event seen on the way. Panics with the serial log when it does not get there.
async fn boot_vm(link: &Link, tap: &str, server: &netboot::ServerHandle) -> Vec<Event> {
    let mut events = server.events();
    let dir = tempfile::tempdir().unwrap();
    let serial = dir.path().join("serial.log");
    let mut args: Vec<String> = vec![
        "ip",
        "netns",
        "exec",
        &link.ns,
        "qemu-system-x86_64",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
        "-boot",
        "n",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push("-serial".into());
    args.push(format!("file:{}", serial.display()));
    // Software emulation on purpose: on these (nested) machines KVM runs SeaBIOS but the
    // iPXE ROM never transmits under it, and `-cpu host` aborts on an MSR.
    args.extend(["-accel".into(), "tcg".into()]);
    args.push("-netdev".into());
    args.push(format!("tap,id=n0,ifname={tap},script=no,downscript=no"));
    args.push("-device".into());
    args.push(format!("virtio-net-pci,netdev=n0,mac={MAC}"));
    let started = Instant::now();
    let mut vm = Vm(Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());

    // A bound, not a speed check: software emulation on a loaded 2-core machine took 35 s.
    let limit = Duration::from_secs(180);
    let want = format!("NETBOOT-CONFIG-FETCHED {}", sha256_hex(CONFIG));
    let mut seen = Vec::new();
    let outcome = loop {
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if log.contains("NETBOOT-CONFIG-") {
            break Ok(log);
        }
        if let Ok(Some(status)) = vm.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = vm.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            break Err(format!(
                "QEMU exited ({status}) early: {err}\nserial:\n{log}"
            ));
        }
        if started.elapsed() > limit {
            break Err(format!(
                "no config fetch within {limit:?}; serial tail:\n{}",
                &log[log.len().saturating_sub(3000)..]
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let log = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {seen:?}"));
    assert!(
        log.contains(&want),
        "the booted kernel did not get the config: {log}"
    );
    eprintln!("QEMU network boot to config fetch: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_ipxe_boots_from_the_server_and_the_kernel_fetches_its_config() {
    if !require(&["ip", "qemu-system-x86_64", "sha256sum"]) {
        return;
    }
    let payload = payload_dir();
    if !payload_present(&payload) {
        return;
    }
    let link = Link::new();
    let tap = bridge_and_tap(&link);

    let mac: MacAddr = MAC.parse().unwrap();
    let mut full = FullDhcp::with_prefix(24).unwrap();
    full.router = Some(link.server_ip());
    let cfg = ServerConfig::builder(link.server_ip())
        .interface(link.host_if.clone())
        .mode(DhcpMode::Full(full))
        .ports(Ports {
            http: 0,
            ..Ports::default()
        })
        .tftp_root(IPXE_DIR)
        .host(host(mac, Some(link.ip(42)), &payload))
        .build()
        .unwrap();
    let server = Server::start(cfg).await.unwrap();
    let seen = boot_vm(&link, &tap, &server).await;
    // The firmware's iPXE asked as iPXE and was handed the script URL directly.
    let script_url = format!(
        "http://{}/boot/{}/script.ipxe",
        server.http_addr(),
        mac.dashed()
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Offered { mac: m, boot_file, .. } if *m == mac && *boot_file == script_url)),
        "{seen:?}"
    );
    let p = server.progress().borrow().clone()[&mac].clone();
    assert!(
        p.offered && p.acked && p.script && p.kernel && p.initramfs && p.config,
        "{p:?}"
    );
    assert_eq!(p.address, Some(link.ip(42)));
}

/// Proxy mode with a real PXE client: the site's DHCP server (busybox `udhcpd`) leases the
/// address, our proxyDHCP only adds the boot file, and QEMU's iPXE ROM merges the two as
/// PXE 2.1 clients do (ipxe/ipxe `src/net/udp/dhcp.c`: the ProxyDHCP offer is kept beside the
/// address offer). `udhcpc` cannot show this (see docs/netboot.md, Limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_ipxe_boots_through_proxy_dhcp_beside_the_site_server() {
    if !require(&["ip", "qemu-system-x86_64", "sha256sum", "busybox"]) {
        return;
    }
    let payload = payload_dir();
    if !payload_present(&payload) {
        return;
    }
    let link = Link::new();
    let tap = bridge_and_tap(&link);
    let site = tempfile::tempdir().unwrap();
    let conf = site.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start {}\nend {}\ninterface {}\nlease_file {}\npidfile {}\nopt subnet 255.255.255.0\nopt router {}\n",
            link.ip(100),
            link.ip(110),
            link.host_if,
            site.path().join("leases").display(),
            site.path().join("udhcpd.pid").display(),
            link.server_ip(),
        ),
    )
    .unwrap();
    std::fs::write(site.path().join("leases"), b"").unwrap();

    let mac: MacAddr = MAC.parse().unwrap();
    let cfg = ServerConfig::builder(link.server_ip())
        .interface(link.host_if.clone())
        .mode(DhcpMode::Proxy)
        .ports(Ports {
            http: 0,
            ..Ports::default()
        })
        .tftp_root(IPXE_DIR)
        .host(host(mac, None, &payload))
        .build()
        .unwrap();
    let server = Server::start(cfg).await.unwrap();
    let _site = Vm(Command::new("busybox")
        .args(["udhcpd", "-f", "-a", "100"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = boot_vm(&link, &tap, &server).await;

    // The proxy offered no address, only the script URL; the address came from the site
    // server and was learned from the client's REQUEST; the config went to it.
    let script_url = format!(
        "http://{}/boot/{}/script.ipxe",
        server.http_addr(),
        mac.dashed()
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Offered { mac: m, address: None, boot_file } if *m == mac && *boot_file == script_url)),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::Offered {
                address: Some(_),
                ..
            }
        )),
        "the proxy handed out an address: {seen:?}"
    );
    let learned = seen
        .iter()
        .find_map(|e| match e {
            Event::AddressLearned { mac: m, address } if *m == mac => Some(*address),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no address learned: {seen:?}"));
    assert!((100..=110).contains(&learned.octets()[3]), "{learned}");
    let p = server.progress().borrow().clone()[&mac].clone();
    assert!(p.script && p.kernel && p.initramfs && p.config, "{p:?}");
    assert_eq!(p.address, Some(learned));
}
