//! `pxe serve` end to end on the simulated lab: a metal worker declared beside the VM control
//! plane gets its fixed lease, script and machine config from the command, which then exits;
//! the config never reaches the disk in plaintext.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Repo;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0x00, 0x01];
const METAL_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal BOOTP/DHCP DISCOVER (RFC 2131 figure 1, option 53 = 1).
fn discover(xid: u32) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[28..34].copy_from_slice(&MAC);
    p.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    p.extend_from_slice(&[53, 1, 1]);
    p.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E']);
    p.push(255);
    p
}

/// GET `path` from `127.0.0.1:port` with the connection's source address `from`.
fn get(from: Ipv4Addr, port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut s: std::net::TcpStream = sock.into();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Files below `dir` holding `needle` (unreadable entries and files over 64 MiB skipped;
/// `skip` directories are not entered).
fn files_containing(
    dir: &std::path::Path,
    needle: &[u8],
    skip: &[std::path::PathBuf],
    hits: &mut Vec<std::path::PathBuf>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && !skip.contains(&path) {
            files_containing(&path, needle, skip, hits);
        } else if meta.is_file()
            && meta.len() < 64 << 20
            && let Ok(data) = std::fs::read(&path)
            && data.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path);
        }
    }
}

#[test]
fn pxe_serve_boots_a_metal_worker_and_keeps_its_config_off_disk() {
    let repo = Repo::copy(
        "single-node",
        &["homelab.yaml", "secrets.enc.yaml", "demo-age-key.txt"],
    );
    repo.edit(
        "      ip: ${secret:network.node_ip}\n",
        "      ip: ${secret:network.node_ip}\n  metal:\n    - name: metal-1\n      mac: \"52:54:00:aa:00:01\"\n      role: worker\n      install_disk: /dev/nvme0n1\n      ip: 127.0.0.21\n",
    );
    repo.up_ok(&[]);

    let tftp_root = repo.dir.path().join("ipxe");
    std::fs::create_dir(&tftp_root).unwrap();
    std::fs::write(tftp_root.join("ipxe.efi"), b"not really ipxe").unwrap();
    let (dhcp, client, tftp, http) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_port(),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args([
            "pxe",
            "serve",
            "--simulate",
            "--mode",
            "full",
            "--address",
            "127.0.0.1",
        ])
        .args([
            "--dhcp-port",
            &dhcp.to_string(),
            "--dhcp-client-port",
            &client.to_string(),
        ])
        .args([
            "--tftp-port",
            &tftp.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .arg("--ipxe-dir")
        .arg(&tftp_root)
        .args(["-o", "json", "-c"])
        .arg(repo.config())
        .current_dir(repo.dir.path())
        .env("HOME", repo.dir.path().join("home"))
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Option<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut child = Kill(Some(child));

    // Wait for HTTP to listen (the kernel and initramfs come from the simulated factory first).
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        if let Ok(Some(status)) = child.0.as_mut().unwrap().try_wait() {
            let out = child.0.take().unwrap().wait_with_output().unwrap();
            panic!(
                "pxe serve exited {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pxe serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A DHCP DISCOVER from the machine's address (on loopback the reply comes back to the
    // sender): its fixed lease and, as it says it is iPXE, its script URL.
    // Like a real client it sends again when no offer comes (the DHCP socket may open after
    // the HTTP one, and a loaded machine may be slow to answer).
    let udp = UdpSocket::bind((METAL_IP, client)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 1500];
    let mut tries = 0;
    let n = loop {
        tries += 1;
        udp.send_to(&discover(0x1234_5678), ("127.0.0.1", dhcp))
            .unwrap();
        match udp.recv_from(&mut buf) {
            Ok((n, _)) => break n,
            Err(e) if tries < 20 => eprintln!("no DHCP offer yet ({e}); sending again"),
            Err(e) => panic!("no DHCP offer after {tries} DISCOVERs: {e}"),
        }
    };
    drop(udp);
    let reply = &buf[..n];
    assert_eq!(reply[0], 2, "not a BOOTREPLY");
    assert_eq!(&reply[4..8], &0x1234_5678u32.to_be_bytes());
    assert_eq!(
        Ipv4Addr::new(reply[16], reply[17], reply[18], reply[19]),
        METAL_IP
    );
    let file = String::from_utf8_lossy(&reply[108..236])
        .trim_end_matches('\0')
        .to_owned();
    let script_url = format!("http://127.0.0.1:{http}/boot/52-54-00-aa-00-01/script.ipxe");
    assert_eq!(file, script_url);

    // Refusals: the right MAC from another address, another MAC.
    let (code, _) = get(Ipv4Addr::LOCALHOST, http, "/config/52-54-00-aa-00-01");
    assert_eq!(code, 403);
    let (code, _) = get(METAL_IP, http, "/config/52-54-00-aa-00-02");
    assert_eq!(code, 404);

    // The simulated machine boots: firmware DHCP and TFTP, iPXE DHCP, script, kernel,
    // initramfs, and the kernel's config fetch.
    let machine = homelab_sim::metal::MetalMachine {
        mac: MAC,
        nic: METAL_IP,
        dhcp_server: SocketAddr::from(([127, 0, 0, 1], dhcp)),
        client_port: client,
        tftp_port: tftp,
        arch: 7,
    };
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(machine.boot())
        .unwrap();
    assert_eq!(report.address, METAL_IP);
    assert_eq!(report.firmware_boot_file, "ipxe.efi");
    assert_eq!(report.tftp_bytes, b"not really ipxe".len() as u64);
    assert_eq!(report.script_url, script_url);
    assert!(report.kernel_bytes > 0 && report.initramfs_bytes > 0);
    assert!(
        report.cmdline.contains("talos.platform=metal"),
        "{}",
        report.cmdline
    );
    assert!(
        report.cmdline.ends_with(&format!(
            "talos.config=http://127.0.0.1:{http}/config/52-54-00-aa-00-01"
        )),
        "{}",
        report.cmdline
    );
    let config =
        String::from_utf8(report.config.as_ref().expect("no config fetched").to_vec()).unwrap();
    let mc = talos_api::config::MachineConfig::from_yaml(&config, "served").unwrap();
    mc.validate().unwrap();
    let v1 = mc.v1alpha1().unwrap();
    assert_eq!(v1["machine"]["type"].as_str(), Some("worker"));
    assert_eq!(
        v1["machine"]["install"]["disk"].as_str(),
        Some("/dev/nvme0n1")
    );
    assert!(
        v1["machine"]["install"]["image"]
            .as_str()
            .unwrap()
            .contains("/metal-installer/"),
        "{config}"
    );
    assert_eq!(v1["cluster"]["clusterName"].as_str(), Some("homelab"));
    let token = v1["machine"]["token"].as_str().unwrap().to_owned();

    // Every declared machine has its config: the command ends by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "pxe serve did not stop after the last config"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for kind in [
        "offered",
        "script-fetched",
        "config-refused",
        "config-fetched",
    ] {
        assert!(
            events.iter().any(|e| e["event"] == kind),
            "no {kind} in {events:?}"
        );
    }

    // No plaintext machine config on disk: neither its token nor its text, anywhere in the
    // repository (the cache with the kernel and initramfs included), nor its text in the
    // temporary directory.
    // `.homelab/sim` is skipped: it is the simulated machines' own storage (the VM control
    // plane keeps its applied config there, as a real node keeps it on its disk).
    let skip = [repo.dir.path().join(".homelab/sim")];
    let mut hits = Vec::new();
    files_containing(repo.dir.path(), token.as_bytes(), &skip, &mut hits);
    files_containing(repo.dir.path(), b"machine:\n", &skip, &mut hits);
    files_containing(&std::env::temp_dir(), config.as_bytes(), &skip, &mut hits);
    assert!(
        hits.is_empty(),
        "plaintext machine config on disk: {hits:?}"
    );
}

#[test]
fn check_points_at_a_bad_metal_entry() {
    let repo = Repo::copy(
        "single-node",
        &["homelab.yaml", "secrets.enc.yaml", "demo-age-key.txt"],
    );
    repo.edit(
        "      ip: ${secret:network.node_ip}\n",
        "      ip: ${secret:network.node_ip}\n  metal:\n    - name: metal-1\n      mac: \"52:54:00:aa:00\"\n      role: worker\n",
    );
    let line = std::fs::read_to_string(repo.config())
        .unwrap()
        .lines()
        .position(|l| l.contains("52:54:00:aa:00"))
        .unwrap()
        + 1;
    let out = repo.cli(&["check", "--offline"]);
    assert_eq!(out.status.code(), Some(1));
    let text = crate::common::flat(&out.stderr);
    assert!(
        text.contains("invalid MAC address `52:54:00:aa:00`"),
        "{text}"
    );
    assert!(text.contains(&format!("homelab.yaml:{line}:")), "{text}");
}
