//! Real DHCP, TFTP and HTTP clients against the server, in a network namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use netboot::{
    Arch, DhcpMode, Event, FullDhcp, Host, MacAddr, Ports, Server, ServerConfig, ServerHandle,
};
use tokio::sync::broadcast;

use crate::netns::{Link, require};

pub const IPXE_DIR: &str = "/usr/lib/ipxe";
const DECLARED: &str = "52:54:00:d1:00:01";
const STRANGER: &str = "52:54:00:d1:00:99";
pub const CONFIG: &[u8] =
    b"version: v1alpha1\nmachine:\n  type: worker\n  token: netboot-test-secret-token\n";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("kernel");
        let initramfs = dir.path().join("initramfs");
        std::fs::write(
            &kernel,
            (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(&initramfs, b"initramfs payload").unwrap();
        Fixture {
            dir,
            kernel,
            initramfs,
        }
    }

    pub fn host(&self, mac: &str, address: Option<Ipv4Addr>) -> Host {
        Host {
            name: "metal-1".into(),
            mac: mac.parse().unwrap(),
            address,
            arch: Arch::Amd64,
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            cmdline: vec!["talos.platform=metal".into(), "console=ttyS0".into()],
            config: Arc::new(CONFIG.to_vec().into()),
        }
    }

    /// A udhcpc event script that writes its environment to `out` when bound.
    fn dhcp_script(&self) -> PathBuf {
        let path = self.dir.path().join("udhcpc.sh");
        std::fs::write(
            &path,
            "#!/bin/sh\n[ \"$1\" = bound ] && env > \"$LEASE_OUT\"\nexit 0\n",
        )
        .unwrap();
        crate::netns::run(&["chmod", "+x", path.to_str().unwrap()]);
        path
    }
}

fn ports() -> Ports {
    Ports {
        http: 0,
        ..Ports::default()
    }
}

/// Run busybox udhcpc in the namespace; the lease's variables, or None when it got none.
fn udhcpc(link: &Link, fx: &Fixture, extra: &[&str]) -> Option<BTreeMap<String, String>> {
    let script = fx.dhcp_script();
    let out = fx.dir.path().join(format!("lease-{}", rand_suffix()));
    let env = format!("LEASE_OUT={}", out.display());
    let mut args = vec![
        "env",
        &env,
        "busybox",
        "udhcpc",
        "-f",
        "-q",
        "-n",
        "-t",
        "3",
        "-T",
        "1",
        "-i",
        &link.client_if,
        "-s",
    ];
    let script = script.to_str().unwrap().to_owned();
    args.push(&script);
    args.extend_from_slice(extra);
    let status = link.exec(&args).status;
    let text = std::fs::read_to_string(&out).ok()?;
    assert!(status.success(), "udhcpc wrote a lease but failed");
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// `curl` from the namespace: (status, body).
pub fn curl(link: &Link, url: &str) -> (u16, Vec<u8>) {
    let out = link.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let mut body = out.stdout;
    let pos = body.iter().rposition(|&b| b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&body[pos + 1..]).parse().unwrap();
    body.truncate(pos);
    (code, body)
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

async fn start(
    link: &Link,
    fx: &Fixture,
    mode: DhcpMode,
    address: Option<Ipv4Addr>,
) -> ServerHandle {
    let cfg = ServerConfig::builder(link.server_ip())
        .interface(link.host_if.clone())
        .mode(mode)
        .ports(ports())
        .tftp_root(IPXE_DIR)
        .host(fx.host(DECLARED, address))
        .build()
        .unwrap();
    Server::start(cfg).await.unwrap()
}

fn assert_refused_elsewhere(link: &Link, base: &str, mac: &MacAddr) {
    // Another MAC (declared or not) and a malformed one: 404.
    let stranger: MacAddr = STRANGER.parse().unwrap();
    assert_eq!(
        curl(link, &format!("{base}/config/{}", stranger.dashed())).0,
        404
    );
    assert_eq!(curl(link, &format!("{base}/config/not-a-mac")).0, 404);
    assert_eq!(
        curl(
            link,
            &format!("{base}/boot/{}/script.ipxe", stranger.dashed())
        )
        .0,
        404
    );
    // The right MAC from the wrong address: 403.
    link.set_addr(link.ip(99));
    let (code, body) = curl(link, &format!("{base}/config/{}", mac.dashed()));
    assert_eq!(code, 403);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_serves_real_udhcpc_tftp_and_curl() {
    if !require(&[
        "ip",
        "busybox",
        "tftp",
        "curl",
        "ls /usr/lib/ipxe/ipxe.efi >/dev/null; true",
    ]) {
        return;
    }
    assert!(
        Path::new(IPXE_DIR).join("ipxe.efi").is_file(),
        "Debian's ipxe package is missing"
    );
    let fx = Fixture::new();
    let link = Link::new();
    let mut full = FullDhcp::with_prefix(24).unwrap();
    full.router = Some(link.ip(254));
    full.dns = vec![link.ip(53)];
    let server = start(&link, &fx, DhcpMode::Full(full), Some(link.ip(21))).await;
    let mut events = server.events();
    let base = format!("http://{}", server.http_addr());
    let mac: MacAddr = DECLARED.parse().unwrap();

    // The declared MAC gets its fixed lease, router, DNS and the UEFI binary (option 93 = 7).
    link.set_mac(DECLARED);
    let lease = udhcpc(&link, &fx, &["-x", "0x5d:0007"]).expect("no lease for the declared MAC");
    assert_eq!(lease["ip"], link.ip(21).to_string());
    assert_eq!(lease["subnet"], "255.255.255.0");
    assert_eq!(lease["router"], link.ip(254).to_string());
    assert_eq!(lease["dns"], link.ip(53).to_string());
    assert_eq!(lease["boot_file"], "ipxe.efi");
    assert_eq!(lease["siaddr"], link.server_ip().to_string());
    assert_eq!(lease["serverid"], link.server_ip().to_string());
    // BIOS firmware (no option 93) gets undionly.kpxe; iPXE (user class) gets the script URL.
    assert_eq!(
        udhcpc(&link, &fx, &[]).unwrap()["boot_file"],
        "undionly.kpxe"
    );
    let ipxe = udhcpc(&link, &fx, &["-x", "0x4d:69505845"]).unwrap();
    assert_eq!(
        ipxe["boot_file"],
        format!("{base}/boot/{}/script.ipxe", mac.dashed())
    );

    // Another MAC gets nothing.
    link.set_mac(STRANGER);
    assert!(
        udhcpc(&link, &fx, &[]).is_none(),
        "an undeclared MAC got a lease"
    );
    let seen = drain(&mut events);
    assert!(seen.contains(&Event::IgnoredMac {
        mac: STRANGER.parse().unwrap()
    }));
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Offered { mac, .. } if mac.to_string() == STRANGER))
    );

    // TFTP (tftp-hpa): the iPXE binary byte for byte; nothing outside the root.
    link.set_mac(DECLARED);
    link.set_addr(link.ip(21));
    let got = fx.dir.path().join("ipxe.efi");
    let server_ip = link.server_ip().to_string();
    let log = link.exec_ok(&[
        "tftp",
        "-v",
        "-m",
        "binary",
        &server_ip,
        "-c",
        "get",
        "ipxe.efi",
        got.to_str().unwrap(),
    ]);
    let want = std::fs::read(Path::new(IPXE_DIR).join("ipxe.efi")).unwrap();
    let have = std::fs::read(&got).unwrap();
    assert!(
        have == want,
        "tftp got {} bytes, want {}: {log}",
        have.len(),
        want.len()
    );
    let evil = fx.dir.path().join("passwd");
    let out = link.exec(&[
        "tftp",
        "-m",
        "binary",
        &server_ip,
        "-c",
        "get",
        "../../etc/passwd",
        evil.to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Error code 2"),
        "traversal not refused: {text}"
    );
    assert!(std::fs::read(&evil).map(|b| b.is_empty()).unwrap_or(true));

    // HTTP (curl): script, kernel, config; refusals.
    let (code, script) = curl(&link, &format!("{base}/boot/{}/script.ipxe", mac.dashed()));
    assert_eq!(code, 200);
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains(&format!("talos.config={base}/config/{}", mac.dashed())),
        "{script}"
    );
    assert!(
        script.contains("talos.platform=metal console=ttyS0"),
        "{script}"
    );
    let (code, kernel) = curl(&link, &format!("{base}/boot/{}/kernel", mac.dashed()));
    assert_eq!(code, 200);
    assert!(
        kernel == std::fs::read(&fx.kernel).unwrap(),
        "kernel differs ({} bytes)",
        kernel.len()
    );
    let (code, config) = curl(&link, &format!("{base}/config/{}", mac.dashed()));
    assert_eq!((code, config.as_slice()), (200, CONFIG));
    assert_refused_elsewhere(&link, &base, &mac);

    let progress = server.progress().borrow().clone();
    let p = &progress[&mac];
    assert!(
        p.offered && p.acked && p.tftp && p.script && p.kernel && p.config,
        "{p:?}"
    );
    assert!(!p.initramfs);
    tokio::time::timeout(Duration::from_secs(1), server.all_configs_fetched())
        .await
        .unwrap();
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a plain client sees of proxy mode. busybox `udhcpc` is no PXE client: it requests
/// the `yiaddr` of the first OFFER (busybox `networking/udhcp/dhcpc.c`) and cannot merge a
/// proxyDHCP's address-less OFFER into the site's lease, so the proxy's boot answers are
/// shown with QEMU's iPXE instead (`qemu.rs`, proxy mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_leaves_leases_to_the_site_server_and_learns_the_address() {
    if !require(&["ip", "busybox", "curl"]) {
        return;
    }
    let fx = Fixture::new();
    let link = Link::new();
    // The site's DHCP server: busybox udhcpd on the same link.
    let conf = fx.dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start {}\nend {}\ninterface {}\nlease_file {}\npidfile {}\nopt subnet 255.255.255.0\n",
            link.ip(100),
            link.ip(110),
            link.host_if,
            fx.dir.path().join("leases").display(),
            fx.dir.path().join("udhcpd.pid").display(),
        ),
    )
    .unwrap();
    std::fs::write(fx.dir.path().join("leases"), b"").unwrap();
    let server = start(&link, &fx, DhcpMode::Proxy, None).await;
    let _site = Child(
        std::process::Command::new("busybox")
            .args(["udhcpd", "-f", "-a", "100"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = server.events();
    let base = format!("http://{}", server.http_addr());
    let mac: MacAddr = DECLARED.parse().unwrap();

    // A plain DHCP client with the declared MAC: the site server leases, the proxy stays
    // quiet (it answers PXE clients only) but learns the address from the REQUEST.
    link.set_mac(DECLARED);
    let lease = udhcpc(&link, &fx, &[]).expect("the site server gave no lease");
    let leased: Ipv4Addr = lease["ip"].parse().unwrap();
    assert!((100..=110).contains(&leased.octets()[3]), "{leased}");
    assert_eq!(lease["serverid"], link.server_ip().to_string());
    assert!(
        !lease.contains_key("boot_file"),
        "proxy must not add to a non-PXE lease"
    );
    let seen = drain(&mut events);
    assert!(
        seen.contains(&Event::AddressLearned {
            mac,
            address: leased
        }),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Offered { .. })),
        "{seen:?}"
    );

    // An undeclared MAC: still leased by the site, ignored by the proxy.
    link.set_mac(STRANGER);
    assert!(udhcpc(&link, &fx, &[]).is_some());
    let seen = drain(&mut events);
    assert!(
        seen.contains(&Event::IgnoredMac {
            mac: STRANGER.parse().unwrap()
        }),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::AddressLearned { .. })),
        "{seen:?}"
    );

    // The config goes to the learned address only.
    link.set_mac(DECLARED);
    link.set_addr(leased);
    let (code, config) = curl(&link, &format!("{base}/config/{}", mac.dashed()));
    assert_eq!((code, config.as_slice()), (200, CONFIG));
    assert_refused_elsewhere(&link, &base, &mac);
}
