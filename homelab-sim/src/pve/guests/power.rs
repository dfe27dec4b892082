//! Power: start, stop, shutdown, reboot.

use super::*;

// ----------------------------------------------------------------------------- power

pub(super) fn prefix(kind: Kind) -> &'static str {
    if kind == Kind::Qemu { "qm" } else { "vz" }
}

/// Takes the guest's lock, then runs `work` as the guest's `qm<action>`/`vz<action>` task on
/// `node`; the reply is the task's UPID.
pub(super) async fn guest_task<F, Fut>(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    node: &str,
    vmid: u32,
    action: &str,
    work: F,
) -> ApiResult<Reply>
where
    F: FnOnce(TaskCtx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let guard = sim.lock_guest(kind, vmid).await?;
    let ty = format!("{}{action}", prefix(kind));
    let upid = sim.spawn_task(
        node,
        &ty,
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        work,
    );
    Ok(json!(upid).into())
}

/// Stopping and rebooting need a running guest that no lock (bar a `skiplock`) holds.
pub(super) fn check_running(
    sim: &Sim,
    kind: Kind,
    node: &str,
    vmid: u32,
    p: &Params,
) -> ApiResult<()> {
    let st = sim.state();
    let g = guest(&st, kind, node, vmid)?;
    if !g.running {
        return Err(ApiError::fail(format!(
            "{} {vmid} not running",
            kind.label()
        )));
    }
    check_lock(g, p)
}

pub(super) async fn start(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        check_lock(g, p)?;
        if g.is_template() {
            return Err(ApiError::fail(format!(
                "you can't start a {} if it's a template",
                g.kind.label()
            )));
        }
    }
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "start",
        move |ctx| async move {
            let g = {
                let st = ctx.sim.state();
                let g =
                    guest(&st, kind, &node, vmid).map_err(|e| e.message.trim_end().to_string())?;
                if g.running {
                    return Err(format!("{} {vmid} already running", kind.label()));
                }
                crate::pve::sdn::check_bridges(&st, g)?;
                g.clone()
            };
            claim_pci(&ctx.sim, &g)?;
            power_on(&ctx.sim, g).map_err(|e| format!("start failed: {e}"))
        },
    )
    .await
}

pub(super) async fn stop(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    p: &Params,
    how: &str,
) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_running(sim, kind, &node, vmid, p)?;
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        how,
        move |ctx| async move {
            power_off(&ctx.sim, &node, vmid);
            Ok(())
        },
    )
    .await
}

pub(super) async fn reboot(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_running(sim, kind, &node, vmid, p)?;
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "reboot",
        move |ctx| async move {
            power_off(&ctx.sim, &node, vmid);
            let g = ctx
                .sim
                .state()
                .guests
                .get(&vmid)
                .cloned()
                .ok_or_else(|| format!("{} {vmid} vanished", kind.label()))?;
            claim_pci(&ctx.sim, &g)?;
            power_on(&ctx.sim, g).map_err(|e| format!("start failed: {e}"))
        },
    )
    .await
}
