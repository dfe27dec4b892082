//! Creating a guest again after its create task hit a lock timeout (issue 18: `up` under
//! lock timeouts succeeds in one run).
//!
//! A lock timeout inside the create worker (`cfs-lock 'storage-local-lvm' error: got lock
//! request timeout` while allocating a volume, `can't lock file ... - got timeout`) fails the
//! task before anything is kept: pve-container `PVE::API2::LXC` `create_vm` and qemu-server
//! `PVE::API2::Qemu` `create_vm` destroy the volumes they allocated and the configuration when
//! their worker dies. So the create is sent again (at most [`ATTEMPTS`] times, the reason
//! logged) once the guest is confirmed gone; any other failure is reported as it is.

use super::*;

/// Create attempts in all.
const ATTEMPTS: u32 = 4;

/// Whether a task's failure text is a lock timeout.
fn is_lock_timeout(message: &str) -> bool {
    message.contains("got lock request timeout") || message.contains("- got timeout")
}

/// Send the create and wait for its task, again after a lock timeout that left nothing.
pub(super) async fn create_guest(
    env: &Env,
    client: &Client,
    d: &DesiredGuest,
    create: &GuestCreate,
) -> Result<(), StepError> {
    let mut attempt = 1;
    loop {
        let task = client
            .node(&d.node)
            .create_guest(d.kind.into(), create)
            .await
            .map_err(|e| feature_hint(&e, StepError::new(format!("create: {e}"))))?;
        let err = match finish(env, task, "create").await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if attempt >= ATTEMPTS || !is_lock_timeout(&err.message) || !gone(env, d).await {
            return Err(err);
        }
        tracing::warn!(
            vmid = d.vmid,
            attempt,
            reason = %err.message,
            "the create task hit a lock timeout and left nothing; creating again"
        );
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        attempt += 1;
    }
}

/// A start that found the guest already running reached what it wanted: a start task of an
/// interrupted run may have finished between the status read and this start (qemu-server
/// `vm_start` dies with `VM <vmid> already running`, pve-container with `CT <vmid> already
/// running`).
fn started_meanwhile(vmid: u32, outcome: Result<(), StepError>) -> Result<(), StepError> {
    match outcome {
        Err(e) if e.message.contains(&format!("{vmid} already running")) => {
            tracing::info!(vmid, "already running (started meanwhile)");
            Ok(())
        }
        other => other,
    }
}

/// Start a guest and wait for it; one found running already counts as started.
pub(super) async fn start(
    env: &Env,
    node: &str,
    kind: GuestKind,
    vmid: u32,
) -> Result<(), StepError> {
    let outcome = match guest_on(&env.pve, node, kind, vmid)
        .start(&StartOptions::default())
        .await
    {
        Ok(task) => finish(env, task, "start").await,
        Err(e) => Err(StepError::new(format!("start: {e}"))),
    };
    started_meanwhile(vmid, outcome)
}

/// After a digest mismatch: when tasks of the guest were still running on the host (an
/// interrupted run's change), wait for them and return the digest of the configuration they
/// left. The same when such a task, already under way when the plan was read, has ended
/// since. `None` when nothing was in flight at plan time (someone else changed the guest
/// since: the plan is stale).
pub(super) async fn settled_digest(
    env: &Env,
    node: &str,
    kind: GuestKind,
    vmid: u32,
) -> Option<String> {
    let active = crate::engine::recover::active_tasks(&env.pve, node, vmid)
        .await
        .ok()?;
    if active.is_empty() {
        let ended = crate::engine::recover::ended_since(&env.pve, node, vmid, env.observed.read_at)
            .await
            .ok()?;
        if !ended {
            return None;
        }
        tracing::warn!(
            vmid,
            "a change under way when the plan was read has ended since; sending the planned change over it"
        );
    }
    for upid in &active {
        let Ok(parsed) = upid.parse::<Upid>() else {
            continue;
        };
        tracing::warn!(%upid, vmid, "the configuration changed under a task still running; waiting for it");
        let _ = env.pve.wait_task(&parsed, &wait_opts(env)).await;
    }
    guest_on(&env.pve, node, kind, vmid)
        .config()
        .await
        .ok()?
        .digest
}

/// The guest does not exist (its failed create cleaned up after itself).
async fn gone(env: &Env, d: &DesiredGuest) -> bool {
    match guest_on(&env.pve, &d.node, d.kind, d.vmid).status().await {
        Err(e) => e.is_not_found(),
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeouts_are_recognised() {
        assert!(is_lock_timeout(
            "create: task UPID:pve:1:2:3:vzcreate:105:root@pam: failed: unable to create CT 105 - cfs-lock 'storage-tank' error: got lock request timeout"
        ));
        assert!(is_lock_timeout(
            "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"
        ));
        assert!(!is_lock_timeout("unable to create CT 105 - no space left"));
    }

    #[test]
    fn a_guest_already_running_counts_as_started() {
        let running = StepError::new(
            "start: task UPID:pve:1:2:3:vzstart:117:root@pam: failed: CT 117 already running",
        );
        assert!(started_meanwhile(117, Err(running)).is_ok());
        let other = StepError::new("start: task failed: CT 118 already running");
        assert!(started_meanwhile(117, Err(other)).is_err());
        let failed = StepError::new("start: task failed: no such disk");
        assert!(started_meanwhile(117, Err(failed)).is_err());
    }
}
