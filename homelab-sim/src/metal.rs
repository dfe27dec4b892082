//! A simulated bare-metal machine that boots over the network the way a real one does:
//! its firmware's PXE client (DHCP DISCOVER/REQUEST with option 93 and vendor class
//! `PXEClient`, then a TFTP read of the boot file), then iPXE (DHCP again with user class
//! `iPXE`, the script over HTTP, the kernel and initramfs it names), then the booted Talos
//! kernel fetching the `talos.config=` URL of its command line.
//!
//! References: the PXE 2.1 specification (client side of DHCP and TFTP), RFC 2131 (the
//! DISCOVER/OFFER/REQUEST/ACK exchange), RFC 1350 and RFC 2347-2349 (TFTP with options), the
//! iPXE script commands `kernel` and `initrd` (ipxe/ipxe, src/hci/commands/image_cmd.c), and
//! Talos's metal platform reading `talos.config=` from /proc/cmdline
//! (siderolabs/talos, internal/app/machined/pkg/runtime/v1alpha1/platform/metal/metal.go,
//! `Configuration`).
//!
//! On loopback, each machine's own loopback address stands in for its NIC: its DHCP
//! packets leave from it (the server answers the sender), and after the lease every
//! connection starts from the leased address, which is what the server checks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use zeroize::Zeroizing;

/// Why a simulated boot failed, and at which stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetalBootError {
    /// A stage did not complete.
    #[error("{stage}: {message}")]
    Stage {
        /// DHCP, TFTP, script, kernel, initramfs or config.
        stage: &'static str,
        /// What happened.
        message: String,
    },
}

impl MetalBootError {
    /// The stage that failed.
    pub fn stage(&self) -> &'static str {
        match self {
            MetalBootError::Stage { stage, .. } => stage,
        }
    }
}

fn fail(stage: &'static str, message: impl std::fmt::Display) -> MetalBootError {
    MetalBootError::Stage {
        stage,
        message: message.to_string(),
    }
}

/// One machine on the boot network.
#[derive(Debug, Clone)]
pub struct MetalMachine {
    /// Its NIC's MAC address.
    pub mac: [u8; 6],
    /// The loopback address standing in for its NIC.
    pub nic: Ipv4Addr,
    /// Where the boot server's DHCP listens.
    pub dhcp_server: SocketAddr,
    /// The DHCP client port (68 on a real network).
    pub client_port: u16,
    /// The TFTP port of the server named in the offer (69 on a real network).
    pub tftp_port: u16,
    /// Option 93 its firmware sends (7 = x86-64 UEFI).
    pub arch: u16,
}

/// What a boot fetched.
#[derive(Debug)]
pub struct BootReport {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The firmware's boot file (from the first offer).
    pub firmware_boot_file: String,
    /// Bytes of the boot file read over TFTP.
    pub tftp_bytes: u64,
    /// The iPXE script URL (from the second offer).
    pub script_url: String,
    /// The script text.
    pub script: String,
    /// Kernel size.
    pub kernel_bytes: usize,
    /// Initramfs size.
    pub initramfs_bytes: usize,
    /// The kernel command line the script passes.
    pub cmdline: String,
    /// The machine config the booted kernel fetched (kept in memory); `None` when the
    /// command line has no `talos.config=` (or `talos.config=none`): Talos then comes up in
    /// maintenance mode (`Metal.Configuration` answers `ErrNoConfigSource`).
    pub config: Option<Zeroizing<Vec<u8>>>,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl MetalMachine {
    /// Power on: firmware PXE, TFTP, iPXE, kernel, config.
    pub async fn boot(&self) -> Result<BootReport, MetalBootError> {
        let sock = UdpSocket::bind((self.nic, self.client_port))
            .await
            .map_err(|e| {
                fail(
                    "DHCP",
                    format!("cannot bind {}:{}: {e}", self.nic, self.client_port),
                )
            })?;
        // Firmware: PXE client.
        let (address, server, firmware_boot_file) = self.dhcp(&sock, false).await?;
        let tftp_bytes = tftp_read(
            address,
            SocketAddr::from((server, self.tftp_port)),
            &firmware_boot_file,
        )
        .await?;
        // iPXE: DHCP again, as iPXE, for the script URL.
        let (again, _, script_url) = self.dhcp(&sock, true).await?;
        if again != address {
            return Err(fail(
                "DHCP",
                format!("iPXE got {again}, the firmware got {address}"),
            ));
        }
        let script = http_get(address, &script_url, "script").await?;
        let script = String::from_utf8(script.to_vec()).map_err(|_| fail("script", "not UTF-8"))?;
        if !script.starts_with("#!ipxe") {
            return Err(fail("script", "no #!ipxe line"));
        }
        let mut kernel_line = None;
        let mut initrd_url = None;
        for line in script.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("kernel") => kernel_line = Some(words.map(str::to_owned).collect::<Vec<_>>()),
                Some("initrd") => {
                    initrd_url = words.rfind(|w| !w.starts_with("--")).map(str::to_owned)
                }
                _ => {}
            }
        }
        let kernel_line = kernel_line.ok_or_else(|| fail("script", "no kernel line"))?;
        let (kernel_url, args) = kernel_line
            .split_first()
            .ok_or_else(|| fail("script", "empty kernel line"))?;
        let initrd_url = initrd_url.ok_or_else(|| fail("script", "no initrd line"))?;
        let kernel = http_get(address, kernel_url, "kernel").await?;
        let initramfs = http_get(address, &initrd_url, "initramfs").await?;
        let cmdline = args.join(" ");
        // The booted kernel (Talos's metal platform, `Metal.Configuration`) takes the first
        // `talos.config=`; without one, or with `none`, there is no config source.
        let config_url = args
            .iter()
            .find_map(|a| a.strip_prefix("talos.config="))
            .filter(|u| *u != "none");
        let config = match config_url {
            Some(url) => Some(http_get(address, url, "config").await?),
            None => None,
        };
        Ok(BootReport {
            address,
            firmware_boot_file,
            tftp_bytes,
            script_url,
            script,
            kernel_bytes: kernel.len(),
            initramfs_bytes: initramfs.len(),
            cmdline,
            config,
        })
    }

    fn request(&self, kind: MessageType, ipxe: bool) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new(z, z, z, z, &self.mac);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ClassIdentifier(
            format!("PXEClient:Arch:{:05}:UNDI:003016", self.arch).into_bytes(),
        ));
        o.insert(DhcpOption::ClientSystemArchitecture(self.arch.into()));
        if ipxe {
            o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        }
        m
    }

    /// DISCOVER, OFFER, REQUEST, ACK: (address, server, boot file).
    async fn dhcp(
        &self,
        sock: &UdpSocket,
        ipxe: bool,
    ) -> Result<(Ipv4Addr, Ipv4Addr, String), MetalBootError> {
        let discover = self.request(MessageType::Discover, ipxe);
        let offer = exchange(sock, self.dhcp_server, &discover, MessageType::Offer).await?;
        let server = match offer.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => *ip,
            _ => return Err(fail("DHCP", "offer without a server identifier")),
        };
        let mut request = self.request(MessageType::Request, ipxe);
        request.set_xid(discover.xid());
        request
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        request
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(server));
        let ack = exchange(sock, self.dhcp_server, &request, MessageType::Ack).await?;
        if ack.yiaddr() != offer.yiaddr() || ack.yiaddr().is_unspecified() {
            return Err(fail(
                "DHCP",
                format!(
                    "ACK for {} after an offer of {}",
                    ack.yiaddr(),
                    offer.yiaddr()
                ),
            ));
        }
        let file = ack
            .fname_str()
            .and_then(Result::ok)
            .map(|f| f.trim_end_matches('\0').to_owned())
            .filter(|f| !f.is_empty())
            .ok_or_else(|| fail("DHCP", "no boot file in the ACK"))?;
        Ok((ack.yiaddr(), ack.siaddr(), file))
    }
}

async fn exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    msg: &Message,
    want: MessageType,
) -> Result<Message, MetalBootError> {
    let bytes = msg.to_vec().map_err(|e| fail("DHCP", e))?;
    let mut buf = vec![0u8; 1500];
    // Like a PXE ROM: retransmit a few times, then give up.
    for _ in 0..4 {
        sock.send_to(&bytes, server)
            .await
            .map_err(|e| fail("DHCP", e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        {
            let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            if reply.xid() == msg.xid() && reply.opts().msg_type() == Some(want) {
                return Ok(reply);
            }
            if reply.xid() == msg.xid() && reply.opts().msg_type() == Some(MessageType::Nak) {
                return Err(fail("DHCP", "NAK"));
            }
        }
    }
    Err(fail("DHCP", format!("no {want:?} from {server}")))
}

/// Read `file` over TFTP from `from` (octet, blksize 1432, tsize), as PXE ROMs do.
async fn tftp_read(from: Ipv4Addr, server: SocketAddr, file: &str) -> Result<u64, MetalBootError> {
    let sock = UdpSocket::bind((from, 0))
        .await
        .map_err(|e| fail("TFTP", e))?;
    let mut rrq = vec![0, 1];
    for part in [file, "octet", "blksize", "1432", "tsize", "0"] {
        rrq.extend_from_slice(part.as_bytes());
        rrq.push(0);
    }
    sock.send_to(&rrq, server)
        .await
        .map_err(|e| fail("TFTP", e))?;
    let mut blksize = 512usize;
    let mut expected: u16 = 1;
    let mut total = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
            .await
            .map_err(|_| fail("TFTP", "timed out"))?
            .map_err(|e| fail("TFTP", e))?;
        if n < 4 {
            return Err(fail("TFTP", "short packet"));
        }
        match u16::from_be_bytes([buf[0], buf[1]]) {
            6 => {
                // OACK: take the agreed block size, acknowledge block 0.
                let fields: Vec<String> = buf[2..n]
                    .split(|&b| b == 0)
                    .map(|f| String::from_utf8_lossy(f).to_ascii_lowercase())
                    .collect();
                for pair in fields.chunks(2) {
                    if let [k, v] = pair
                        && k == "blksize"
                    {
                        blksize = v.parse().map_err(|_| fail("TFTP", "bad blksize"))?;
                    }
                }
                sock.send_to(&[0, 4, 0, 0], peer)
                    .await
                    .map_err(|e| fail("TFTP", e))?;
            }
            3 => {
                let block = u16::from_be_bytes([buf[2], buf[3]]);
                sock.send_to(&[0, 4, buf[2], buf[3]], peer)
                    .await
                    .map_err(|e| fail("TFTP", e))?;
                if block != expected {
                    continue;
                }
                total += (n - 4) as u64;
                expected = expected.wrapping_add(1);
                if n - 4 < blksize {
                    return Ok(total);
                }
            }
            5 => {
                let msg = String::from_utf8_lossy(&buf[4..n]);
                return Err(fail(
                    "TFTP",
                    format!("server error: {}", msg.trim_end_matches('\0')),
                ));
            }
            op => return Err(fail("TFTP", format!("unexpected opcode {op}"))),
        }
    }
}

/// `GET url` over HTTP/1.0 from `from`; the body of a 200 answer.
async fn http_get(
    from: Ipv4Addr,
    url: &str,
    stage: &'static str,
) -> Result<Zeroizing<Vec<u8>>, MetalBootError> {
    let u = url::Url::parse(url).map_err(|e| fail(stage, format!("{url}: {e}")))?;
    if u.scheme() != "http" {
        return Err(fail(stage, format!("{url}: not http")));
    }
    let host: Ipv4Addr = u
        .host_str()
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| fail(stage, format!("{url}: host is not an IPv4 address")))?;
    let port = u.port().unwrap_or(80);
    let sock = TcpSocket::new_v4().map_err(|e| fail(stage, e))?;
    sock.bind(SocketAddr::from((from, 0)))
        .map_err(|e| fail(stage, e))?;
    let mut stream = tokio::time::timeout(TIMEOUT, sock.connect(SocketAddr::from((host, port))))
        .await
        .map_err(|_| fail(stage, "connect timed out"))?
        .map_err(|e| fail(stage, e))?;
    let req = format!("GET {} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n", u.path());
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| fail(stage, e))?;
    let mut raw = Zeroizing::new(Vec::new());
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| fail(stage, "read timed out"))?
        .map_err(|e| fail(stage, e))?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail(stage, "no HTTP header"))?;
    let status = raw
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("???");
    if status != "200" {
        return Err(fail(stage, format!("GET {url}: HTTP {status}")));
    }
    Ok(Zeroizing::new(raw[head_end + 4..].to_vec()))
}
