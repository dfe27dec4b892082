//! The simulated node's SSH/SFTP endpoint: what `sshd` + `sftp-server` are on a real Proxmox
//! host, reduced to what uploading cloud-init snippets needs.
//!
//! - SSH on loopback with its own ed25519 host key; [`SftpServer::fingerprint`] gives the
//!   `SHA256:<base64>` form `ssh-keygen -lf` prints, for the client to pin.
//! - Public-key authentication only (no passwords), for one user (default `root`), against
//!   keys given to the builder and/or an `authorized_keys` file re-read on every attempt.
//! - The SFTP subsystem (protocol version 3) over a directory standing in for the node's
//!   root file system: `/var/lib/vz/snippets/x.yaml` is `<root>/var/lib/vz/snippets/x.yaml`.
//!   Like OpenSSH's `sftp-server`: plain `SSH_FXP_RENAME` refuses to replace an existing
//!   file, `posix-rename@openssh.com` replaces it atomically, `fsync@openssh.com` is offered.
//! - With [`SftpServerBuilder::pve`], every change under a snippet directory of a
//!   file-based storage (`<path>/snippets` of a storage whose `content` includes
//!   `snippets`) is mirrored into the simulated Proxmox VE state, so the files appear in
//!   `GET /nodes/{node}/storage/{storage}/content?content=snippets` as `snippet` volumes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), homelab_sim::Error> {
//! use homelab_sim::lab::Lab;
//! use homelab_sim::sftp::SftpServer;
//!
//! let lab = Lab::builder().start().await?;
//! let root = std::env::temp_dir().join("node-root");
//! let sftp = SftpServer::builder(&root)
//!     .pve(lab.sim().clone(), "pve")
//!     .authorized_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7Qg0vZ0qkT8w0x7h1ZB4Wn6h8rkQ9x0q9Jb3X2b8yD me")?
//!     .start()
//!     .await?;
//! println!("sftp on {} pin {}", sftp.addr(), sftp.fingerprint());
//! sftp.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::pve::sim::{Sim, now};
use crate::pve::state::Volume;

/// File name of the persisted host key inside a state directory.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// File name of the `authorized_keys` list inside a state directory.
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";

/// The OpenSSH extension that renames over an existing file.
pub const POSIX_RENAME: &str = "posix-rename@openssh.com";
/// The OpenSSH extension that fsyncs an open handle.
pub const FSYNC: &str = "fsync@openssh.com";

fn service_err(message: impl Into<String>) -> Error {
    Error::Service {
        name: "sftp".into(),
        message: message.into(),
    }
}

/// `SHA256:<unpadded base64>` of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Where the host key comes from.
#[derive(Debug)]
enum HostKey {
    Generate,
    File(PathBuf),
    Given(Box<PrivateKey>),
}

/// Configures an [`SftpServer`]; see the [module docs](self).
#[derive(Debug)]
pub struct SftpServerBuilder {
    root: PathBuf,
    listen: SocketAddr,
    user: String,
    keys: Vec<PublicKey>,
    authorized_keys_file: Option<PathBuf>,
    host_key: HostKey,
    pve: Option<(Sim, String)>,
}

impl SftpServerBuilder {
    /// Address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// The only user allowed to log in (default `root`, as PVE's snippet directory is
    /// root's).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }
    /// Accept this public key (OpenSSH one-line form, `ssh-ed25519 AAAA... comment`).
    pub fn authorized_key(mut self, line: &str) -> Result<Self, Error> {
        let key = PublicKey::from_openssh(line.trim())
            .map_err(|e| service_err(format!("invalid authorized key: {e}")))?;
        self.keys.push(key);
        Ok(self)
    }
    /// Accept this public key.
    pub fn authorized_public_key(mut self, key: PublicKey) -> Self {
        self.keys.push(key);
        self
    }
    /// Also accept the keys listed in this `authorized_keys` file, re-read on every login
    /// (a missing file lists no keys).
    pub fn authorized_keys_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.authorized_keys_file = Some(path.into());
        self
    }
    /// Keep the host key in `path` (OpenSSH private key format, created 0600 when missing)
    /// so that the fingerprint survives restarts.
    pub fn host_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.host_key = HostKey::File(path.into());
        self
    }
    /// Use this host key.
    pub fn host_key(mut self, key: PrivateKey) -> Self {
        self.host_key = HostKey::Given(Box::new(key));
        self
    }
    /// Mirror snippet files into the storage content of `node` in this simulated PVE.
    pub fn pve(mut self, sim: Sim, node: impl Into<String>) -> Self {
        self.pve = Some((sim, node.into()));
        self
    }

    /// Load or generate the host key, bind and serve in the background.
    pub async fn start(self) -> Result<SftpServer, Error> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let host_key = match self.host_key {
            HostKey::Generate => generate_host_key(),
            HostKey::Given(k) => *k,
            HostKey::File(path) => load_or_create_host_key(&path)?,
        };
        let public = host_key.public_key().clone();
        let (listener, addr) = crate::listen(self.listen).await?;
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        let config = Arc::new(russh::server::Config {
            methods,
            keys: vec![host_key],
            auth_rejection_time: Duration::from_millis(100),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(600)),
            ..Default::default()
        });
        let shared = Arc::new(Shared {
            root: self.root.clone(),
            user: self.user,
            keys: self.keys,
            authorized_keys_file: self.authorized_keys_file,
            pve: self.pve,
        });
        if let Some((sim, node)) = &shared.pve {
            // PVE creates `snippets/` when a storage gets that content type.
            for (_, _, dir) in snippet_dirs(&shared.root, sim) {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
            sync_snippets(&shared.root, sim, node);
        }
        let (tx, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let handler = SshSession { shared: shared.clone(), peer, channels: HashMap::new() };
                        let config = config.clone();
                        tokio::spawn(async move {
                            match russh::server::run_stream(config, stream, handler).await {
                                Ok(session) => {
                                    if let Err(e) = session.await {
                                        tracing::debug!(%peer, "ssh session ended: {e}");
                                    }
                                }
                                Err(e) => tracing::debug!(%peer, "ssh handshake failed: {e}"),
                            }
                        });
                    }
                    _ = rx.changed() => break,
                }
            }
        });
        tracing::info!(%addr, fingerprint = %fingerprint(&public), "simulated SFTP listening");
        Ok(SftpServer {
            addr,
            public,
            root: self.root,
            shutdown: tx,
            task: Some(task),
        })
    }
}

fn generate_host_key() -> PrivateKey {
    let seed: [u8; 32] = rand::random();
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.trim()).map_err(|e| {
            service_err(format!(
                "{}: not an OpenSSH private key: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_host_key();
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| service_err(format!("cannot encode the host key: {e}")))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            write_private(path, text.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Write a private file atomically with mode 0600.
fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A running SFTP endpoint. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct SftpServer {
    addr: SocketAddr,
    public: PublicKey,
    root: PathBuf,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SftpServer {
    /// A builder serving `root` as the node's file system.
    pub fn builder(root: impl Into<PathBuf>) -> SftpServerBuilder {
        SftpServerBuilder {
            root: root.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "root".into(),
            keys: Vec::new(),
            authorized_keys_file: None,
            host_key: HostKey::Generate,
            pve: None,
        }
    }
    /// A builder keeping everything under `dir`, so that a restarted lab (for example
    /// `homelab-cli sim serve --state DIR`) offers the same endpoint: the node's file
    /// system in `DIR/root`, the host key in `DIR/`[`HOST_KEY_FILE`], and the accepted
    /// keys in `DIR/`[`AUTHORIZED_KEYS_FILE`] (re-read on every login, so users can add
    /// theirs while it runs).
    pub fn persistent(dir: impl AsRef<Path>) -> SftpServerBuilder {
        let dir = dir.as_ref();
        Self::builder(dir.join("root"))
            .host_key_file(dir.join(HOST_KEY_FILE))
            .authorized_keys_file(dir.join(AUTHORIZED_KEYS_FILE))
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The host key's `SHA256:<base64>` fingerprint (what `ssh-keygen -lf` prints).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }
    /// The host public key, OpenSSH one-line form (a `known_hosts` entry minus the host).
    pub fn host_public_key(&self) -> String {
        self.public.to_openssh().unwrap_or_default()
    }
    /// The directory standing in for the node's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Stop accepting connections and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    user: String,
    keys: Vec<PublicKey>,
    authorized_keys_file: Option<PathBuf>,
    pve: Option<(Sim, String)>,
}

impl Shared {
    fn authorized(&self, user: &str, key: &PublicKey) -> bool {
        if user != self.user {
            return false;
        }
        if self.keys.iter().any(|k| k.key_data() == key.key_data()) {
            return true;
        }
        let Some(path) = &self.authorized_keys_file else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| PublicKey::from_openssh(l).ok())
            .any(|k| k.key_data() == key.key_data())
    }

    fn changed(&self) {
        if let Some((sim, node)) = &self.pve {
            sync_snippets(&self.root, sim, node);
        }
    }
}

struct SshSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.shared.authorized(user, public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        if self.shared.authorized(user, public_key) {
            tracing::info!(peer = %self.peer, user, key = %fingerprint(public_key), "sftp login");
            Ok(Auth::Accept)
        } else {
            tracing::info!(peer = %self.peer, user, key = %fingerprint(public_key), "sftp login refused");
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.channels.insert(channel.id(), channel);
        Ok(true)
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => {
                session.channel_success(channel_id)?;
                let handler = SftpHandler {
                    shared: self.shared.clone(),
                    handles: HashMap::new(),
                    next: 0,
                    version: None,
                };
                russh_sftp::server::run(channel.into_stream(), handler).await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

enum Open {
    File {
        file: std::fs::File,
        path: PathBuf,
        written: bool,
    },
    Dir {
        path: PathBuf,
        done: bool,
    },
}

struct SftpHandler {
    shared: Arc<Shared>,
    handles: HashMap<String, Open>,
    next: u64,
    version: Option<u32>,
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".into(),
        language_tag: "en-US".into(),
    }
}

/// Map an I/O error to the status OpenSSH's `sftp-server` sends (`errno_to_portable`).
fn io_status(e: &std::io::Error) -> StatusReply {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => StatusCode::NoSuchFile.with_message("No such file"),
        K::PermissionDenied => StatusCode::PermissionDenied.with_message("Permission denied"),
        K::UnexpectedEof => StatusCode::Eof.with_message("End of file"),
        _ => StatusCode::Failure.with_message("Failure"),
    }
}

/// Parse one SSH `string` from the front of `data`.
fn take_string(data: &mut &[u8]) -> Option<String> {
    if data.len() < 4 {
        return None;
    }
    let (len, rest) = data.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return None;
    }
    let (s, rest) = rest.split_at(len);
    *data = rest;
    String::from_utf8(s.to_vec()).ok()
}

impl SftpHandler {
    /// The local path for a client path, refusing anything that climbs out of the root.
    fn local(&self, path: &str) -> Result<PathBuf, StatusReply> {
        let mut out = self.shared.root.clone();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(StatusCode::PermissionDenied.with_message("Permission denied"));
                }
            }
        }
        Ok(out)
    }

    fn new_handle(&mut self, open: Open) -> String {
        self.next += 1;
        let h = self.next.to_string();
        self.handles.insert(h.clone(), open);
        h
    }

    fn file(&mut self, handle: &str) -> Result<(&mut std::fs::File, &mut bool), StatusReply> {
        match self.handles.get_mut(handle) {
            Some(Open::File { file, written, .. }) => Ok((file, written)),
            _ => Err(StatusCode::Failure.with_message("Invalid handle")),
        }
    }
}

fn attrs_of(meta: &std::fs::Metadata) -> FileAttributes {
    FileAttributes::from(meta)
}

fn longname(name: &str, meta: &std::fs::Metadata) -> String {
    let kind = if meta.is_dir() { 'd' } else { '-' };
    format!(
        "{kind}rw-r--r--    1 root     root     {:>8} Jan  1 00:00 {name}",
        meta.len()
    )
}

impl russh_sftp::server::Handler for SftpHandler {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.with_message("Operation unsupported")
    }

    async fn init(
        &mut self,
        version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        if self.version.is_some() {
            return Err(StatusCode::ConnectionLost.into());
        }
        self.version = Some(version);
        let mut v = Version::new();
        v.extensions.insert(POSIX_RENAME.into(), "1".into());
        v.extensions.insert(FSYNC.into(), "1".into());
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.local(&filename)?;
        let mut opts = std::fs::OpenOptions::new();
        let write = pflags.contains(OpenFlags::WRITE) || pflags.contains(OpenFlags::APPEND);
        opts.read(pflags.contains(OpenFlags::READ))
            .write(write)
            .append(pflags.contains(OpenFlags::APPEND));
        if pflags.contains(OpenFlags::CREATE) {
            if pflags.contains(OpenFlags::EXCLUDE) {
                opts.create_new(true);
            } else {
                opts.create(true);
            }
        }
        if pflags.contains(OpenFlags::TRUNCATE) {
            opts.truncate(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(attrs.permissions.map(|p| p & 0o7777).unwrap_or(0o666));
        }
        #[cfg(not(unix))]
        let _ = attrs;
        let file = opts.open(&path).map_err(|e| io_status(&e))?;
        let handle = self.new_handle(Open::File {
            file,
            path,
            written: write && pflags.contains(OpenFlags::CREATE | OpenFlags::TRUNCATE),
        });
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::File { written, .. }) => {
                if written {
                    self.shared.changed();
                }
                Ok(ok(id))
            }
            Some(Open::Dir { .. }) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message("Invalid handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let (file, _) = self.file(&handle)?;
        let len = len.min(256 * 1024) as usize;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_status(&e))?;
        let n = file.read(&mut buf).map_err(|e| io_status(&e))?;
        if n == 0 {
            return Err(StatusCode::Eof.with_message("End of file"));
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let (file, written) = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&data))
            .map_err(|e| io_status(&e))?;
        *written = true;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let p = self.local(&path)?;
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&meta),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let p = self.local(&path)?;
        let meta = std::fs::metadata(&p).map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = match self.handles.get(&handle) {
            Some(Open::File { file, .. }) => file.metadata(),
            Some(Open::Dir { path, .. }) => std::fs::metadata(path),
            None => return Err(StatusCode::Failure.with_message("Invalid handle")),
        }
        .map_err(|e| io_status(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let p = self.local(&path)?;
        set_attrs(&p, &attrs)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let path = match self.handles.get(&handle) {
            Some(Open::File { path, .. }) | Some(Open::Dir { path, .. }) => path.clone(),
            None => return Err(StatusCode::Failure.with_message("Invalid handle")),
        };
        set_attrs(&path, &attrs)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let p = self.local(&path)?;
        let meta = std::fs::metadata(&p).map_err(|e| io_status(&e))?;
        if !meta.is_dir() {
            return Err(StatusCode::Failure.with_message("Not a directory"));
        }
        let handle = self.new_handle(Open::Dir {
            path: p,
            done: false,
        });
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir { path, done }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("Invalid handle"));
        };
        if *done {
            return Err(StatusCode::Eof.with_message("End of file"));
        }
        *done = true;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&*path).map_err(|e| io_status(&e))? {
            let entry = entry.map_err(|e| io_status(&e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(meta) = entry.metadata() {
                files.push(File {
                    longname: longname(&name, &meta),
                    filename: name,
                    attrs: attrs_of(&meta),
                });
            }
        }
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let p = self.local(&filename)?;
        std::fs::remove_file(&p).map_err(|e| io_status(&e))?;
        self.shared.changed();
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let p = self.local(&path)?;
        std::fs::create_dir(&p).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let p = self.local(&path)?;
        std::fs::remove_dir(&p).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        // Relative paths resolve against root's home, as with a real login.
        let joined = if path.starts_with('/') {
            PathBuf::from(&path)
        } else {
            Path::new("/root").join(&path)
        };
        let mut parts: Vec<String> = Vec::new();
        for c in joined.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        Ok(Name {
            id,
            files: vec![File::dummy(format!("/{}", parts.join("/")))],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let from = self.local(&oldpath)?;
        let to = self.local(&newpath)?;
        // SSH_FXP_RENAME never replaces (OpenSSH links, then unlinks the old name).
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(StatusCode::Failure.with_message("Failure"));
        }
        std::fs::symlink_metadata(&from).map_err(|e| io_status(&e))?;
        std::fs::rename(&from, &to).map_err(|e| io_status(&e))?;
        self.shared.changed();
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        let mut rest = data.as_slice();
        match request.as_str() {
            POSIX_RENAME => {
                let (Some(old), Some(new)) = (take_string(&mut rest), take_string(&mut rest))
                else {
                    return Err(StatusCode::BadMessage.with_message("Bad message"));
                };
                let from = self.local(&old)?;
                let to = self.local(&new)?;
                std::fs::rename(&from, &to).map_err(|e| io_status(&e))?;
                self.shared.changed();
                Ok(Packet::Status(ok(id)))
            }
            FSYNC => {
                let Some(handle) = take_string(&mut rest) else {
                    return Err(StatusCode::BadMessage.with_message("Bad message"));
                };
                let (file, _) = self.file(&handle)?;
                file.sync_all().map_err(|e| io_status(&e))?;
                Ok(Packet::Status(ok(id)))
            }
            _ => Err(self.unimplemented()),
        }
    }
}

fn set_attrs(path: &Path, attrs: &FileAttributes) -> Result<(), StatusReply> {
    if let Some(size) = attrs.size {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_status(&e))?;
        f.set_len(size).map_err(|e| io_status(&e))?;
    }
    #[cfg(unix)]
    if let Some(mode) = attrs.permissions {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| io_status(&e))?;
    }
    Ok(())
}

/// (storage, shared, local snippet directory) of every file-based storage allowing
/// `snippets`.
fn snippet_dirs(root: &Path, sim: &Sim) -> Vec<(String, bool, PathBuf)> {
    let st = sim.state();
    st.storages
        .iter()
        .filter(|(_, s)| s.file_based() && s.content.iter().any(|c| c == "snippets"))
        .filter_map(|(id, s)| {
            let base = s.path.as_deref()?;
            Some((
                id.clone(),
                s.shared,
                root.join(base.trim_start_matches('/')).join("snippets"),
            ))
        })
        .collect()
}

/// Make the simulated storage content of `node` match the snippet files under `root`:
/// one `snippet` volume per regular file in `<storage path>/snippets` of every file-based
/// storage that allows `snippets`.
pub fn sync_snippets(root: &Path, sim: &Sim, node: &str) {
    // Sessions write concurrently: reading the directory and updating the state happen
    // under one lock, so an older listing never overwrites a newer one.
    static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SYNC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (sid, shared, dir) in snippet_dirs(root, sim) {
        let mut files = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                // stat(), not lstat(): symlinks count as what they point to.
                let Ok(meta) = std::fs::metadata(entry.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                // PVE lists `<dir>/*`: the shell glob skips dot files (in-flight uploads).
                if name.starts_with('.') {
                    continue;
                }
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                #[cfg(unix)]
                let ctime = {
                    use std::os::unix::fs::MetadataExt;
                    u64::try_from(meta.ctime()).unwrap_or_else(|_| now())
                };
                #[cfg(not(unix))]
                let ctime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or_else(now, |d| d.as_secs());
                files.insert(
                    name,
                    (meta.len(), ctime, hex::encode(Sha256::digest(&bytes))),
                );
            }
        }
        // Shared storages are keyed once for the cluster, as uploads to them are.
        let key_node = if shared { "shared" } else { node };
        let mut st = sim.state();
        st.volumes.retain(|_, v| {
            !(v.storage == sid && v.content == "snippets" && v.node == key_node)
                || v.volid
                    .strip_prefix(&format!("{sid}:snippets/"))
                    .is_some_and(|n| files.contains_key(n))
        });
        for (name, (size, ctime, sha)) in files {
            let volid = format!("{sid}:snippets/{name}");
            st.volumes.insert(
                format!("{key_node}/{volid}"),
                Volume {
                    volid,
                    node: key_node.to_string(),
                    storage: sid.clone(),
                    content: "snippets".into(),
                    format: "snippet".into(),
                    size,
                    vmid: None,
                    ctime,
                    sha256: Some(sha),
                },
            );
        }
    }
    sim.persist();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::KeypairData;

    #[test]
    fn ssh_strings_parse() {
        let mut data = Vec::new();
        for s in ["/a", "/bb"] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        let mut rest = data.as_slice();
        assert_eq!(take_string(&mut rest).as_deref(), Some("/a"));
        assert_eq!(take_string(&mut rest).as_deref(), Some("/bb"));
        assert_eq!(take_string(&mut rest), None);
        let mut short: &[u8] = &[0, 0, 0, 9, b'x'];
        assert_eq!(take_string(&mut short), None);
    }

    #[test]
    fn fingerprints_look_like_openssh() {
        let key = generate_host_key();
        let fp = fingerprint(key.public_key());
        assert!(fp.starts_with("SHA256:"), "{fp}");
        // 32 bytes in unpadded base64.
        assert_eq!(fp.len(), "SHA256:".len() + 43);
        assert!(matches!(key.key_data(), KeypairData::Ed25519(_)));
    }

    #[test]
    fn host_key_file_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HOST_KEY_FILE);
        let a = load_or_create_host_key(&path).unwrap();
        let b = load_or_create_host_key(&path).unwrap();
        assert_eq!(fingerprint(a.public_key()), fingerprint(b.public_key()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
