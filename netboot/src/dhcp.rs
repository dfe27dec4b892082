//! DHCP: a full server with one fixed lease per declared MAC, or a PXE proxyDHCP server that
//! adds boot options beside the site's own DHCP server. Only declared MACs get answers.
//!
//! References: RFC 2131 (message flow, where replies go), RFC 2132 (options), RFC 4578
//! (option 93, client architecture; option 97, machine identifier), the Intel PXE 2.1
//! specification (proxyDHCP on ports 67 and 4011, option 43 sub-option 6 "discovery
//! control", option 60 "PXEClient"), RFC 3004 (user class, option 77; iPXE sends the bare
//! string `iPXE`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use dhcproto::v4::{self, DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;

use crate::Error;
use crate::config::{Arch, DhcpMode, Host, MacAddr, ServerConfig};
use crate::events::{Event, Tracker};

/// Which socket a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The DHCP server port (67).
    Dhcp,
    /// The PXE boot-server port (4011, proxy mode).
    Proxy,
}

/// The server's answer to one request: maybe a reply, and what to record.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) reply: Option<Message>,
    pub(crate) events: Vec<Event>,
}

/// PXE option 43 with sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: "a boot file name is in
/// the offer: download it, no boot-server discovery or menu" (PXE 2.1, table 2-1).
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

fn is_ipxe(req: &Message) -> bool {
    match req.opts().get(OptionCode::UserClass) {
        // iPXE sends the bare string; RFC 3004 clients send length-prefixed entries.
        Some(DhcpOption::UserClass(data)) => {
            data.as_slice() == b"iPXE" || rfc3004_entries(data).any(|e| e == b"iPXE")
        }
        _ => false,
    }
}

fn rfc3004_entries(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let len = usize::from(len);
        if len == 0 || rest.len() < len {
            return None;
        }
        let (entry, tail) = rest.split_at(len);
        data = tail;
        Some(entry)
    })
}

fn is_pxe_client(req: &Message) -> bool {
    matches!(req.opts().get(OptionCode::ClassIdentifier),
        Some(DhcpOption::ClassIdentifier(id)) if id.starts_with(b"PXEClient"))
}

/// The option 93 value the client sent, if any.
fn client_arch(req: &Message) -> Option<u16> {
    match req.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    }
}

/// What to boot: the per-MAC script URL for iPXE, else the first-stage binary for the
/// client's firmware (RFC 4578 section 2.1: 0 = BIOS, 7 and 9 = x86-64 UEFI, 11 = ARM64 UEFI).
pub(crate) fn boot_file(cfg: &ServerConfig, host: &Host, req: &Message, http_port: u16) -> String {
    if is_ipxe(req) {
        return format!(
            "{}/boot/{}/script.ipxe",
            cfg.http_base(http_port),
            host.mac.dashed()
        );
    }
    let files = &cfg.boot_files;
    match client_arch(req) {
        None | Some(0) => files.bios.clone(),
        Some(7 | 9) => files.uefi_x64.clone(),
        Some(11) => files.uefi_arm64.clone(),
        // Anything else: the UEFI binary for the machine's declared architecture.
        Some(_) => match host.arch {
            Arch::Arm64 => files.uefi_arm64.clone(),
            _ => files.uefi_x64.clone(),
        },
    }
}

fn base_reply(req: &Message, kind: MessageType, server_ip: Ipv4Addr) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(req.chaddr())
        .set_siaddr(server_ip);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server_ip));
    m
}

fn add_boot(
    m: &mut Message,
    cfg: &ServerConfig,
    host: &Host,
    req: &Message,
    http_port: u16,
) -> String {
    let file = boot_file(cfg, host, req, http_port);
    m.set_fname_str(&file);
    m.opts_mut().insert(DhcpOption::TFTPServerName(
        cfg.server_ip.to_string().into_bytes(),
    ));
    m.opts_mut()
        .insert(DhcpOption::BootfileName(file.clone().into_bytes()));
    file
}

fn add_pxe(m: &mut Message, req: &Message) {
    m.opts_mut()
        .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    m.opts_mut()
        .insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    if let Some(DhcpOption::ClientMachineIdentifier(guid)) =
        req.opts().get(OptionCode::ClientMachineIdentifier)
    {
        m.opts_mut()
            .insert(DhcpOption::ClientMachineIdentifier(guid.clone()));
    }
}

fn add_lease(m: &mut Message, cfg: &ServerConfig, host: &Host) {
    let DhcpMode::Full(full) = &cfg.mode else {
        return;
    };
    let opts = m.opts_mut();
    opts.insert(DhcpOption::AddressLeaseTime(full.lease_secs));
    opts.insert(DhcpOption::SubnetMask(full.subnet_mask));
    if let Some(router) = full.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !full.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(full.dns.clone()));
    }
    opts.insert(DhcpOption::Hostname(host.name.clone()));
}

fn requested_ip(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => Some(req.ciaddr()),
    }
    .filter(|ip| !ip.is_unspecified())
}

fn server_id(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// The pure core: the reply (if any) to one request.
pub(crate) fn respond(cfg: &ServerConfig, http_port: u16, req: &Message, port: Port) -> Outcome {
    let mut out = Outcome::default();
    if req.opcode() != Opcode::BootRequest {
        return out;
    }
    let Some(mac) = MacAddr::from_chaddr(&req.chaddr()[..usize::from(req.hlen()).min(16)]) else {
        return out;
    };
    let Some(kind) = req.opts().msg_type() else {
        return out;
    };
    let Some(host) = cfg.host(&mac) else {
        if matches!(kind, MessageType::Discover | MessageType::Request) {
            out.events.push(Event::IgnoredMac { mac });
        }
        return out;
    };
    let ours = cfg.server_ip;
    match (&cfg.mode, port) {
        (DhcpMode::Full(_), Port::Dhcp) => {
            let Some(lease) = host.address else {
                return out;
            };
            match kind {
                MessageType::Discover => {
                    let mut m = base_reply(req, MessageType::Offer, ours);
                    m.set_yiaddr(lease);
                    add_lease(&mut m, cfg, host);
                    let file = add_boot(&mut m, cfg, host, req, http_port);
                    out.events.push(Event::Offered {
                        mac,
                        address: Some(lease),
                        boot_file: file,
                    });
                    out.reply = Some(m);
                }
                MessageType::Request => {
                    // RFC 2131 4.3.2: a REQUEST naming another server means our offer
                    // was declined; without a server id it is INIT-REBOOT/RENEWING.
                    if server_id(req).is_some_and(|id| id != ours) {
                        return out;
                    }
                    let requested = requested_ip(req);
                    if requested == Some(lease) {
                        let mut m = base_reply(req, MessageType::Ack, ours);
                        m.set_yiaddr(lease);
                        add_lease(&mut m, cfg, host);
                        add_boot(&mut m, cfg, host, req, http_port);
                        out.events.push(Event::Acked {
                            mac,
                            address: Some(lease),
                        });
                        out.reply = Some(m);
                    } else {
                        let mut m = base_reply(req, MessageType::Nak, ours);
                        // A NAK goes to a client that may believe it has an address:
                        // broadcast it (RFC 2131 4.1).
                        m.set_flags(req.flags().set_broadcast());
                        out.events.push(Event::Nacked { mac, requested });
                        out.reply = Some(m);
                    }
                }
                MessageType::Inform => {
                    let mut m = base_reply(req, MessageType::Ack, ours);
                    add_lease(&mut m, cfg, host);
                    m.opts_mut().remove(OptionCode::AddressLeaseTime);
                    add_boot(&mut m, cfg, host, req, http_port);
                    out.reply = Some(m);
                }
                _ => {}
            }
        }
        (DhcpMode::Full(_), Port::Proxy) => {}
        (DhcpMode::Proxy, Port::Dhcp) => match kind {
            MessageType::Discover if is_pxe_client(req) => {
                let mut m = base_reply(req, MessageType::Offer, ours);
                add_pxe(&mut m, req);
                let file = add_boot(&mut m, cfg, host, req, http_port);
                out.events.push(Event::Offered {
                    mac,
                    address: None,
                    boot_file: file,
                });
                out.reply = Some(m);
            }
            // The client accepting the site server's offer: learn its address.
            MessageType::Request => {
                if let Some(address) = requested_ip(req) {
                    out.events.push(Event::AddressLearned { mac, address });
                }
            }
            _ => {}
        },
        (DhcpMode::Proxy, Port::Proxy) => {
            if kind == MessageType::Request || kind == MessageType::Inform {
                let mut m = base_reply(req, MessageType::Ack, ours);
                add_pxe(&mut m, req);
                add_boot(&mut m, cfg, host, req, http_port);
                let address = Some(req.ciaddr()).filter(|ip| !ip.is_unspecified());
                if let Some(address) = address {
                    out.events.push(Event::AddressLearned { mac, address });
                }
                out.events.push(Event::Acked { mac, address });
                out.reply = Some(m);
            }
        }
    }
    out
}

/// Where a reply goes (RFC 2131 4.1): back to a client that already has an address (or to
/// the simulator's loopback socket), else broadcast to the client port, since a client
/// without an address cannot answer ARP for a unicast reply.
fn destination(cfg: &ServerConfig, src: SocketAddr) -> SocketAddr {
    match src {
        SocketAddr::V4(v4) if !v4.ip().is_unspecified() => src,
        _ => SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::BROADCAST,
            cfg.ports.dhcp_client,
        )),
    }
}

pub(crate) fn bind(cfg: &ServerConfig, port: u16) -> Result<UdpSocket, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::io("creating the DHCP socket", e))?;
    sock.set_reuse_address(true)
        .and_then(|()| sock.set_broadcast(true))
        .map_err(|e| Error::io("setting DHCP socket options", e))?;
    if let Some(iface) = &cfg.interface {
        sock.bind_device(Some(iface.as_bytes()))
            .map_err(|source| Error::BindDevice {
                interface: iface.clone(),
                hint: if source.kind() == std::io::ErrorKind::PermissionDenied {
                    " (needs root or CAP_NET_RAW)"
                } else {
                    ""
                },
                source,
            })?;
    }
    sock.bind(&addr.into())
        .map_err(|e| Error::bind("DHCP", addr, e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io("setting the DHCP socket non-blocking", e))?;
    UdpSocket::from_std(sock.into()).map_err(|e| Error::io("registering the DHCP socket", e))
}

/// Serve one DHCP socket until the task is dropped.
pub(crate) async fn serve(
    cfg: Arc<ServerConfig>,
    http_port: u16,
    sock: UdpSocket,
    port: Port,
    tracker: Arc<Tracker>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "DHCP receive failed");
                continue;
            }
        };
        let req = match Message::decode(&mut Decoder::new(&buf[..n])) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%src, error = %e, "ignoring a malformed DHCP packet");
                continue;
            }
        };
        let outcome = respond(&cfg, http_port, &req, port);
        for event in outcome.events {
            tracker.record(event);
        }
        let Some(reply) = outcome.reply else { continue };
        let dest = destination(&cfg, src);
        match reply.to_vec() {
            Ok(bytes) => {
                if let Err(e) = sock.send_to(&bytes, dest).await {
                    tracing::warn!(%dest, error = %e, "DHCP send failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "DHCP encode failed"),
        }
    }
}

/// Encode a request the way a client would (for the simulator and tests).
pub fn encode(msg: &Message) -> Option<Vec<u8>> {
    msg.to_vec().ok()
}

/// Decode a packet (for the simulator and tests).
pub fn decode(bytes: &[u8]) -> Option<Message> {
    Message::decode(&mut Decoder::new(bytes)).ok()
}

/// Re-exported packet types for clients (the simulator) built on this crate.
pub use v4::Message as DhcpMessage;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::FullDhcp;
    use dhcproto::v4::Architecture;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

    fn cfg(mode: DhcpMode) -> ServerConfig {
        ServerConfig::builder(Ipv4Addr::new(10, 9, 0, 1))
            .mode(mode)
            .tftp_root("/nonexistent")
            .host(Host {
                name: "metal-1".into(),
                mac: MacAddr(MAC),
                address: Some(Ipv4Addr::new(10, 9, 0, 21)),
                arch: Arch::Amd64,
                kernel: "/k".into(),
                initramfs: "/i".into(),
                cmdline: vec![],
                config: Arc::new(b"secret".to_vec().into()),
            })
            .build()
            .unwrap()
    }

    fn full() -> ServerConfig {
        let mut f = FullDhcp::with_prefix(24).unwrap();
        f.router = Some(Ipv4Addr::new(10, 9, 0, 254));
        f.dns = vec![Ipv4Addr::new(1, 1, 1, 1)];
        cfg(DhcpMode::Full(f))
    }

    fn msg(mac: [u8; 6], kind: MessageType, extra: &[DhcpOption]) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(7, z, z, z, z, &mac);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        // Through the wire format, as the server sees it.
        decode(&encode(&m).unwrap()).unwrap()
    }

    fn opt(m: &Message, code: OptionCode) -> Option<DhcpOption> {
        m.opts().get(code).cloned()
    }

    #[test]
    fn full_mode_offers_the_fixed_lease_with_router_dns_and_uefi_file() {
        let c = full();
        let req = msg(
            MAC,
            MessageType::Discover,
            &[DhcpOption::ClientSystemArchitecture(Architecture::from(7))],
        );
        let out = respond(&c, 8080, &req, Port::Dhcp);
        let r = out.reply.unwrap();
        assert_eq!(r.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(r.yiaddr(), Ipv4Addr::new(10, 9, 0, 21));
        assert_eq!(r.siaddr(), Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(r.xid(), 7);
        assert_eq!(r.fname_str().unwrap().unwrap(), "ipxe.efi");
        assert_eq!(
            opt(&r, OptionCode::SubnetMask),
            Some(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            opt(&r, OptionCode::Router),
            Some(DhcpOption::Router(vec![Ipv4Addr::new(10, 9, 0, 254)]))
        );
        assert_eq!(
            opt(&r, OptionCode::DomainNameServer),
            Some(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
                1, 1, 1, 1
            )]))
        );
        assert_eq!(
            opt(&r, OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 1)))
        );
        assert!(matches!(
            &out.events[..],
            [Event::Offered {
                address: Some(_),
                ..
            }]
        ));
    }

    #[test]
    fn option_93_and_user_class_pick_the_boot_file() {
        let c = full();
        let file = |extra: &[DhcpOption]| {
            let r = respond(
                &c,
                8080,
                &msg(MAC, MessageType::Discover, extra),
                Port::Dhcp,
            )
            .reply
            .unwrap();
            r.fname_str().unwrap().unwrap().to_owned()
        };
        assert_eq!(file(&[]), "undionly.kpxe");
        assert_eq!(
            file(&[DhcpOption::ClientSystemArchitecture(Architecture::from(0))]),
            "undionly.kpxe"
        );
        assert_eq!(
            file(&[DhcpOption::ClientSystemArchitecture(Architecture::from(9))]),
            "ipxe.efi"
        );
        assert_eq!(
            file(&[DhcpOption::ClientSystemArchitecture(Architecture::from(11))]),
            "ipxe-arm64.efi"
        );
        assert_eq!(
            file(&[
                DhcpOption::UserClass(b"iPXE".to_vec()),
                DhcpOption::ClientSystemArchitecture(Architecture::from(7))
            ]),
            "http://10.9.0.1:8080/boot/52-54-00-00-00-01/script.ipxe"
        );
        // RFC 3004 encoding of the same user class.
        assert_eq!(
            file(&[DhcpOption::UserClass(b"\x04iPXE".to_vec())]),
            "http://10.9.0.1:8080/boot/52-54-00-00-00-01/script.ipxe"
        );
    }

    #[test]
    fn undeclared_macs_get_nothing_in_either_mode() {
        for c in [full(), cfg(DhcpMode::Proxy)] {
            let pxe = DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007".to_vec());
            let out = respond(
                &c,
                80,
                &msg(OTHER, MessageType::Discover, &[pxe]),
                Port::Dhcp,
            );
            assert!(out.reply.is_none());
            assert_eq!(
                out.events,
                vec![Event::IgnoredMac {
                    mac: MacAddr(OTHER)
                }]
            );
        }
    }

    #[test]
    fn full_mode_request_ack_nak_and_other_server() {
        let c = full();
        let ours = DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 1));
        let ok = respond(
            &c,
            80,
            &msg(
                MAC,
                MessageType::Request,
                &[
                    ours.clone(),
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 0, 21)),
                ],
            ),
            Port::Dhcp,
        );
        let r = ok.reply.unwrap();
        assert_eq!(r.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(r.yiaddr(), Ipv4Addr::new(10, 9, 0, 21));
        assert_eq!(
            opt(&r, OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(3600))
        );
        let wrong = respond(
            &c,
            80,
            &msg(
                MAC,
                MessageType::Request,
                &[
                    ours,
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 0, 99)),
                ],
            ),
            Port::Dhcp,
        );
        assert_eq!(
            wrong.reply.unwrap().opts().msg_type(),
            Some(MessageType::Nak)
        );
        let theirs = respond(
            &c,
            80,
            &msg(
                MAC,
                MessageType::Request,
                &[
                    DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 2)),
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 0, 21)),
                ],
            ),
            Port::Dhcp,
        );
        assert!(theirs.reply.is_none());
    }

    #[test]
    fn proxy_mode_answers_pxe_clients_without_an_address_and_learns_it() {
        let c = cfg(DhcpMode::Proxy);
        let plain = respond(&c, 80, &msg(MAC, MessageType::Discover, &[]), Port::Dhcp);
        assert!(
            plain.reply.is_none(),
            "non-PXE clients are the site server's business"
        );
        let pxe = DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003016".to_vec());
        let out = respond(
            &c,
            80,
            &msg(
                MAC,
                MessageType::Discover,
                &[
                    pxe.clone(),
                    DhcpOption::ClientSystemArchitecture(Architecture::from(7)),
                    DhcpOption::ClientMachineIdentifier(vec![0, 1, 2]),
                ],
            ),
            Port::Dhcp,
        );
        let r = out.reply.unwrap();
        assert_eq!(r.opts().msg_type(), Some(MessageType::Offer));
        assert!(r.yiaddr().is_unspecified());
        assert_eq!(r.fname_str().unwrap().unwrap(), "ipxe.efi");
        assert_eq!(
            opt(&r, OptionCode::ClassIdentifier),
            Some(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            opt(&r, OptionCode::VendorExtensions),
            Some(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        assert_eq!(
            opt(&r, OptionCode::ClientMachineIdentifier),
            Some(DhcpOption::ClientMachineIdentifier(vec![0, 1, 2]))
        );
        assert_eq!(opt(&r, OptionCode::AddressLeaseTime), None);
        assert_eq!(opt(&r, OptionCode::SubnetMask), None);
        // The REQUEST to the site's server tells us the address.
        let seen = respond(
            &c,
            80,
            &msg(
                MAC,
                MessageType::Request,
                &[DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                    192, 168, 1, 50,
                ))],
            ),
            Port::Dhcp,
        );
        assert!(seen.reply.is_none());
        assert_eq!(
            seen.events,
            vec![Event::AddressLearned {
                mac: MacAddr(MAC),
                address: Ipv4Addr::new(192, 168, 1, 50)
            }]
        );
        // Port 4011: ACK with the boot file.
        let mut req = msg(MAC, MessageType::Request, &[pxe]);
        req.set_ciaddr(Ipv4Addr::new(192, 168, 1, 50));
        let ack = respond(&c, 80, &req, Port::Proxy).reply.unwrap();
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.fname_str().unwrap().unwrap(), "undionly.kpxe");
    }
}
