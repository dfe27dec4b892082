//! Steps for what guests depend on: downloads (ISOs, templates, images), snippets, PCI mappings.

use super::*;

pub(super) async fn download(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    content: &str,
) -> Result<String, StepError> {
    download_with(env, node, storage, filename, url, content, None).await
}

/// Download a cloud image (`import` content); Proxmox verifies `algorithm:hex`.
pub(super) async fn download_checked(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    checksum: Option<&str>,
) -> Result<String, StepError> {
    let checksum = checksum.and_then(|c| c.split_once(':'));
    download_with(env, node, storage, filename, url, "import", checksum).await
}

pub(super) async fn download_with(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    content: &str,
    checksum: Option<(&str, &str)>,
) -> Result<String, StepError> {
    let upid = env
        .pve
        .node(node)
        .storage(storage)
        .download_url(&DownloadUrl {
            url: url.to_string(),
            filename: filename.to_string(),
            content: content.into(),
            checksum: checksum
                .map(|(a, h)| {
                    checksum_algorithm(a)
                        .map(|alg| (alg, h.to_string()))
                        .ok_or_else(|| StepError::new(format!("unknown checksum algorithm `{a}`")))
                })
                .transpose()?,
            verify_certificates: None,
            compression: None,
        })
        .await
        .map_err(|e| {
            let s = StepError::new(format!("download-url on {node}/{storage}: {e}"));
            if e.status() == Some(403) {
                s.hint("the token needs Datastore.AllocateTemplate on the storage and Sys.AccessNetwork on the node")
            } else {
                s
            }
        })?;
    wait(env, upid, &format!("{content} download")).await?;
    Ok("downloaded".into())
}

pub(super) fn checksum_algorithm(
    name: &str,
) -> Option<proxmox_client::requests::ChecksumAlgorithm> {
    use proxmox_client::requests::ChecksumAlgorithm as A;
    [A::Md5, A::Sha1, A::Sha224, A::Sha256, A::Sha384, A::Sha512]
        .into_iter()
        .find(|a| a.as_str() == name)
}

/// An SFTP session to the node (host key pinned).
pub(super) async fn sftp_session(
    env: &Env,
    node: &str,
) -> Result<(proxmox_client::snippets::SnippetUploader, String), StepError> {
    let ssh = env.desired.proxmox.ssh.as_ref().ok_or_else(|| {
        StepError::new("cloud-init snippets need SSH access to the node, and `proxmox.ssh` is not set")
            .hint("Proxmox cannot upload snippets through its API; add `proxmox.ssh` (private key as a secret, pinned host key)")
    })?;
    let (host, pin) = ssh.target(node);
    let pin: proxmox_client::snippets::HostKeyPin = pin
        .parse()
        .map_err(|e| StepError::new(format!("proxmox.ssh host key of {node}: {e}")))?;
    let key = proxmox_client::snippets::decode_private_key(
        secrecy::ExposeSecret::expose_secret(&ssh.private_key),
        None,
        "proxmox.ssh.private_key",
    )
    .map_err(|e| StepError::new(e.to_string()))?;
    let up =
        proxmox_client::snippets::SnippetUploader::connect(host, ssh.port, &ssh.user, key, &pin)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
    Ok((up, host.to_string()))
}

/// Delete a snippet nobody uses, after checking that it is ours by its marker line.
pub(super) async fn delete_snippet(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
) -> Result<String, StepError> {
    let dir = env
        .desired
        .snippets
        .iter()
        .find(|s| s.node == node && s.storage == storage)
        .map(|s| s.dir.clone())
        .ok_or_else(|| StepError::new(format!("no snippet directory known for {storage}")))?;
    let path = proxmox_client::snippets::snippet_path(&dir, filename)
        .map_err(|e| StepError::new(e.to_string()))?;
    let (up, _) = sftp_session(env, node).await?;
    let marker = crate::model::vms::snippet_marker(&env.desired.lab);
    let result = match up.read(&path).await {
        Ok(Some(text)) if String::from_utf8_lossy(&text).contains(&marker) => up
            .remove(&path)
            .await
            .map(|_| "deleted".to_string())
            .map_err(|e| StepError::new(e.to_string())),
        Ok(Some(_)) => Ok("kept: it does not carry this homelab's marker".into()),
        Ok(None) => Ok("already gone".into()),
        Err(e) => Err(StepError::new(e.to_string())),
    };
    up.close().await;
    result
}

/// Upload a snippet over SFTP (host key pinned); an identical file is left alone.
pub(super) async fn upload_snippet(
    env: &Env,
    node: &str,
    volid: &str,
) -> Result<String, StepError> {
    let sn = env
        .desired
        .snippets
        .iter()
        .find(|s| s.node == node && s.volid() == volid)
        .ok_or_else(|| StepError::new(format!("snippet {volid} is not declared")))?;
    let path = proxmox_client::snippets::snippet_path(&sn.dir, &sn.filename)
        .map_err(|e| StepError::new(e.to_string()))?;
    // A handoff token is minted now, for the VM using the snippet.
    let vm = env
        .desired
        .guests
        .iter()
        .find(|g| g.snippet.as_deref() == Some(volid))
        .map(|g| g.name.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let content = crate::model::handoff::fill(env.desired.handoff.as_ref(), vm, &sn.content, now)
        .map_err(StepError::new)?;
    let (up, host) = sftp_session(env, node).await?;
    let r = {
        use secrecy::ExposeSecret;
        up.upload(&path, content.expose_secret().as_bytes()).await
    };
    up.close().await;
    match r.map_err(|e| StepError::new(e.to_string()))? {
        proxmox_client::snippets::UploadOutcome::Unchanged => Ok("already there".into()),
        _ => Ok(format!("written to {host}:{path}")),
    }
}

/// Create a PCI mapping with `entries`, or set its entries for their nodes (keeping other
/// nodes').
pub(super) async fn set_pci_mapping(
    env: &Env,
    id: &str,
    entries: &[String],
    create: bool,
) -> Result<String, StepError> {
    use proxmox_client::property::PciMapEntry;
    use proxmox_client::requests::PciMappingParams;
    let want: Vec<PciMapEntry> = entries
        .iter()
        .map(|e| e.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| StepError::new(format!("mapping entry: {e}")))?;
    let hint = |e: proxmox_client::Error| {
        let s = StepError::new(format!("PCI mapping {id}: {e}"));
        if e.status() == Some(403) {
            s.hint("the token needs Mapping.Modify on /mapping/pci (and Mapping.Use to attach it); `homelab-cli proxmox token create` grants both")
        } else {
            s
        }
    };
    let api = env.pve.pci_mappings();
    if create {
        api.create(
            id,
            &PciMappingParams {
                description: Some(format!(
                    "Created by homelab-cli (homelab {})",
                    env.desired.lab
                )),
                map: want,
                ..PciMappingParams::default()
            },
        )
        .await
        .map_err(hint)?;
        return Ok("created".into());
    }
    let current = api.get(id).await.map_err(hint)?;
    let nodes: Vec<String> = want.iter().map(|w| w.node.clone()).collect();
    let mut map: Vec<PciMapEntry> = current
        .map
        .iter()
        .filter_map(|raw| raw.parse::<PciMapEntry>().ok())
        .filter(|e| !nodes.contains(&e.node))
        .collect();
    map.extend(want);
    api.update(
        id,
        &PciMappingParams {
            map,
            ..PciMappingParams::default()
        },
        &[],
        None,
    )
    .await
    .map_err(hint)?;
    Ok(format!("entries for {} set", nodes.join(", ")))
}
