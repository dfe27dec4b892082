//! Guest agent (QEMU) and LXC interface listing.

use super::*;

// ----------------------------------------------------------------------------- agent

pub(super) fn agent(sim: &Sim, p: &Params, command: &str) -> ApiResult<Reply> {
    let node = req(p, "node")?;
    let vmid = vmid_of(p, "vmid")?;
    let (cfg, running, name) = {
        let st = sim.state();
        let g = guest(&st, Kind::Qemu, node, vmid)?;
        (g.effective(), g.running, g.name())
    };
    if !agent_enabled(&cfg) {
        return Err(ApiError::fail("No QEMU guest agent configured"));
    }
    if !running {
        return Err(ApiError::fail(format!("VM {vmid} is not running")));
    }
    let Some(addrs) = sim.agent_addresses(vmid) else {
        return Err(ApiError::fail("QEMU guest agent is not running"));
    };
    let result = match command {
        "ping" => json!({}),
        "info" => json!({"version": "9.2.0", "supported_commands": []}),
        "get-host-name" => json!({"host-name": name}),
        "get-osinfo" => {
            json!({"id": "talos", "name": "Talos", "kernel-release": "6.12.57-talos", "machine": "x86_64"})
        }
        "network-get-interfaces" => {
            let mac = cfg
                .get("net0")
                .and_then(|n| net_mac(n))
                .unwrap_or_else(|| "BC:24:11:00:00:00".into())
                .to_lowercase();
            let ips: Vec<Value> = addrs
                .iter()
                .map(|a| {
                    json!({
                        "ip-address": a.to_string(),
                        "ip-address-type": if a.is_ipv4() { "ipv4" } else { "ipv6" },
                        "prefix": if a.is_ipv4() { 24 } else { 64 },
                    })
                })
                .collect();
            let stats = json!({"rx-bytes": 0, "rx-packets": 0, "rx-errs": 0, "rx-dropped": 0, "tx-bytes": 0, "tx-packets": 0, "tx-errs": 0, "tx-dropped": 0});
            json!([
                {
                    "name": "lo",
                    "hardware-address": "00:00:00:00:00:00",
                    "ip-addresses": [
                        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}
                    ],
                    "statistics": stats,
                },
                {
                    "name": "eth0",
                    "hardware-address": mac,
                    "ip-addresses": ips,
                    "statistics": stats,
                }
            ])
        }
        other => {
            return Err(ApiError::param(
                "command",
                format!("value '{other}' does not have a value in the enumeration"),
            ));
        }
    };
    Ok(json!({ "result": result }).into())
}

pub(super) fn lxc_interfaces(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?;
    let vmid = vmid_of(p, "vmid")?;
    let (cfg, running) = {
        let st = sim.state();
        let g = guest(&st, Kind::Lxc, node, vmid)?;
        (g.effective(), g.running)
    };
    if !running {
        return Err(ApiError::fail(format!("CT {vmid} not running")));
    }
    let addrs = sim.addresses(vmid);
    let mut list = vec![
        json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"}),
    ];
    let mac = cfg
        .get("net0")
        .and_then(|n| net_mac(n))
        .unwrap_or_default()
        .to_lowercase();
    let mut eth = json!({"name": "eth0", "hwaddr": mac});
    if let Some(o) = eth.as_object_mut() {
        if let Some(a) = addrs.iter().find(|a| a.is_ipv4()) {
            o.insert("inet".into(), json!(format!("{a}/24")));
        }
        if let Some(a) = addrs.iter().find(|a| a.is_ipv6()) {
            o.insert("inet6".into(), json!(format!("{a}/64")));
        }
    }
    list.push(eth);
    Ok(Value::Array(list).into())
}
