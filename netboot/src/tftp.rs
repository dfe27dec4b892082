//! A read-only TFTP server: RFC 1350 with the option extension (RFC 2347), `blksize`
//! (RFC 2348), `tsize` and `timeout` (RFC 2349). Each transfer gets its own socket (its
//! transfer ID); files are served only from below the root, symlinks included.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

use crate::events::{Event, Tracker};

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

const ERR_NOT_FOUND: u16 = 1;
const ERR_ACCESS: u16 = 2;
const ERR_ILLEGAL: u16 = 4;

const RETRIES: u32 = 5;

/// A parsed read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadRequest {
    pub(crate) file: String,
    pub(crate) mode: String,
    pub(crate) blksize: Option<u16>,
    pub(crate) tsize: bool,
    pub(crate) timeout: Option<u8>,
}

/// Why a request is refused, with the TFTP error code to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) message: String,
}

fn refuse(code: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Parse a request packet: RRQ with options, or a refusal for anything else.
pub(crate) fn parse_request(packet: &[u8]) -> Result<ReadRequest, Refusal> {
    if packet.len() < 4 {
        return Err(refuse(ERR_ILLEGAL, "short packet"));
    }
    let opcode = u16::from_be_bytes([packet[0], packet[1]]);
    match opcode {
        RRQ => {}
        WRQ => return Err(refuse(ERR_ACCESS, "this server is read-only")),
        _ => return Err(refuse(ERR_ILLEGAL, "expected a read request")),
    }
    let body = &packet[2..];
    if body.last() != Some(&0) {
        return Err(refuse(ERR_ILLEGAL, "unterminated request"));
    }
    let mut fields = body[..body.len() - 1]
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let file = fields.next().unwrap_or_default();
    let mode = fields.next().unwrap_or_default().to_ascii_lowercase();
    if file.is_empty() || !(mode == "octet" || mode == "netascii") {
        return Err(refuse(ERR_ILLEGAL, "bad file name or transfer mode"));
    }
    let mut req = ReadRequest {
        file,
        mode,
        blksize: None,
        tsize: false,
        timeout: None,
    };
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.to_ascii_lowercase().as_str() {
            // RFC 2348: 8..=65464 octets. Unknown or bad options are ignored (RFC 2347).
            "blksize" => {
                if let Ok(n) = value.parse::<u32>()
                    && n >= 8
                {
                    req.blksize = Some(u16::try_from(n.min(65464)).unwrap_or(65464));
                }
            }
            "tsize" => req.tsize = true,
            "timeout" => {
                if let Ok(n) = value.parse::<u8>()
                    && n >= 1
                {
                    req.timeout = Some(n);
                }
            }
            _ => {}
        }
    }
    Ok(req)
}

/// The file a request names below `root`. The name is checked lexically: no `..`, no
/// absolute path, no backslash or NUL, so a client cannot climb out. Symlinks inside the root
/// are the operator's own choice and are followed (Debian's `/usr/lib/ipxe/ipxe.efi` is a
/// link to `/boot/ipxe.efi`), as tftp-hpa does.
pub(crate) fn resolve(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let rel = name.trim_start_matches('/');
    if rel.contains('\\') || rel.contains('\0') {
        return Err(refuse(ERR_ACCESS, "illegal character in file name"));
    }
    let rel = Path::new(rel);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(refuse(ERR_ACCESS, "path outside the TFTP root"));
    }
    let full = root.join(rel);
    if !full.is_file() {
        return Err(refuse(ERR_NOT_FOUND, "file not found"));
    }
    Ok(full)
}

fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

/// Serve TFTP on `sock` until the task is dropped.
pub(crate) async fn serve(root: PathBuf, sock: UdpSocket, local_ip: IpAddr, tracker: Arc<Tracker>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "TFTP receive failed");
                continue;
            }
        };
        let packet = buf[..n].to_vec();
        let root = root.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            transfer(&root, &packet, peer, local_ip, &tracker).await;
        });
    }
}

async fn transfer(
    root: &Path,
    packet: &[u8],
    peer: SocketAddr,
    local_ip: IpAddr,
    tracker: &Tracker,
) {
    let Ok(sock) = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await else {
        tracing::warn!(%peer, "TFTP: no socket for a transfer");
        return;
    };
    if sock.connect(peer).await.is_err() {
        return;
    }
    let mac = match peer.ip() {
        IpAddr::V4(ip) => tracker.mac_of(ip),
        IpAddr::V6(_) => None,
    };
    let (req, path) = match parse_request(packet).and_then(|req| {
        let path = resolve(root, &req.file)?;
        Ok((req, path))
    }) {
        Ok(x) => x,
        Err(refusal) => {
            let _ = sock
                .send(&error_packet(refusal.code, &refusal.message))
                .await;
            tracker.record(Event::TftpFailed {
                peer,
                file: String::from_utf8_lossy(packet.get(2..).unwrap_or_default())
                    .split('\0')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                reason: refusal.message,
            });
            return;
        }
    };
    tracker.record(Event::TftpStarted {
        mac,
        peer,
        file: req.file.clone(),
    });
    match send_file(&sock, &req, &path).await {
        Ok(bytes) => tracker.record(Event::TftpCompleted {
            mac,
            peer,
            file: req.file,
            bytes,
        }),
        Err(reason) => tracker.record(Event::TftpFailed {
            peer,
            file: req.file,
            reason,
        }),
    }
}

/// Send one packet and wait for the ACK of `block`, retransmitting on timeout.
async fn send_and_wait(
    sock: &UdpSocket,
    packet: &[u8],
    block: u16,
    timeout: Duration,
) -> Result<(), String> {
    let mut buf = [0u8; 516];
    for _ in 0..RETRIES {
        sock.send(packet).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => n,
            };
            if n < 4 {
                continue;
            }
            let op = u16::from_be_bytes([buf[0], buf[1]]);
            let num = u16::from_be_bytes([buf[2], buf[3]]);
            match op {
                ACK if num == block => return Ok(()),
                // A duplicate ACK is not a reason to resend (the Sorcerer's Apprentice bug,
                // RFC 1123 4.2.3.1): keep waiting.
                ACK => continue,
                ERROR => {
                    let msg = String::from_utf8_lossy(&buf[4..n]);
                    return Err(format!("client aborted: {}", msg.trim_end_matches('\0')));
                }
                _ => continue,
            }
        }
    }
    Err("client stopped answering".into())
}

async fn send_file(sock: &UdpSocket, req: &ReadRequest, path: &Path) -> Result<u64, String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let size = file.metadata().await.map_err(|e| e.to_string())?.len();
    let blksize = usize::from(req.blksize.unwrap_or(512));
    let timeout = Duration::from_secs(u64::from(req.timeout.unwrap_or(1)));
    let mut oack = Vec::new();
    if let Some(b) = req.blksize {
        oack.extend_from_slice(format!("blksize\0{b}\0").as_bytes());
    }
    if req.tsize {
        oack.extend_from_slice(format!("tsize\0{size}\0").as_bytes());
    }
    if let Some(t) = req.timeout {
        oack.extend_from_slice(format!("timeout\0{t}\0").as_bytes());
    }
    if !oack.is_empty() {
        let mut p = OACK.to_be_bytes().to_vec();
        p.extend_from_slice(&oack);
        send_and_wait(sock, &p, 0, timeout).await?;
    }
    let mut block: u16 = 1;
    let mut sent = 0u64;
    let mut data = vec![0u8; blksize];
    loop {
        let mut filled = 0;
        while filled < blksize {
            let n = file
                .read(&mut data[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let mut p = Vec::with_capacity(4 + filled);
        p.extend_from_slice(&DATA.to_be_bytes());
        p.extend_from_slice(&block.to_be_bytes());
        p.extend_from_slice(&data[..filled]);
        send_and_wait(sock, &p, block, timeout).await?;
        sent += filled as u64;
        if filled < blksize {
            return Ok(sent);
        }
        // Past 65535 blocks, wrap to 0 as tftp-hpa and iPXE expect.
        block = block.wrapping_add(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut p = RRQ.to_be_bytes().to_vec();
        for part in parts {
            p.extend_from_slice(part.as_bytes());
            p.push(0);
        }
        p
    }

    #[test]
    fn parses_options_case_insensitively() {
        let req = parse_request(&rrq(&[
            "ipxe.efi", "OCTET", "BLKSIZE", "1432", "tsize", "0", "timeout", "3",
        ]))
        .unwrap();
        assert_eq!(req.file, "ipxe.efi");
        assert_eq!(req.blksize, Some(1432));
        assert!(req.tsize);
        assert_eq!(req.timeout, Some(3));
        let big = parse_request(&rrq(&["f", "octet", "blksize", "100000"])).unwrap();
        assert_eq!(big.blksize, Some(65464));
        let tiny = parse_request(&rrq(&["f", "octet", "blksize", "4"])).unwrap();
        assert_eq!(tiny.blksize, None);
    }

    #[test]
    fn refuses_writes_and_junk() {
        let mut wrq = rrq(&["f", "octet"]);
        wrq[1] = 2;
        assert_eq!(parse_request(&wrq).unwrap_err().code, ERR_ACCESS);
        assert_eq!(parse_request(&[0, 1]).unwrap_err().code, ERR_ILLEGAL);
        assert_eq!(
            parse_request(&rrq(&["f", "mail"])).unwrap_err().code,
            ERR_ILLEGAL
        );
        let mut unterminated = rrq(&["f", "octet"]);
        unterminated.pop();
        assert_eq!(parse_request(&unterminated).unwrap_err().code, ERR_ILLEGAL);
    }

    #[test]
    fn resolve_stays_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("ipxe.efi"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        assert!(resolve(&root, "ipxe.efi").is_ok());
        assert!(resolve(&root, "/ipxe.efi").is_ok());
        assert_eq!(resolve(&root, "../secret").unwrap_err().code, ERR_ACCESS);
        assert_eq!(
            resolve(&root, "a/../../secret").unwrap_err().code,
            ERR_ACCESS
        );
        assert_eq!(resolve(&root, "..\\secret").unwrap_err().code, ERR_ACCESS);
        // The operator's symlinks are followed; a client's `..` never is.
        assert!(resolve(&root, "link").is_ok());
        assert_eq!(resolve(&root, "missing").unwrap_err().code, ERR_NOT_FOUND);
        assert_eq!(resolve(&root, ".").unwrap_err().code, ERR_NOT_FOUND);
    }
}
