//! etcd snapshots and recovery through apid: `EtcdSnapshot` (a server stream of
//! `common.Data`), `EtcdRecover` (a client stream of `common.Data`) and `Bootstrap` with
//! `recover_etcd`.
//!
//! Neither direction buffers the snapshot: [`Client::etcd_snapshot`] hands every chunk to a
//! [`std::io::Write`] as it arrives (e.g. an age encryptor, so the plaintext never reaches a
//! disk), and [`Client::etcd_recover`] sends the chunks of a stream as they are produced.
//!
//! The server side, for reference: siderolabs/talos
//! `internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go` (`EtcdSnapshot` streams
//! the local member's snapshot in chunks; `EtcdRecover` writes the upload to
//! `/var/lib/etcd.snapshot` and removes it when the upload fails; `Bootstrap` with
//! `recover_etcd` restores etcd from that file before starting it).

use futures_util::{Stream, StreamExt as _};
use tracing::Instrument as _;

use crate::client::{Client, transport_error};
use crate::error::{Error, Result};
use crate::proto::{common, machine};

/// Chunk size [`chunks`] splits an upload into (the size talosctl's uploads use, 1 MiB).
pub const UPLOAD_CHUNK: usize = 1024 * 1024;

const SNAPSHOT: &str = "/machine.MachineService/EtcdSnapshot";
const RECOVER: &str = "/machine.MachineService/EtcdRecover";

/// How a Bootstrap that recovers etcd is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoverOptions {
    /// Skip etcd's integrity (hash) check of the snapshot: needed for a copy of a data
    /// directory rather than a snapshot taken with `EtcdSnapshot`.
    pub skip_hash_check: bool,
}

impl RecoverOptions {
    /// Recovery with etcd's hash check (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Skip the hash check (see the field).
    pub fn skip_hash_check(mut self, skip: bool) -> Self {
        self.skip_hash_check = skip;
        self
    }
}

/// Split `data` into upload chunks of at most [`UPLOAD_CHUNK`] bytes, copied lazily.
pub fn chunks(data: std::sync::Arc<zeroize::Zeroizing<Vec<u8>>>) -> impl Stream<Item = Vec<u8>> {
    let n = data.len().div_ceil(UPLOAD_CHUNK);
    futures_util::stream::iter(0..n).map(move |i| {
        let start = i * UPLOAD_CHUNK;
        let end = (start + UPLOAD_CHUNK).min(data.len());
        data[start..end].to_vec()
    })
}

impl Client {
    /// `MachineService/EtcdSnapshot`: writes the snapshot into `sink` chunk by chunk as it
    /// streams in and returns its size. A node error in a chunk's metadata (proxied call), a
    /// broken stream or an empty snapshot is an error: the caller must then discard what
    /// `sink` received.
    pub async fn etcd_snapshot(&self, sink: &mut (dyn std::io::Write + Send)) -> Result<u64> {
        let span =
            tracing::debug_span!("talos_rpc", method = SNAPSHOT, endpoint = %self.endpoint());
        async {
            let mut c = self.machine_service();
            let mut stream = c
                .etcd_snapshot(self.request(machine::EtcdSnapshotRequest {}))
                .await
                .map_err(|s| transport_error(SNAPSHOT, self.endpoint(), s))?
                .into_inner();
            let mut total = 0u64;
            loop {
                match stream.message().await {
                    Ok(Some(chunk)) => {
                        let chunk: common::Data = chunk;
                        if let Some(e) = self.chunk_error(SNAPSHOT, &chunk) {
                            return Err(e);
                        }
                        sink.write_all(&chunk.bytes)
                            .map_err(|source| Error::Write {
                                what: "the etcd snapshot".into(),
                                source,
                            })?;
                        total += chunk.bytes.len() as u64;
                    }
                    Ok(None) => break,
                    // Unlike Kubeconfig, a cancelled stream is not a normal end here: a
                    // snapshot cut short is useless.
                    Err(s) => return Err(Error::grpc(SNAPSHOT, s)),
                }
            }
            if total == 0 {
                return Err(Error::Stream {
                    method: SNAPSHOT.into(),
                    message: "the node sent an empty snapshot".into(),
                });
            }
            sink.flush().map_err(|source| Error::Write {
                what: "the etcd snapshot".into(),
                source,
            })?;
            Ok(total)
        }
        .instrument(span)
        .await
    }

    /// `MachineService/EtcdRecover`: uploads a snapshot, chunk by chunk as `chunks` yields
    /// them, to the targeted control plane (for a following [`Client::bootstrap_recover`]).
    pub async fn etcd_recover<S>(&self, chunks: S) -> Result<Vec<machine::EtcdRecover>>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let span = tracing::debug_span!("talos_rpc", method = RECOVER, endpoint = %self.endpoint());
        async {
            let mut c = self.machine_service();
            let outbound = chunks.map(|bytes| common::Data {
                metadata: None,
                bytes,
            });
            let resp = c
                .etcd_recover(self.request(outbound))
                .await
                .map_err(|s| transport_error(RECOVER, self.endpoint(), s))?;
            self.check(RECOVER, resp.into_inner())
        }
        .instrument(span)
        .await
    }

    /// `MachineService/Bootstrap` with `recover_etcd`: etcd starts from the snapshot uploaded
    /// with [`Client::etcd_recover`] instead of empty.
    pub async fn bootstrap_recover(&self, opts: RecoverOptions) -> Result<Vec<machine::Bootstrap>> {
        self.bootstrap_with(machine::BootstrapRequest {
            recover_etcd: true,
            recover_skip_hash_check: opts.skip_hash_check,
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_cover_the_data_in_order() {
        let data: Vec<u8> = (0..(UPLOAD_CHUNK * 2 + 17)).map(|i| i as u8).collect();
        let parts: Vec<Vec<u8>> =
            chunks(std::sync::Arc::new(zeroize::Zeroizing::new(data.clone())))
                .collect()
                .await;
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 17);
        assert_eq!(parts.concat(), data);
        let empty: Vec<Vec<u8>> = chunks(std::sync::Arc::new(zeroize::Zeroizing::new(vec![])))
            .collect()
            .await;
        assert!(empty.is_empty());
    }
}
