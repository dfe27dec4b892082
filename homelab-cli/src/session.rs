//! What `plan`, `up`, `down` and `status` share: open the repository, decrypt secrets,
//! resolve the desired state, connect to Proxmox (or start the simulated lab), observe and
//! plan.

use std::path::{Path, PathBuf};

use miette::miette;
use talos_api::secrets::SecretsBundle;

use crate::engine::image::FactoryNaming;
use crate::engine::observe;
use crate::engine::observed::{Observed, TalosObserved};
use crate::engine::plan::{self, Plan};
use crate::engine::talos::{self, NodeState};
use crate::model::desired::{self, Desired};
use crate::simlab::SimLab;
#[cfg(feature = "sim")]
use crate::simlab::{SimOptions, state_dir};
use crate::workspace::Workspace;

/// `--simulate` and its knobs, shared by plan/up/down/status.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimArgs {
    /// Run against the simulated lab kept in `.homelab/sim/` beside the config.
    #[cfg_attr(feature = "sim", arg(long))]
    #[cfg_attr(not(feature = "sim"), arg(skip))]
    pub simulate: bool,
    /// With --simulate: latency added to every Proxmox API answer, in milliseconds.
    #[cfg_attr(
        feature = "sim",
        arg(long, value_name = "MS", requires = "simulate", hide = true)
    )]
    #[cfg_attr(not(feature = "sim"), arg(skip))]
    pub sim_latency_ms: Option<u64>,
}

/// An open homelab: config, secrets, desired state and a Proxmox connection.
#[derive(Debug)]
pub struct Session {
    /// The repository.
    pub ws: Workspace,
    /// Desired state.
    pub desired: Desired,
    /// Proxmox.
    pub pve: proxmox_client::Client,
    /// Proxmox as `root@pam`, when `proxmox.root_password` is set.
    pub pve_root: Option<proxmox_client::Client>,
    /// Factory base URL override (simulated lab).
    pub factory_base: Option<url::Url>,
    /// The simulated lab, when `--simulate`.
    pub sim: Option<SimLab>,
    /// How long `up` waits for each Talos node (`--talos-timeout`); the default otherwise.
    pub talos_timeout: Option<std::time::Duration>,
    /// How machine-config changes on running nodes are applied (`--config-mode`).
    pub config_mode: crate::engine::config_change::ConfigMode,
    /// `up --restore-etcd`: the decrypted snapshot the bootstrap recovers etcd from.
    pub restore_etcd: Option<crate::engine::etcd_backup::Plain>,
}

impl Session {
    /// Open `config`; with `sim.simulate`, start the simulated lab and point everything at it.
    pub async fn open(config: &Path, sim: &SimArgs) -> miette::Result<Session> {
        Self::open_env(config, None, sim).await
    }

    /// [`Session::open`] with environment `env`'s overlay merged onto the config.
    pub async fn open_env(
        config: &Path,
        env: Option<&str>,
        sim: &SimArgs,
    ) -> miette::Result<Session> {
        let ws = Workspace::open_env(config, env)?;
        let secrets = ws.secrets()?;
        #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
        let mut lab = None;
        #[cfg(not(feature = "sim"))]
        let _ = sim;
        #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
        let mut naming = FactoryNaming::default();
        #[cfg(feature = "sim")]
        if sim.simulate {
            // Every node a guest is placed on exists in the simulated cluster.
            let c = &ws.loaded.config;
            let mut nodes = vec![c.proxmox.node.clone()];
            if let Some(t) = &c.talos {
                nodes.extend(t.nodes.iter().filter_map(|n| n.node.clone()));
            }
            if let Some(x) = &c.lxc {
                nodes.extend(x.containers.iter().filter_map(|n| n.node.clone()));
            }
            if let Some(v) = &c.vms {
                nodes.extend(v.machines.iter().filter_map(|n| n.node.clone()));
                nodes.extend(v.templates.iter().filter_map(|n| n.node.clone()));
            }
            nodes.sort();
            nodes.dedup();
            let s = SimLab::start(
                &state_dir(&ws.loaded.dir),
                &SimOptions {
                    nodes,
                    latency: std::time::Duration::from_millis(sim.sim_latency_ms.unwrap_or(0)),
                    task_duration: None,
                },
            )
            .await?;
            naming.base = url::Url::parse(&s.factory.base_url()).ok();
            lab = Some(s);
        }
        #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
        let mut desired = desired::resolve(&ws.loaded, &secrets, &naming)?;
        drop(secrets);
        #[cfg(feature = "sim")]
        if let Some(s) = &lab {
            // The simulated lab has its own address, token and certificate.
            desired.proxmox.endpoint = s.lab.pve_url();
            desired.proxmox.token_id = s.lab.token_id().to_string();
            desired.proxmox.token_secret = s.lab.token_secret().to_string().into();
            desired.proxmox.fingerprint = Some(s.lab.fingerprint());
            // Root access exists in the simulated lab only where the config asks for it.
            if desired.proxmox.root_password.is_some() {
                desired.proxmox.root_password = Some(s.lab.root_password().to_string().into());
            }
            desired.proxmox.ssh = Some(crate::model::desired::SshAccess {
                host: s.ssh.host.clone(),
                port: s.ssh.port,
                user: s.ssh.user.clone(),
                private_key: s.ssh.private_key.clone(),
                host_key: s.ssh.host_key.clone(),
                hosts: Default::default(),
                host_keys: Default::default(),
            });
        }
        if !desired.snippets.is_empty() && desired.proxmox.ssh.is_none() {
            return Err(miette!(
                help = "Proxmox cannot upload snippets through its API: add `proxmox.ssh` (private key as a secret, pinned host key), or drop `packages`/`user_data`",
                "{} VM(s) need a cloud-init snippet, and `proxmox.ssh` is not set",
                desired.snippets.len()
            ));
        }
        let pve = connect(&desired)?;
        #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
        let mut pve_root = connect_root(&desired)?;
        #[cfg(feature = "sim")]
        if pve_root.is_none()
            && let Some(s) = &lab
        {
            // The simulated host is the user's own: its root login repairs what a killed
            // `--simulate` run left locked (`skiplock`), as `qm unlock` on a real node would.
            let mut d = desired.clone();
            d.proxmox.root_password = Some(s.lab.root_password().to_string().into());
            pve_root = connect_root(&d)?;
        }
        Ok(Session {
            ws,
            desired,
            pve,
            pve_root,
            factory_base: naming.base,
            sim: lab,
            talos_timeout: None,
            config_mode: Default::default(),
            restore_etcd: None,
        })
    }

    /// The Image Factory client.
    pub fn factory(&self) -> miette::Result<talos_factory::FactoryClient> {
        let base = match (&self.factory_base, &self.desired.talos) {
            (Some(b), _) => b.to_string(),
            (None, Some(t)) => t.factory.clone(),
            (None, None) => talos_factory::PUBLIC_FACTORY_URL.to_string(),
        };
        talos_factory::FactoryClient::builder()
            .base_url(base.trim_end_matches('/'))
            .build()
            .map_err(|e| miette!("cannot set up the Image Factory client: {e}"))
    }

    /// Read the Talos secrets bundle, if it exists.
    pub fn bundle(&self) -> miette::Result<Option<SecretsBundle>> {
        let Some(t) = &self.desired.talos else {
            return Ok(None);
        };
        let Some(plain) = self.ws.decrypt(&t.secrets_file)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&plain)
            .map_err(|_| miette!("{} is not UTF-8", t.secrets_file.display()))?;
        talos::bundle_from_yaml(text)
            .map(Some)
            .map_err(|e| miette!("{}: {e}", t.secrets_file.display()))
    }

    /// Observe Proxmox and the Talos nodes, and plan.
    pub async fn plan(&self) -> miette::Result<Planned> {
        let mut observed = observe::observe(&self.pve, &self.desired)
            .await
            .map_err(|e| pve_error(&self.desired.proxmox.endpoint, e))?;
        observed.root_access = self.pve_root.is_some();
        if self.sim.is_some() {
            observed.sim_state = Some(crate::simlab::state_dir(&self.ws.loaded.dir));
        }
        let guest_plan =
            plan::plan(&self.desired, &observed).map_err(|e| miette!(help = e.help(), "{e}"))?;
        let jobs = crate::engine::backups::observe_for(&self.pve, !self.desired.backups.is_empty())
            .await
            .map_err(|e| pve_error(&self.desired.proxmox.endpoint, e))?;
        let guest_plan = plan::plan_backups(&self.desired, &jobs, guest_plan).map_err(|e| {
            miette!(
                help = "rename the job in homelab.yaml, or remove the other job yourself",
                "{e}"
            )
        })?;
        let (guest_plan, observed) = self.plan_sdn(guest_plan, observed).await?;
        let bundle = self.bundle()?;
        let talos_obs = self.observe_talos(&observed, bundle.as_ref()).await?;
        crate::engine::recover::check_bundle(&self.desired, &talos_obs, &guest_plan)
            .map_err(|e| miette!(help = e.help(), "{e}"))?;
        if let Some(k) = &talos_obs.kubernetes {
            crate::engine::k8s_upgrade::plan(&self.desired, k).map_err(|e| {
                miette!(
                    help = "change `talos.cluster.kubernetes_version` one minor version at a time, within what `talos.version` supports",
                    "kubernetes upgrade: {e}"
                )
            })?;
        }
        let plan = plan::plan_talos(&self.desired, &talos_obs, guest_plan);
        let plan = crate::engine::config_change::plan_config_changes(
            &self.desired,
            &talos_obs.running,
            bundle.as_ref(),
            self.config_mode,
            plan,
        )
        .and_then(|plan| {
            crate::engine::metal_config::plan_config_changes(
                &self.desired,
                &talos_obs,
                bundle.as_ref(),
                self.config_mode,
                plan,
            )
        })
        .map_err(|e| {
            miette!(
                help = "`homelab-cli config resolve --node NAME` shows the config a node gets",
                "{e}"
            )
        })?;
        let membership =
            crate::engine::membership::observe(&self.desired, &talos_obs, bundle.as_ref()).await;
        let plan = crate::engine::membership::plan(&self.desired, &talos_obs, &membership, plan)
            .map_err(|e| miette!(help = e.help(), "{e}"))?;
        Ok(Planned {
            plan,
            observed,
            talos: talos_obs,
            bundle,
        })
    }

    /// Add the SDN actions (only when `sdn:` is declared). Deleting a vnet needs to know
    /// which guests use it: then every guest's configuration is read.
    async fn plan_sdn(
        &self,
        guest_plan: plan::Plan,
        mut observed: Observed,
    ) -> miette::Result<(plan::Plan, Observed)> {
        let Some(want) = &self.desired.sdn else {
            return Ok((guest_plan, observed));
        };
        let err = |e| pve_error(&self.desired.proxmox.endpoint, e);
        let sdn = crate::engine::sdn::observe(&self.pve, want, &self.desired.lab)
            .await
            .map_err(err)?;
        if !sdn
            .undeclared_owned_vnets(want, &self.desired.lab)
            .is_empty()
        {
            let unread = observed
                .guests
                .iter()
                .filter(|g| g.config.is_none())
                .map(|g| (g.node.clone(), g.kind, g.vmid))
                .collect();
            observe::read_configs(&self.pve, &mut observed, unread)
                .await
                .map_err(err)?;
        }
        let p = plan::plan_sdn(&self.desired, &sdn, &observed, guest_plan)
            .map_err(|e| miette!(help = e.help(), "{e}"))?;
        Ok((p, observed))
    }

    /// Probe the Talos nodes that exist and run, and check the outputs.
    pub async fn observe_talos(
        &self,
        observed: &Observed,
        bundle: Option<&SecretsBundle>,
    ) -> miette::Result<TalosObserved> {
        let mut out = TalosObserved::default();
        let Some(cluster) = &self.desired.talos else {
            return Ok(out);
        };
        out.secrets_present = bundle.is_some();
        out.metal = crate::engine::metal::observe(&self.desired, bundle).await;
        let probes = self.desired.guests.iter().filter_map(|g| {
            let member = g.talos.as_ref()?;
            let og = observed.guest(g.vmid)?;
            if og.status != "running" {
                return None;
            }
            let ip = member.ip?;
            Some(async move { (g.vmid, member.role, ip, talos::probe(ip).await) })
        });
        let results = futures_util::future::join_all(probes).await;
        for (vmid, _, _, state) in &results {
            if *state == NodeState::Configured {
                out.configured.insert(*vmid);
            }
        }
        if let Some(b) = bundle {
            for (_, role, ip, state) in &results {
                if *role == crate::model::config::Role::Controlplane
                    && *state == NodeState::Configured
                    && talos::etcd_running(cluster, b, *ip).await
                {
                    out.bootstrapped = true;
                    break;
                }
            }
            let running: Vec<(u32, std::net::IpAddr)> = results
                .iter()
                .filter(|(_, _, _, s)| *s == NodeState::Configured)
                .map(|(vmid, _, ip, _)| (*vmid, *ip))
                .collect();
            (out.versions, out.foreign_ca) =
                crate::engine::day2::observe_versions_and_trust(cluster, b, &running).await;
            out.running = crate::engine::config_change::observe(cluster, b, &running).await;
            if out.bootstrapped
                && let Ok(kc) = talos::direct_kubeconfig(&self.desired, cluster, b)
            {
                out.kubernetes = crate::engine::k8s_upgrade::observe(&kc).await.ok();
            }
            let cps = talos::control_plane_ips(&self.desired);
            if let Ok(Some(t)) = self.ws.decrypt(&self.desired.outputs.talosconfig) {
                out.talosconfig_current = std::str::from_utf8(&t)
                    .is_ok_and(|t| talos::talosconfig_current(t, cluster, b, &cps));
                let path = self.desired.outputs.talosconfig.display().to_string();
                if let Some(c) = std::str::from_utf8(&t)
                    .ok()
                    .and_then(|t| crate::engine::certs::inspect("talosconfig", &path, t))
                    .filter(|c| c.renew)
                {
                    out.talosconfig_current = false;
                    out.renew.push(c);
                }
            }
            if let Ok(Some(k)) = self.ws.decrypt(&self.desired.outputs.kubeconfig) {
                out.kubeconfig_current =
                    std::str::from_utf8(&k).is_ok_and(|k| talos::kubeconfig_current(k, cluster, b));
                let path = self.desired.outputs.kubeconfig.display().to_string();
                if let Some(c) = std::str::from_utf8(&k)
                    .ok()
                    .and_then(|k| crate::engine::certs::inspect("kubeconfig", &path, k))
                    .filter(|c| c.renew)
                {
                    out.kubeconfig_current = false;
                    out.renew.push(c);
                }
            }
        }
        Ok(out)
    }

    /// Stop the simulated lab (if any), waiting for its state to be saved.
    pub async fn close(self) {
        if let Some(s) = self.sim {
            s.shutdown().await;
        }
    }
}

/// The outcome of observing and planning.
#[derive(Debug)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// Proxmox as observed.
    pub observed: Observed,
    /// Talos as observed.
    pub talos: TalosObserved,
    /// The secrets bundle, when it exists.
    pub bundle: Option<SecretsBundle>,
}

/// A client logged in as `root@pam` with its password (ticket), if one is configured.
pub fn connect_root(desired: &Desired) -> miette::Result<Option<proxmox_client::Client>> {
    let p = &desired.proxmox;
    let Some(pw) = &p.root_password else {
        return Ok(None);
    };
    let mut b = proxmox_client::Client::builder()
        .base_url(&p.endpoint)
        .password("root@pam", secrecy::ExposeSecret::expose_secret(pw));
    if let Some(fp) = &p.fingerprint {
        b = b.pin_fingerprint(fp);
    }
    b.build().map(Some).map_err(|e| {
        miette!(
            help = "check `proxmox.endpoint` and `proxmox.fingerprint`",
            "cannot set up the root@pam Proxmox client: {e}"
        )
    })
}

/// A Proxmox client for the desired connection.
pub fn connect(desired: &Desired) -> miette::Result<proxmox_client::Client> {
    let p = &desired.proxmox;
    let mut b = proxmox_client::Client::builder()
        .base_url(&p.endpoint)
        .api_token(
            &p.token_id,
            secrecy::ExposeSecret::expose_secret(&p.token_secret),
        );
    if let Some(fp) = &p.fingerprint {
        b = b.pin_fingerprint(fp);
    }
    b.build().map_err(|e| {
        miette!(
            help = "check `proxmox.endpoint`, `proxmox.token_id` and `proxmox.fingerprint`",
            "cannot set up the Proxmox client: {e}"
        )
    })
}

/// A Proxmox error with advice.
pub fn pve_error(endpoint: &str, e: proxmox_client::Error) -> miette::Report {
    let text = e.to_string();
    let help = if e.is_auth() {
        "the API token was refused: check `proxmox.token_id`/`token_secret` in the secrets file"
    } else if e.is_permission_denied() {
        "the token lacks a privilege; `homelab-cli proxmox token create` makes one with the right role"
    } else if e.is_untrusted_certificate() {
        "pin the node certificate with `proxmox.fingerprint` (Proxmox UI: node → System → Certificates)"
    } else {
        "is Proxmox reachable at `proxmox.endpoint`?"
    };
    miette!(help = help, "Proxmox VE at {endpoint}: {text}")
}

/// The directory of the config file.
pub fn config_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
