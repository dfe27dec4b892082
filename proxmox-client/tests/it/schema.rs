//! Every request the typed client can build, checked against the official PVE 9.1 API
//! schema (`../shared/pve-api-schema/apidata.js`): path, method, parameter names, types,
//! ranges, enums, required parameters, and the keys inside property strings.

use proxmox_client::sdn::SdnView;
use std::collections::{BTreeMap, BTreeSet};

use proxmox_client::ParamValue;
use proxmox_client::property::*;
use proxmox_client::requests::*;
use proxmox_client::{ApiRequest, ResourceFilter, Upid};
use serde_json::Value;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/pve-api-schema/apidata.js"
);

struct Endpoint {
    segments: Vec<String>,
    methods: BTreeMap<String, Value>,
}

fn load_schema() -> Option<Vec<Endpoint>> {
    let text = match std::fs::read_to_string(SCHEMA) {
        Ok(t) => t,
        Err(_) => {
            crate::common::skip_or_fail(&format!(
                "PVE API schema not found at {SCHEMA}; schema conformance NOT checked"
            ));
            return None;
        }
    };
    let start = text.find('[').expect("array start");
    let end = text.rfind(']').expect("array end");
    let tree: Value = serde_json::from_str(&text[start..=end]).expect("schema is JSON");
    let mut out = Vec::new();
    fn walk(n: &Value, out: &mut Vec<Endpoint>) {
        if let (Some(path), Some(info)) = (n["path"].as_str(), n["info"].as_object()) {
            out.push(Endpoint {
                segments: path
                    .trim_start_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect(),
                methods: info.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
        }
        for c in n["children"].as_array().into_iter().flatten() {
            walk(c, out);
        }
    }
    for n in tree.as_array().expect("array") {
        walk(n, &mut out);
    }
    assert!(
        out.len() > 400,
        "schema looks truncated: {} paths",
        out.len()
    );
    Some(out)
}

/// Finds the schema endpoint for a concrete path; literal segments beat placeholders.
fn match_path<'a>(
    schema: &'a [Endpoint],
    path: &str,
) -> Option<(&'a Endpoint, BTreeMap<String, String>)> {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| proxmox_client::percent_decode(s).expect("decodable path"))
        .collect();
    let mut best: Option<(usize, &Endpoint, BTreeMap<String, String>)> = None;
    for e in schema {
        if e.segments.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let mut vars = BTreeMap::new();
        let mut ok = true;
        for (t, s) in e.segments.iter().zip(&segs) {
            if t.starts_with('{') && t.ends_with('}') {
                vars.insert(t[1..t.len() - 1].to_string(), s.clone());
            } else if t == s {
                literal += 1;
            } else {
                ok = false;
                break;
            }
        }
        if ok && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
            best = Some((literal, e, vars));
        }
    }
    best.map(|(_, e, v)| (e, v))
}

fn schema_prop<'a>(props: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(name) {
        return Some(p);
    }
    let (prefix, _) = split_indexed_key(name)?;
    props.get(&format!("{prefix}[n]"))
}

fn is_optional(p: &Value) -> bool {
    match &p["optional"] {
        Value::Number(n) => n.as_i64() == Some(1),
        Value::Bool(b) => *b,
        _ => false,
    }
}

/// PVE matches patterns as `^(?:pattern)$` (Perl); `(?^:` is Perl's default-flags group.
/// Patterns the regex crate cannot compile are skipped.
fn anchored(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{})$", pattern.replace("(?^:", "(?:"))).ok()
}

/// Checks a wire value against a (sub-)schema; returns problems.
fn check_value(ctx: &str, schema: &Value, value: &ParamValue, problems: &mut Vec<String>) {
    let ty = schema["type"].as_str().unwrap_or("string");
    let wire = value.to_wire();
    match (ty, value) {
        ("boolean", ParamValue::Bool(_)) => {}
        ("integer", ParamValue::Int(i)) => {
            if let Some(min) = schema["minimum"].as_f64()
                && (*i as f64) < min
            {
                problems.push(format!("{ctx}: {i} below minimum {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && (*i as f64) > max
            {
                problems.push(format!("{ctx}: {i} above maximum {max}"));
            }
        }
        ("number", ParamValue::Int(_) | ParamValue::Num(_)) => {}
        ("string", ParamValue::Secret(_)) => {}
        ("string", ParamValue::Str(s)) => {
            if let Some(en) = schema["enum"].as_array()
                && !en.iter().any(|e| e.as_str() == Some(s))
            {
                problems.push(format!("{ctx}: '{s}' not in enum {en:?}"));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && s.len() as u64 > max
            {
                problems.push(format!("{ctx}: longer than {max}"));
            }
            if let Some(pat) = schema["pattern"].as_str()
                && let Some(re) = anchored(pat)
                && !re.is_match(s)
            {
                problems.push(format!("{ctx}: '{s}' does not match the pattern {pat}"));
            }
            if let Some(fmt) = schema["format"].as_object() {
                check_property_string(ctx, fmt, s, problems);
            }
            if schema["format"].as_str() == Some("urlencoded")
                && !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&b))
            {
                problems.push(format!("{ctx}: not a valid urlencoded string: {s}"));
            }
        }
        (ty, v) => problems.push(format!(
            "{ctx}: schema type {ty}, client sends {v:?} ('{wire}')"
        )),
    }
}

/// Checks the keys and typed sub-values of a property string against its inline format.
fn check_property_string(
    ctx: &str,
    fmt: &serde_json::Map<String, Value>,
    value: &str,
    problems: &mut Vec<String>,
) {
    let default_key = fmt
        .iter()
        .find(|(_, v)| v["default_key"].as_i64() == Some(1))
        .map(|(k, _)| k.as_str());
    let pairs = match parse_pairs(ctx, value, default_key) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{ctx}: '{value}' is not a property string: {e}"));
            return;
        }
    };
    for (k, v) in pairs {
        let Some(sub) = fmt.get(&k) else {
            problems.push(format!("{ctx}: key '{k}' not in the schema format"));
            continue;
        };
        if sub.get("alias").is_some() {
            continue;
        }
        let typed = match sub["type"].as_str() {
            Some("boolean") => match v.as_str() {
                "0" => ParamValue::Bool(false),
                "1" => ParamValue::Bool(true),
                _ => {
                    problems.push(format!("{ctx}.{k}: boolean sent as '{v}', not 0/1"));
                    continue;
                }
            },
            Some("integer") => match v.parse::<i64>() {
                Ok(i) => ParamValue::Int(i),
                Err(_) => {
                    problems.push(format!("{ctx}.{k}: '{v}' is not an integer"));
                    continue;
                }
            },
            Some("number") => ParamValue::Num(v.parse().unwrap_or(f64::NAN)),
            _ => ParamValue::Str(v),
        };
        check_value(&format!("{ctx}.{k}"), sub, &typed, problems);
    }
}

fn check_request(schema: &[Endpoint], label: &str, r: &ApiRequest) -> Vec<String> {
    let mut problems = Vec::new();
    let ctx = format!("{label}: {} {}", r.method, r.path);
    let Some((ep, vars)) = match_path(schema, &r.path) else {
        return vec![format!("{ctx}: path not in the schema")];
    };
    let Some(info) = ep.methods.get(r.method.as_str()) else {
        return vec![format!(
            "{ctx}: method not in the schema (has {:?})",
            ep.methods.keys().collect::<Vec<_>>()
        )];
    };
    let empty = serde_json::Map::new();
    let props = info["parameters"]["properties"]
        .as_object()
        .unwrap_or(&empty);
    let mut seen = BTreeSet::new();
    for (name, value) in &r.params {
        let prop = schema_prop(props, name);
        // Arrays travel as repeated keys; each element is checked against `items`.
        if let Some(p) = prop
            && p["type"].as_str() == Some("array")
        {
            seen.insert(name.clone());
            check_value(
                &format!("{ctx} {name}[]"),
                &p["items"],
                value,
                &mut problems,
            );
            continue;
        }
        if !seen.insert(name.clone()) {
            problems.push(format!("{ctx}: parameter '{name}' sent twice"));
        }
        if vars.contains_key(name) {
            problems.push(format!(
                "{ctx}: '{name}' is a path parameter, also sent as a parameter"
            ));
        }
        match schema_prop(props, name) {
            None => problems.push(format!("{ctx}: parameter '{name}' not in the schema")),
            Some(p) => check_value(&format!("{ctx} {name}"), p, value, &mut problems),
        }
    }
    for (name, value) in &vars {
        if let Some(p) = props.get(name) {
            let typed = match p["type"].as_str() {
                Some("integer") => match value.parse::<i64>() {
                    Ok(i) => ParamValue::Int(i),
                    Err(_) => {
                        problems.push(format!("{ctx}: path '{name}'='{value}' not an integer"));
                        continue;
                    }
                },
                _ => ParamValue::Str(value.clone()),
            };
            check_value(&format!("{ctx} path {name}"), p, &typed, &mut problems);
        }
    }
    for (name, p) in props {
        if !is_optional(p) && !vars.contains_key(name) && !seen.contains(name) {
            problems.push(format!("{ctx}: required parameter '{name}' missing"));
        }
    }
    problems
}

/// Every builder in `proxmox_client::requests`, called with every option set.
fn sdn_params(kv: &[(&str, &str)]) -> proxmox_client::sdn::SdnParams {
    proxmox_client::sdn::params_of(
        &kv.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

fn all_requests() -> Vec<(&'static str, ApiRequest)> {
    let upid: Upid = "UPID:pve:0003C2FF:00829204:6738AA7F:qmcreate:100:root@pam!homelab:"
        .parse()
        .unwrap();
    let mut q = QemuOptions {
        name: Some("talos-cp-1".into()),
        description: Some("managed by homelab".into()),
        tags: Some(vec!["Talos".into(), "k8s".into()]),
        memory: Some(4096),
        balloon: Some(0),
        cores: Some(2),
        sockets: Some(1),
        cpu: Some("host".into()),
        numa: Some(true),
        ostype: Some("l26".into()),
        bios: Some("ovmf".into()),
        machine: Some("q35".into()),
        scsihw: Some("virtio-scsi-single".into()),
        boot: Some("order=scsi0;ide2;net0".into()),
        agent: Some("enabled=1".into()),
        onboot: Some(true),
        protection: Some(false),
        vga: Some("serial0".into()),
        ciuser: Some("talos".into()),
        cipassword: Some("pw".to_string().into()),
        citype: Some("nocloud".into()),
        ciupgrade: Some(false),
        cicustom: Some("user=local:snippets/talos.yaml".into()),
        nameserver: Some("10.0.0.1".into()),
        searchdomain: Some("lab".into()),
        sshkeys: Some(vec!["ssh-ed25519 AAAAC3Nz+/= me@host".into()]),
        efidisk0: Some(EfiDisk::new("local-lvm", false)),
        tpmstate0: Some("local-lvm:1,version=v2.0".into()),
        ..Default::default()
    };
    let mut scsi0 = QemuDisk::import("local-lvm", "local:import/talos-nocloud-amd64.raw")
        .discard(true)
        .ssd(true)
        .iothread(true);
    scsi0.cache = Some("none".into());
    scsi0.backup = Some(true);
    scsi0.replicate = Some(false);
    scsi0.serial = Some("disk0".into());
    scsi0.aio = Some("io_uring".into());
    scsi0.format = Some("raw".into());
    q.disks.insert("scsi0".into(), scsi0);
    q.disks
        .insert("virtio1".into(), QemuDisk::new_volume("local-lvm", 32));
    q.disks
        .insert("sata0".into(), QemuDisk::new_volume("local-lvm", 8));
    q.disks
        .insert("ide2".into(), QemuDisk::cloudinit("local-lvm"));
    q.disks
        .insert("ide0".into(), QemuDisk::cdrom(Some("local:iso/talos.iso")));
    q.net.insert(
        0,
        QemuNet {
            model: "virtio".into(),
            macaddr: Some("BC:24:11:00:00:01".into()),
            bridge: Some("vmbr0".into()),
            tag: Some(20),
            trunks: Some("10;20".into()),
            firewall: Some(true),
            link_down: Some(false),
            mtu: Some(1500),
            queues: Some(2),
            rate: Some(12.5),
            ..Default::default()
        },
    );
    q.net.insert(1, QemuNet::virtio("vnet1"));
    q.ipconfig.insert(
        0,
        IpConfig {
            ip: Some("10.0.0.5/24".into()),
            gw: Some("10.0.0.1".into()),
            ip6: Some("auto".into()),
            gw6: None,
        },
    );
    q.hostpci.insert(
        0,
        HostPci {
            host: Some("0000:01:00".into()),
            pcie: Some(true),
            x_vga: Some(true),
            rombar: Some(true),
            ..Default::default()
        },
    );
    q.hostpci.insert(
        1,
        HostPci {
            mapping: Some("gpu".into()),
            mdev: Some("nvidia-63".into()),
            ..Default::default()
        },
    );
    q.serial.insert(0, Serial::Socket);
    q.serial.insert(1, Serial::Device("/dev/ttyS1".into()));

    let create = QemuCreate {
        vmid: 100,
        options: q.clone(),
        pool: Some("lab".into()),
        start: Some(true),
        storage: Some("local-lvm".into()),
    };
    let update = QemuUpdate {
        options: q,
        delete: vec!["ide0".into(), "net1".into()],
        revert: vec!["memory".into()],
        digest: Some("da39a3ee5e6b4b0d3255bfef95601890afd80709".into()),
        force: Some(true),
    };
    let mapping = PciMappingParams {
        description: Some("RTX 3090".into()),
        map: vec![
            "node=pve,path=0000:01:00,id=10de:2204,iommugroup=14,subsystem-id=10de:147d"
                .parse()
                .unwrap(),
            "node=pve2,path=0000:02:00.0;0000:03:00.0,id=10de:2204,description=second"
                .parse()
                .unwrap(),
        ],
        mdev: Some(false),
        live_migration_capable: Some(false),
    };
    let mut lxc_dev = std::collections::BTreeMap::new();
    lxc_dev.insert(
        0,
        "/dev/dri/renderD128,gid=44,mode=0660,uid=0,deny-write=0"
            .parse()
            .unwrap(),
    );
    let lxc_opts = LxcOptions {
        dev: lxc_dev,
        hostname: Some("ct1".into()),
        description: Some("d".into()),
        tags: Some(vec!["db".into()]),
        memory: Some(512),
        swap: Some(512),
        cores: Some(1),
        onboot: Some(true),
        protection: Some(false),
        nameserver: Some("10.0.0.1".into()),
        searchdomain: Some("lab".into()),
        features: Some(LxcFeatures {
            nesting: Some(true),
            keyctl: Some(true),
            fuse: Some(false),
            mknod: Some(false),
            mount: Some("nfs;cifs".into()),
            force_rw_sys: Some(false),
            ..Default::default()
        }),
        rootfs: Some(LxcMountPoint {
            acl: Some(true),
            quota: Some(false),
            mountoptions: Some("noatime".into()),
            ..LxcMountPoint::new_volume("local-lvm", 8)
        }),
        mp: [(
            0,
            LxcMountPoint {
                mp: Some("/data".into()),
                backup: Some(true),
                ro: Some(false),
                shared: Some(false),
                replicate: Some(true),
                ..LxcMountPoint::new_volume("local-lvm", 4)
            },
        )]
        .into(),
        net: [(
            0,
            LxcNet {
                name: "eth0".into(),
                bridge: Some("vmbr0".into()),
                hwaddr: Some("BC:24:11:00:00:02".into()),
                ip: Some("10.0.0.6/24".into()),
                gw: Some("10.0.0.1".into()),
                ip6: Some("auto".into()),
                tag: Some(30),
                firewall: Some(true),
                mtu: Some(1500),
                link_down: Some(false),
                ..Default::default()
            },
        )]
        .into(),
        extra: vec![],
    };
    let lxc_create_p = LxcCreate {
        vmid: 101,
        ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        options: lxc_opts.clone(),
        storage: Some("local-lvm".into()),
        password: Some("secret1".to_string().into()),
        ssh_public_keys: Some(vec!["ssh-ed25519 AAAA me".into()]),
        unprivileged: Some(true),
        start: Some(false),
        pool: Some("lab".into()),
    };
    let lxc_update = LxcUpdate {
        options: LxcOptions {
            memory: Some(1024),
            ..Default::default()
        },
        delete: vec!["mp0".into()],
        digest: Some("abc".into()),
    };
    let backup = BackupJobParams {
        schedule: Some("sun 01:00".into()),
        storage: Some("local".into()),
        vmid: vec![100, 101],
        all: Some(false),
        mode: Some("snapshot".into()),
        compress: Some("zstd".into()),
        enabled: Some(true),
        prune_backups: Some("keep-last=3".into()),
        comment: Some("nightly".into()),
        node: Some("pve".into()),
        extra: vec![],
    };
    let checksum = Some((ChecksumAlgorithm::Sha256, "ab".repeat(32)));
    vec![
        ("version", version()),
        ("nodes", nodes()),
        (
            "cluster_resources",
            cluster_resources(Some(ResourceFilter::Vm)),
        ),
        ("nextid", nextid(Some(150))),
        ("qemu_list", qemu_list("pve", Some(true))),
        ("qemu_create", qemu_create("pve", &create).unwrap()),
        ("qemu_config", qemu_config("pve", 100, Some(true))),
        ("qemu_pending", qemu_pending("pve", 100)),
        (
            "qemu_update_config",
            qemu_update_config("pve", 100, &update).unwrap(),
        ),
        (
            "qemu_update_config_async",
            qemu_update_config_async("pve", 100, &update, Some(5)).unwrap(),
        ),
        ("qemu_status", qemu_status("pve", 100)),
        ("qemu_start", qemu_start("pve", 100, Some(30))),
        ("qemu_stop", qemu_stop("pve", 100, Some(30))),
        (
            "qemu_shutdown",
            qemu_shutdown("pve", 100, Some(60), Some(true)),
        ),
        ("qemu_reboot", qemu_reboot("pve", 100, Some(60))),
        (
            "qemu_delete",
            qemu_delete("pve", 100, Some(true), Some(true)),
        ),
        (
            "qemu_clone",
            qemu_clone(
                "pve",
                100,
                &QemuClone {
                    newid: 200,
                    name: Some("clone".into()),
                    description: Some("d".into()),
                    pool: Some("lab".into()),
                    full: Some(true),
                    storage: Some("local-lvm".into()),
                    format: Some("raw".into()),
                    target: Some("pve2".into()),
                    snapname: Some("s1".into()),
                },
            )
            .unwrap(),
        ),
        ("qemu_template", qemu_template("pve", 100, Some("scsi0"))),
        (
            "qemu_resize",
            qemu_resize("pve", 100, "scsi0", "+10G", Some("abc")).unwrap(),
        ),
        (
            "qemu_agent_network_interfaces",
            qemu_agent_network_interfaces("pve", 100),
        ),
        ("lxc_list", lxc_list("pve")),
        ("lxc_create", lxc_create("pve", &lxc_create_p).unwrap()),
        ("lxc_config", lxc_config("pve", 101)),
        (
            "lxc_update_config",
            lxc_update_config("pve", 101, &lxc_update).unwrap(),
        ),
        ("lxc_status", lxc_status("pve", 101)),
        ("lxc_start", lxc_start("pve", 101)),
        ("lxc_stop", lxc_stop("pve", 101)),
        (
            "lxc_shutdown",
            lxc_shutdown("pve", 101, Some(30), Some(true)),
        ),
        ("lxc_delete", lxc_delete("pve", 101, Some(true), Some(true))),
        ("storage_list", storage_list("pve", Some("iso"))),
        (
            "storage_content",
            storage_content("pve", "local", Some("iso"), Some(100)),
        ),
        (
            "storage_volume_delete",
            storage_volume_delete("pve", "local", "local:iso/x.iso", Some(5)),
        ),
        (
            "download_url",
            download_url(
                "pve",
                "local",
                &DownloadUrl {
                    url: "https://factory.talos.dev/image/x/v1.12.0/nocloud-amd64.raw.zst".into(),
                    filename: "talos.iso".into(),
                    content: "iso".into(),
                    checksum: checksum.clone(),
                    verify_certificates: Some(true),
                    compression: Some("zst".into()),
                },
            )
            .unwrap(),
        ),
        (
            "upload",
            upload(
                "pve",
                "local",
                &Upload {
                    content: "import".into(),
                    filename: "talos.raw".into(),
                    checksum,
                },
            )
            .unwrap(),
        ),
        ("task_status", task_status(&upid)),
        ("task_log", task_log(&upid, Some(0), Some(50))),
        ("task_list", task_list("pve", Some(100), Some(10))),
        ("task_stop", task_stop(&upid)),
        ("pools_list", pools_list(Some("lab"))),
        ("pool_create", pool_create("lab", Some("homelab"))),
        (
            "pool_update",
            pool_update(
                "lab",
                &PoolUpdate {
                    vms: vec![100, 101],
                    storage: vec!["local".into()],
                    delete: Some(false),
                    allow_move: Some(true),
                    comment: Some("c".into()),
                },
            ),
        ),
        ("pool_delete", pool_delete("lab")),
        ("users_list", users_list()),
        (
            "user_create",
            user_create(&UserCreate {
                userid: "homelab@pve".into(),
                password: Some("longpassword".to_string().into()),
                comment: Some("automation".into()),
                enable: Some(true),
                expire: Some(0),
                groups: vec!["admins".into()],
            }),
        ),
        ("user_delete", user_delete("homelab@pve")),
        ("tokens_list", tokens_list("homelab@pve")),
        (
            "token_create",
            token_create("homelab@pve", "provision", Some(true), Some(0), Some("c")),
        ),
        ("token_delete", token_delete("homelab@pve", "provision")),
        ("acl_list", acl_list()),
        (
            "acl_update",
            acl_update(&AclUpdate {
                path: "/vms".into(),
                roles: vec!["PVEVMAdmin".into()],
                users: vec!["homelab@pve".into()],
                tokens: vec!["homelab@pve!provision".into()],
                groups: vec!["admins".into()],
                propagate: Some(true),
                delete: Some(false),
            }),
        ),
        ("roles_list", roles_list()),
        (
            "role_create",
            role_create("Homelab", &["VM.Allocate", "VM.Audit"]),
        ),
        (
            "role_update",
            role_update("Homelab", &["VM.Audit"], Some(true)),
        ),
        ("role_delete", role_delete("Homelab")),
        ("backup_jobs_list", backup_jobs_list()),
        (
            "backup_job_create",
            backup_job_create(Some("backup-1"), &backup),
        ),
        ("backup_job_get", backup_job_get("backup-1")),
        (
            "backup_job_update",
            backup_job_update("backup-1", &backup, &["comment"]),
        ),
        ("backup_job_delete", backup_job_delete("backup-1")),
        ("sdn_zones_list", sdn_zones_list(Some("simple"))),
        (
            "sdn_zone_create",
            sdn_zone_create(
                "lab",
                "simple",
                &vec![("mtu".to_string(), ParamValue::Int(1450))],
            ),
        ),
        ("sdn_zone_delete", sdn_zone_delete("lab")),
        ("sdn_vnets_list", sdn_vnets_list()),
        (
            "sdn_vnet_create",
            sdn_vnet_create("vnet1", "lab", Some(100), Some("alias"), Some(false)),
        ),
        ("sdn_vnet_delete", sdn_vnet_delete("vnet1")),
        ("sdn_subnets_list", sdn_subnets_list("vnet1")),
        (
            "sdn_subnet_create",
            sdn_subnet_create("vnet1", "10.10.0.0/24", Some("10.10.0.1"), Some(true)),
        ),
        (
            "sdn_subnet_delete",
            sdn_subnet_delete("vnet1", "lab-10.10.0.0-24"),
        ),
        ("sdn_apply", sdn_apply()),
        (
            "sdn::zones_list",
            proxmox_client::sdn::zones_list(SdnView::Pending),
        ),
        (
            "sdn::vnets_list",
            proxmox_client::sdn::vnets_list(SdnView::Running),
        ),
        (
            "sdn::subnets_list",
            proxmox_client::sdn::subnets_list("vnet1", SdnView::Pending),
        ),
        (
            "sdn::zone_create",
            proxmox_client::sdn::zone_create(
                "ov",
                "vxlan",
                &sdn_params(&[("peers", "10.0.0.1,10.0.0.2"), ("mtu", "1450")]),
            ),
        ),
        (
            "sdn::zone_update",
            proxmox_client::sdn::zone_update("ov", &sdn_params(&[("mtu", "1400")]), &["nodes"]),
        ),
        (
            "sdn::vnet_create",
            proxmox_client::sdn::vnet_create(
                "web",
                "ov",
                &sdn_params(&[
                    ("tag", "100"),
                    ("alias", "web homelab-cli:owner=x"),
                    ("vlanaware", "0"),
                ]),
            ),
        ),
        (
            "sdn::vnet_update",
            proxmox_client::sdn::vnet_update("web", &sdn_params(&[("tag", "101")]), &["alias"]),
        ),
        (
            "sdn::subnet_create",
            proxmox_client::sdn::subnet_create(
                "web",
                "10.10.0.0/24",
                &sdn_params(&[
                    ("gateway", "10.10.0.1"),
                    ("snat", "1"),
                    (
                        "dhcp-range",
                        "start-address=10.10.0.10,end-address=10.10.0.20;start-address=10.10.0.30,end-address=10.10.0.40",
                    ),
                ]),
            ),
        ),
        (
            "sdn::subnet_update",
            proxmox_client::sdn::subnet_update(
                "web",
                "ov-10.10.0.0-24",
                &sdn_params(&[("gateway", "10.10.0.254")]),
                &["snat"],
            ),
        ),
        (
            "sdn::subnet_delete",
            proxmox_client::sdn::subnet_delete("web", "ov-10.10.0.0-24"),
        ),
        ("sdn::vnet_delete", proxmox_client::sdn::vnet_delete("web")),
        ("sdn::zone_delete", proxmox_client::sdn::zone_delete("ov")),
        ("sdn::apply", proxmox_client::sdn::apply()),
        (
            "hardware_pci",
            hardware_pci(
                "pve",
                &PciScan {
                    class_blacklist: Some(vec!["05".into(), "06".into(), "0b".into()]),
                    verbose: Some(true),
                },
            ),
        ),
        (
            "hardware_pci_index",
            hardware_pci_index("pve", "0000:01:00.0"),
        ),
        ("pci_mappings_list", pci_mappings_list(Some("pve"))),
        ("pci_mapping_get", pci_mapping_get("gpu")),
        (
            "pci_mapping_create",
            pci_mapping_create("gpu", &mapping).unwrap(),
        ),
        (
            "pci_mapping_update",
            pci_mapping_update("gpu", &mapping, &["description"], Some("0123abcd")).unwrap(),
        ),
        ("pci_mapping_delete", pci_mapping_delete("gpu")),
    ]
}

#[test]
fn every_request_builder_is_covered_here() {
    // A new builder in src/requests.rs must be added to `all_requests` (and so be checked
    // against the schema); this test lists any that are missing.
    let src = include_str!("../../src/requests.rs");
    let labels: BTreeSet<&str> = all_requests().iter().map(|(l, _)| *l).collect();
    let mut missing = Vec::new();
    for line in src.lines() {
        let Some(rest) = line.strip_prefix("pub fn ") else {
            continue;
        };
        let name = rest.split(['(', '<']).next().unwrap();
        if !labels.contains(name) {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "builders not schema-checked: {missing:?}"
    );
    assert!(labels.len() >= 65, "only {} builders", labels.len());
}

#[test]
fn every_request_matches_the_pve_api_schema() {
    let Some(schema) = load_schema() else { return };
    let mut problems = Vec::new();
    for (label, r) in all_requests() {
        problems.extend(check_request(&schema, label, &r));
    }
    assert!(
        problems.is_empty(),
        "{} schema mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_drift() {
    // The conformance check must fail on a wrong name, type, missing required parameter,
    // wrong method, unknown path and a bad property-string key; otherwise it proves nothing.
    let Some(schema) = load_schema() else { return };
    use proxmox_client::Method;
    let bad = [
        ApiRequest::new(Method::Post, &["nodes", "pve", "qemu"]).param("name", "x"),
        qemu_start("pve", 100, None).param("timeout", "soon"),
        qemu_start("pve", 100, None).param("tmeout", 5),
        qemu_status("pve", 100).param("vmid", 100),
        ApiRequest::new(
            Method::Put,
            &["nodes", "pve", "qemu", "100", "status", "current"],
        ),
        ApiRequest::new(Method::Get, &["nodes", "pve", "qemuu"]),
        qemu_list("pve", None).param("full", 1),
        ApiRequest::new(Method::Post, &["nodes", "pve", "qemu", "100", "config"])
            .param("net0", "virtio,bridge=vmbr0,firewall=true"),
        ApiRequest::new(Method::Post, &["nodes", "pve", "qemu", "100", "config"])
            .param("scsi0", "local:1,discrad=on"),
        cluster_resources(None).param("type", "vms"),
        ApiRequest::new(Method::Post, &["cluster", "mapping", "pci"])
            .param("id", "gpu")
            .param("map", "node=pve,path=01:00.0,id=10de:2204"),
        ApiRequest::new(Method::Post, &["cluster", "mapping", "pci"])
            .param("id", "gpu")
            .param("map", "node=pve,path=0000:01:00.0,id=10de:2204,vendor=x"),
        nextid(None).param("vmid", 5),
        ApiRequest::new(Method::Put, &["nodes", "pve", "qemu", "100", "resize"])
            .param("disk", "scsi0")
            .param("size", "10 GB"),
    ];
    for r in bad {
        let p = check_request(&schema, "drift", &r);
        assert!(!p.is_empty(), "not detected: {r:?}");
    }
}

#[test]
fn guest_handle_requests_match_the_pve_api_schema() {
    use proxmox_client::GuestKind;
    use proxmox_client::guest::*;
    let Some(schema) = load_schema() else { return };
    let mut problems = Vec::new();
    for kind in [GuestKind::Qemu, GuestKind::Lxc] {
        let mut params = vec![("cores".to_string(), 2.into())];
        if kind == GuestKind::Lxc {
            params.push(("ostemplate".into(), "local:vztmpl/debian-12.tar.zst".into()));
        }
        let create = GuestCreate { vmid: 100, params };
        let g = GuestRequests {
            node: "pve".into(),
            kind,
            vmid: 100,
        };
        let update = ConfigUpdate::default()
            .set("cores", 4)
            .set("description", "x")
            .delete("tags")
            .digest("0123456789abcdef0123456789abcdef01234567");
        let all = vec![
            (
                "create",
                GuestRequests::create("pve", kind, &create).unwrap(),
            ),
            ("config", g.config(false)),
            ("config current", g.config(true)),
            ("pending", g.pending()),
            ("status", g.status()),
            ("update", g.update_config(&update).unwrap()),
            (
                "start",
                g.start(&StartOptions {
                    skiplock: true,
                    timeout: Some(30),
                }),
            ),
            (
                "stop",
                g.stop(&StopOptions {
                    skiplock: true,
                    overrule_shutdown: true,
                    timeout: Some(30),
                }),
            ),
            (
                "shutdown",
                g.shutdown(&ShutdownOptions {
                    timeout: Some(30),
                    force_stop: true,
                }),
            ),
            ("reboot", g.reboot(&RebootOptions { timeout: Some(30) })),
            (
                "resize",
                g.resize(&ResizeOptions {
                    digest: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    ..ResizeOptions::to_gib(
                        if kind == GuestKind::Qemu {
                            "scsi0"
                        } else {
                            "rootfs"
                        },
                        40,
                    )
                })
                .unwrap(),
            ),
            (
                "clone",
                g.clone_to(&CloneOptions {
                    newid: 101,
                    name: Some("copy".into()),
                    description: Some("d".into()),
                    pool: Some("lab".into()),
                    full: Some(true),
                    storage: Some("local-lvm".into()),
                    target: Some("pve2".into()),
                    snapname: Some("s1".into()),
                })
                .unwrap(),
            ),
            (
                "template",
                g.template(&TemplateOptions {
                    disk: Some("scsi0".into()),
                }),
            ),
            (
                "destroy",
                g.destroy(&DestroyOptions {
                    purge: true,
                    destroy_unreferenced_disks: true,
                    skiplock: true,
                    force: true,
                }),
            ),
        ];
        for (label, r) in all {
            problems.extend(check_request(&schema, label, &r));
        }
    }
    assert!(
        problems.is_empty(),
        "{} schema mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
