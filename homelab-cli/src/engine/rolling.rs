//! Health gates of a rolling Talos upgrade, beyond "the node answers with the new
//! version": etcd healthy on every control plane (each node's `etcd` service, asked
//! through apid's proxying, as `talosctl health` asks every node), and the node's
//! Kubernetes Node `Ready`; and the batches workers roll in (`talos.upgrade.max_unavailable`).

use std::net::IpAddr;

use talos_api::client::Client;

use super::apply::Env;
use super::graph::StepError;
use super::talos;

/// Split `ids` into consecutive batches of at most `max` (at least one per batch).
pub fn batches<T: Clone>(ids: &[T], max: u32) -> Vec<Vec<T>> {
    let size = usize::try_from(max.max(1)).unwrap_or(1);
    ids.chunks(size).map(<[T]>::to_vec).collect()
}

/// Wait until etcd is running and healthy on every control plane in `cps` (asked through
/// `client`'s node, which proxies to the others); a node that does not answer (rebooting)
/// counts as unhealthy.
pub async fn wait_etcd_everywhere(
    client: &Client,
    cps: &[IpAddr],
    opts: &talos_api::health::WaitOptions<'_>,
) -> Result<(), talos_api::Error> {
    let targets: Vec<String> = cps.iter().map(ToString::to_string).collect();
    let c = client.with_nodes(targets);
    talos_api::health::wait_for("etcd healthy on every control plane", opts, || {
        let c = c.clone();
        async move {
            let lists = c.service_list().await?;
            let sick: Vec<String> = lists
                .iter()
                .filter(|l| {
                    !l.services
                        .iter()
                        .any(|s| s.id == "etcd" && s.health.as_ref().is_some_and(|h| h.healthy))
                })
                .map(|l| {
                    l.metadata
                        .as_ref()
                        .map(|m| m.hostname.clone())
                        .unwrap_or_default()
                })
                .collect();
            if sick.is_empty() && lists.len() >= cps.len() {
                Ok(())
            } else {
                Err(talos_api::Error::InvalidConfig(format!(
                    "etcd not healthy on {}",
                    sick.join(", ")
                )))
            }
        }
    })
    .await
}

/// Wait until the Kubernetes Node of `name`/`ip` is Ready (skipped when the cluster has no
/// Kubernetes API to ask, e.g. before bootstrap).
pub async fn wait_node_ready(
    env: &Env,
    name: &str,
    ip: IpAddr,
    opts: &talos_api::health::WaitOptions<'_>,
) -> Result<(), StepError> {
    let (Some(cluster), Some(bundle)) = (env.desired.talos.as_ref(), env.bundle.get()) else {
        return Ok(());
    };
    let kc = talos::direct_kubeconfig(&env.desired, cluster, bundle)
        .map_err(|e| StepError::new(format!("kubeconfig: {e}")))?;
    let k = talos_api::kube::KubeClient::from_kubeconfig(&kc)
        .map_err(|e| StepError::new(format!("kubeconfig: {e}")))?;
    let ip_text = ip.to_string();
    talos_api::health::wait_for("the Kubernetes node to be Ready", opts, || {
        let k = k.clone();
        let ip_text = ip_text.clone();
        async move {
            let nodes = k.nodes().await?;
            match nodes
                .iter()
                .find(|n| n.name == name || n.addresses.contains(&ip_text))
            {
                Some(n) if n.ready => Ok(()),
                Some(n) => Err(talos_api::Error::InvalidConfig(
                    n.not_ready_reason.clone().unwrap_or_default(),
                )),
                None => Err(talos_api::Error::InvalidConfig(format!(
                    "no Node {name} yet"
                ))),
            }
        }
    })
    .await
    .map_err(|e| StepError::new(format!("Kubernetes node: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_roll_in_batches_of_max_unavailable() {
        assert_eq!(batches(&[1, 2, 3], 1), vec![vec![1], vec![2], vec![3]]);
        assert_eq!(batches(&[1, 2, 3], 2), vec![vec![1, 2], vec![3]]);
        assert_eq!(batches(&[1, 2, 3], 5), vec![vec![1, 2, 3]]);
        assert_eq!(batches(&[1, 2], 0), vec![vec![1], vec![2]]);
        assert!(batches::<u32>(&[], 2).is_empty());
    }
}
