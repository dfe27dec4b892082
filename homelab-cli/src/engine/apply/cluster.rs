//! Talos steps: secrets bundle, schematic, node configuration, bootstrap, health.

use super::*;

/// Generate the bundle (CPU-heavy: RSA 4096), store it encrypted, then share it. Runs
/// beside the Proxmox work; it is written before any node can be configured with it.
pub(super) async fn generate_bundle(env: &Env) -> Result<String, StepError> {
    let (path, opts) = env
        .bundle_store
        .clone()
        .ok_or_else(|| StepError::new("nowhere to store the Talos secrets bundle"))?;
    let bundle = tokio::task::spawn_blocking(SecretsBundle::generate)
        .await
        .map_err(|e| StepError::new(format!("secrets bundle: {e}")))?
        .map_err(|e| StepError::new(format!("secrets bundle: {e}")))?;
    let yaml = bundle.to_yaml();
    let data = sops_age::encrypt(yaml.as_bytes(), sops_age::Format::Yaml, &opts)
        .map_err(|e| StepError::new(format!("cannot encrypt the secrets bundle: {e}")))?;
    crate::workspace::write_atomic(&path, &data, 0o644)
        .map_err(|e| StepError::new(format!("{e}")).hint("check the repository is writable"))?;
    // A bundle already set would be one read from disk: keep it.
    let _ = env.bundle.set(bundle);
    Ok(format!("stored in {}", path.display()))
}

pub(super) async fn register_schematic(env: &Env) -> Result<String, StepError> {
    let Some(cluster) = &env.desired.talos else {
        return Ok("no Talos image".into());
    };
    let factory = env
        .factory
        .as_ref()
        .ok_or_else(|| StepError::new("no Image Factory client"))?;
    let schematic = crate::engine::image::FactoryNaming::schematic(
        &cluster.extensions,
        &cluster.extra_kernel_args,
    );
    let created = factory.create_schematic(&schematic).await.map_err(|e| {
        StepError::new(format!("the Image Factory refused the schematic: {e}"))
            .hint("check `talos.extensions` (names like `siderolabs/qemu-guest-agent`) and the factory URL")
    })?;
    let id = created.id.to_string();
    if id != cluster.schematic_id {
        return Err(StepError::new(format!(
            "the factory's schematic ID {id} differs from the offline ID {}",
            cluster.schematic_id
        ))
        .hint(
            "an extension name or kernel argument is quoted differently by the factory; report it",
        ));
    }
    Ok(format!("schematic {}", &id[..12]))
}

/// The node's address: static, else from the guest agent.
pub(super) async fn node_ip(env: &Env, d: &DesiredGuest) -> Result<IpAddr, StepError> {
    if let Some(ip) = d.talos.as_ref().and_then(|t| t.ip) {
        return Ok(ip);
    }
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let opts = talos_opts(env);
    talos_api::health::wait_for("an address from the guest agent", &opts, || {
        let vm = vm.clone();
        async move {
            let ifaces = vm
                .agent_network_interfaces()
                .await
                .map_err(|e| talos_api::Error::InvalidConfig(e.to_string()))?;
            crate::engine::observe::agent_addresses(&ifaces)
                .filter(|a| a.ip_address_type == "ipv4")
                .find_map(|a| a.ip_address.parse::<IpAddr>().ok())
                .ok_or_else(|| talos_api::Error::InvalidConfig("no IPv4 address yet".into()))
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("no address for {}: {e}", d.name))
            .hint("give the node a static `ip`, or include siderolabs/qemu-guest-agent in `talos.extensions`")
    })
}

/// How long and how often Talos steps poll.
pub(super) fn talos_opts(env: &Env) -> talos_api::health::WaitOptions<'static> {
    talos_api::health::WaitOptions::new(env.timeouts.talos)
        .interval(env.timeouts.poll)
        .progress(&crate::engine::waits::report)
}

/// Apply the machine configuration in maintenance mode and wait for the node to run it.
pub(super) async fn configure_node(env: &Env, vmid: u32) -> Result<String, StepError> {
    let d = env.desired_guest(vmid)?;
    // Nothing inside a stopped VM answers: stop waiting as soon as it is seen stopped.
    let poll = env.timeouts.poll.max(Duration::from_secs(1)) * 3;
    tokio::select! {
        r = configure_running_node(env, d) => r,
        e = crate::engine::waits::vm_stops(&env.pve, &d.node, d.vmid, poll) => Err(e),
    }
}

pub(super) async fn configure_running_node(
    env: &Env,
    d: &DesiredGuest,
) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let ip = node_ip(env, d).await?;
    let opts = talos_opts(env);
    crate::engine::waits::announce(
        &format!("the Talos API of {} at {ip}", d.name),
        opts.deadline,
    );
    let state = talos_api::health::wait_for("the Talos API", &opts, || async move {
        match talos::probe(ip).await {
            NodeState::Unreachable => Err(talos_api::Error::InvalidConfig("no answer yet".into())),
            s => Ok(s),
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("{} does not answer on the Talos API: {e}", d.name))
            .hint("check that the VM booted the Talos ISO (Proxmox console) and that its address is reachable")
    })?;
    if state == NodeState::Maintenance {
        let config = talos::machine_config(cluster, d, bundle)
            .map_err(|e| StepError::new(format!("machine config: {e}")))?;
        let yaml = config.to_yaml();
        let client = talos_api::client::ClientBuilder::maintenance(&ip.to_string())
            .build()
            .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
        client
            .apply_configuration(yaml.as_bytes(), talos_api::client::ApplyMode::Auto, false)
            .await
            .map_err(|e| StepError::new(format!("apply-config: {e}")))?;
    }
    let builder =
        talos::admin_client(cluster, bundle, ip).map_err(|e| StepError::new(e.to_string()))?;
    crate::engine::waits::announce(
        &format!("{} to run its configuration (mTLS)", d.name),
        opts.deadline,
    );
    crate::engine::waits::mtls_ready(&builder, &opts, &d.name)
        .await
        .map_err(|e| {
            if e.hint.is_some() {
                return e;
            }
            StepError::new(format!(
                "{} did not come up with its configuration: {}",
                d.name, e.message
            ))
            .hint("look at the node's console in Proxmox; re-running `homelab-cli up` resumes here")
        })?;
    Ok(if state == NodeState::Maintenance {
        "configured".into()
    } else {
        "already configured".into()
    })
}

pub(super) fn first_control_plane(
    env: &Env,
    vmid: u32,
) -> Result<(&DesiredGuest, IpAddr), StepError> {
    let d = env.desired_guest(vmid)?;
    debug_assert!(d.is_control_plane());
    let ip =
        d.talos.as_ref().and_then(|t| t.ip).ok_or_else(|| {
            StepError::new(format!("{} has no static address to bootstrap", d.name))
        })?;
    Ok((d, ip))
}

pub(super) async fn bootstrap(env: &Env, vmid: u32) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let (_, ip) = first_control_plane(env, vmid)?;
    let opts = talos_opts(env);
    let builder =
        talos::admin_client(cluster, bundle, ip).map_err(|e| StepError::new(e.to_string()))?;
    crate::engine::waits::announce(&format!("the control plane at {ip}"), opts.deadline);
    let client = crate::engine::waits::mtls_ready(&builder, &opts, &ip.to_string())
        .await
        .map_err(|e| {
            if e.hint.is_some() {
                e
            } else {
                StepError::new(format!("control plane not ready: {}", e.message))
            }
        })?;
    let detail = if talos::etcd_running(cluster, bundle, ip).await {
        if env.restore_etcd.is_some() {
            return Err(StepError::new(format!(
                "etcd already runs on {ip}: the snapshot was not restored"
            ))
            .hint("a restore goes onto fresh control planes: `homelab-cli down`, then `homelab-cli up --restore-etcd FILE`"));
        }
        "already bootstrapped"
    } else if let Some(data) = &env.restore_etcd {
        // EtcdRecover, then Bootstrap with recover_etcd (docs/disaster-recovery.md).
        crate::engine::etcd_backup::restore_onto(&client, data.clone(), false, &opts)
            .await
            .map_err(|e| StepError::new(format!("{e}")))?;
        "recovered from the etcd snapshot"
    } else {
        match client.bootstrap().await {
            Ok(_) => "bootstrapped",
            // Someone (or an earlier interrupted run) got there first.
            Err(e) if e.is_already_exists() => "already bootstrapped",
            Err(e) => return Err(StepError::new(format!("bootstrap: {e}"))),
        }
    };
    talos_api::health::wait_etcd_healthy(&client, &opts)
        .await
        .map_err(|e| StepError::new(format!("etcd: {e}")))?;
    Ok(detail.into())
}

pub(super) async fn health(env: &Env) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let kubeconfig = talos::direct_kubeconfig(&env.desired, cluster, bundle)
        .map_err(|e| StepError::new(e.to_string()))?;
    let opts = talos_opts(env);
    crate::engine::waits::announce("Kubernetes to be ready", opts.deadline);
    talos_api::health::wait_kubernetes_ready(&kubeconfig, &opts)
        .await
        .map_err(|e| {
            StepError::new(format!("Kubernetes is not ready: {e}")).hint(
                "`homelab-cli status` shows each node; re-run `homelab-cli up` once they are up",
            )
        })?;
    Ok("ready".into())
}

/// VMIDs of control planes.
pub fn control_planes(desired: &Desired) -> Vec<u32> {
    desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .map(|g| g.vmid)
        .collect()
}
