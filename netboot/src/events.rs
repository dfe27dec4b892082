//! What the clients did: an event stream and each declared machine's progress.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use tokio::sync::{broadcast, watch};

use crate::config::{MacAddr, ServerConfig};

/// One thing a client did (or was refused).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A DHCP OFFER went out (in proxy mode without an address).
    Offered {
        /// Client.
        mac: MacAddr,
        /// The offered address (full mode).
        address: Option<Ipv4Addr>,
        /// The boot file or script URL offered.
        boot_file: String,
    },
    /// A DHCP ACK went out.
    Acked {
        /// Client.
        mac: MacAddr,
        /// The leased (full mode) or learned (proxy mode) address.
        address: Option<Ipv4Addr>,
    },
    /// In proxy mode: the address the site's DHCP server gave a declared machine, seen in
    /// its DHCP REQUEST (option 50) or its ProxyDHCP REQUEST (`ciaddr`).
    AddressLearned {
        /// Client.
        mac: MacAddr,
        /// Its address.
        address: Ipv4Addr,
    },
    /// A DHCP NAK went out (the client asked for an address that is not its lease).
    Nacked {
        /// Client.
        mac: MacAddr,
        /// The address it asked for.
        requested: Option<Ipv4Addr>,
    },
    /// A DHCP request from a MAC that is not declared was ignored.
    IgnoredMac {
        /// Client.
        mac: MacAddr,
    },
    /// A TFTP read started.
    TftpStarted {
        /// Client (if its address is known).
        mac: Option<MacAddr>,
        /// Peer.
        peer: SocketAddr,
        /// File.
        file: String,
    },
    /// A TFTP read finished.
    TftpCompleted {
        /// Client (if its address is known).
        mac: Option<MacAddr>,
        /// Peer.
        peer: SocketAddr,
        /// File.
        file: String,
        /// Bytes sent.
        bytes: u64,
    },
    /// A TFTP request was refused or failed.
    TftpFailed {
        /// Peer.
        peer: SocketAddr,
        /// File.
        file: String,
        /// Why.
        reason: String,
    },
    /// The iPXE script was fetched.
    ScriptFetched {
        /// Client.
        mac: MacAddr,
        /// Peer.
        peer: SocketAddr,
    },
    /// The kernel was fetched.
    KernelFetched {
        /// Client.
        mac: MacAddr,
    },
    /// The initramfs was fetched.
    InitramfsFetched {
        /// Client.
        mac: MacAddr,
    },
    /// The machine config was served.
    ConfigFetched {
        /// Client.
        mac: MacAddr,
        /// Peer.
        peer: SocketAddr,
    },
    /// A request for a machine config was refused.
    ConfigRefused {
        /// The MAC in the URL.
        mac: String,
        /// Peer.
        peer: SocketAddr,
        /// The HTTP status sent.
        status: u16,
    },
}

/// How far one declared machine got.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Its name.
    pub name: String,
    /// An offer went out.
    pub offered: bool,
    /// An ACK went out (or its address was learned).
    pub acked: bool,
    /// Its address, if known.
    pub address: Option<Ipv4Addr>,
    /// It read a file over TFTP.
    pub tftp: bool,
    /// It fetched its script.
    pub script: bool,
    /// It fetched the kernel.
    pub kernel: bool,
    /// It fetched the initramfs.
    pub initramfs: bool,
    /// It fetched its machine config.
    pub config: bool,
}

/// Shared between the three services.
#[derive(Debug)]
pub(crate) struct Tracker {
    progress: Mutex<BTreeMap<MacAddr, Progress>>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Sender<BTreeMap<MacAddr, Progress>>,
}

impl Tracker {
    pub(crate) fn new(config: &ServerConfig) -> Tracker {
        let progress: BTreeMap<MacAddr, Progress> = config
            .hosts()
            .map(|h| {
                (
                    h.mac,
                    Progress {
                        name: h.name.clone(),
                        address: h.address,
                        ..Progress::default()
                    },
                )
            })
            .collect();
        let (events, _) = broadcast::channel(1024);
        let (snapshot, _) = watch::channel(progress.clone());
        Tracker {
            progress: Mutex::new(progress),
            events,
            snapshot,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<BTreeMap<MacAddr, Progress>> {
        self.snapshot.subscribe()
    }

    /// The address a MAC is known to have (declared, leased or learned).
    pub(crate) fn address_of(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
        self.lock().get(mac).and_then(|p| p.address)
    }

    /// The declared MAC that has this address, if any.
    pub(crate) fn mac_of(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.lock()
            .iter()
            .find(|(_, p)| p.address == Some(ip))
            .map(|(m, _)| *m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<MacAddr, Progress>> {
        // A panic while holding this lock cannot leave the map half-updated (each update
        // is one field write), so a poisoned lock is still usable.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record an event: update the machine's progress and tell the subscribers.
    pub(crate) fn record(&self, event: Event) {
        {
            let mut map = self.lock();
            let mut touch = |mac: &MacAddr, f: &mut dyn FnMut(&mut Progress)| {
                if let Some(p) = map.get_mut(mac) {
                    f(p);
                }
            };
            match &event {
                Event::Offered { mac, .. } => touch(mac, &mut |p| p.offered = true),
                Event::Acked { mac, address } => touch(mac, &mut |p| {
                    p.acked = true;
                    if address.is_some() {
                        p.address = *address;
                    }
                }),
                Event::AddressLearned { mac, address } => {
                    touch(mac, &mut |p| p.address = Some(*address))
                }
                Event::TftpCompleted { mac: Some(mac), .. } => touch(mac, &mut |p| p.tftp = true),
                Event::ScriptFetched { mac, .. } => touch(mac, &mut |p| p.script = true),
                Event::KernelFetched { mac } => touch(mac, &mut |p| p.kernel = true),
                Event::InitramfsFetched { mac } => touch(mac, &mut |p| p.initramfs = true),
                Event::ConfigFetched { mac, .. } => touch(mac, &mut |p| p.config = true),
                _ => {}
            }
            tracing::debug!(?event, "netboot event");
            // The event goes out before the progress that it causes, so whoever waits for
            // the progress finds the event already queued. No subscriber is fine.
            let _ = self.events.send(event);
            self.snapshot.send_replace(map.clone());
        }
    }
}
