//! Authentication (API tokens, tickets with CSRF tokens) and permission checks against the
//! endpoint table's `check` expressions.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::now;
use super::state::State;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `user@realm` or `user@realm!token` (what UPIDs show).
    pub authid: String,
    /// `user@realm`.
    pub user: String,
    /// Token name when authenticated by API token.
    pub token: Option<String>,
    /// Authenticated with a ticket (CSRF applies).
    pub ticket: bool,
}

impl Caller {
    /// Whether this is root@pam itself (not a token of it).
    pub fn is_root(&self) -> bool {
        self.user == "root@pam" && self.token.is_none()
    }
}

/// Ticket lifetime (AccessControl.pm): 2 h plus 5 min grace for clock skew.
const TICKET_LIFETIME: i64 = 7200;
const GRACE: i64 = 300;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}

/// Create a ticket `PVE:<user>:<hex time>::<signature>` for `user`, timestamped `t`.
pub fn make_ticket(key: &str, user: &str, t: u64) -> String {
    let data = format!("PVE:{user}:{t:08X}");
    let sig = b64(&hmac_sha256(key.as_bytes(), data.as_bytes()));
    format!("{data}::{sig}")
}

/// Create the CSRF prevention token bound to `user` and time `t`.
pub fn make_csrf(key: &str, user: &str, t: u64) -> String {
    let sig = b64(&hmac_sha256(
        key.as_bytes(),
        format!("{t:08X}:{user}csrf").as_bytes(),
    ));
    format!("{t:08X}:{sig}")
}

fn fresh(t: u64) -> bool {
    let age = now() as i64 - t as i64;
    (-GRACE..=TICKET_LIFETIME).contains(&age)
}

/// Verify a ticket; returns the user.
pub fn verify_ticket(key: &str, ticket: &str) -> Option<String> {
    let rest = ticket.strip_prefix("PVE:")?;
    let (data, _sig) = rest.split_once("::")?;
    let (user, hex_t) = data.rsplit_once(':')?;
    let t = u64::from_str_radix(hex_t, 16).ok()?;
    (fresh(t) && make_ticket(key, user, t) == ticket).then(|| user.to_string())
}

/// Verify a CSRF token for `user`.
pub fn verify_csrf(key: &str, user: &str, token: &str) -> bool {
    let Some((hex_t, _)) = token.split_once(':') else {
        return false;
    };
    let Ok(t) = u64::from_str_radix(hex_t, 16) else {
        return false;
    };
    fresh(t) && make_csrf(key, user, t) == token
}

/// SHA-256 hex of a token secret (what the state keeps).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Salted password hash `salt$hex`.
pub fn password_hash(password: &str) -> String {
    let salt: [u8; 8] = rand::random();
    let salt = hex::encode(salt);
    format!(
        "{salt}${}",
        hex::encode(Sha256::digest(format!("{salt}{password}")))
    )
}

/// Check a password against a stored hash.
pub fn password_ok(stored: &str, password: &str) -> bool {
    stored
        .split_once('$')
        .is_some_and(|(salt, h)| hex::encode(Sha256::digest(format!("{salt}{password}"))) == h)
}

/// A random UUID v4 string (token secrets, smbios uuids).
pub fn uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The credentials found in a request.
#[derive(Debug, Default)]
pub struct Credentials {
    /// `Authorization: PVEAPIToken=...` value.
    pub token: Option<String>,
    /// Ticket from the cookie or `Authorization: PVEAuthCookie=...`.
    pub ticket: Option<String>,
    /// `CSRFPreventionToken` header.
    pub csrf: Option<String>,
}

/// Authenticate. `Ok(None)` means no credentials at all.
pub fn authenticate(st: &State, creds: &Credentials) -> ApiResult<Option<Caller>> {
    if let Some(value) = &creds.token {
        let value = super::schema::percent_decode(value);
        let fail = || ApiError::status(401, "Authentication failed!");
        let (full, secret) = value.rsplit_once('=').ok_or_else(fail)?;
        let token = st.tokens.get(full).ok_or_else(fail)?;
        let user = st.users.get(&token.userid).ok_or_else(fail)?;
        let expired = |e: u64| e != 0 && e < now();
        if token.secret_sha256 != secret_hash(secret)
            || expired(token.expire)
            || !user.enable
            || expired(user.expire)
        {
            return Err(fail());
        }
        return Ok(Some(Caller {
            authid: full.to_string(),
            user: token.userid.clone(),
            token: Some(token.tokenid.clone()),
            ticket: false,
        }));
    }
    if let Some(ticket) = &creds.ticket {
        let ticket = super::schema::percent_decode(ticket);
        let user = verify_ticket(&st.auth_key, &ticket)
            .ok_or_else(|| ApiError::status(401, "authentication failure"))?;
        return Ok(Some(Caller {
            authid: user.clone(),
            user,
            token: None,
            ticket: true,
        }));
    }
    Ok(None)
}

/// Every privilege PVE 9 knows.
pub const PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// A privilege group of pve-access-control `AccessControl.pm` (`$privgroups`): the
/// privileges only root gets (`root`), the ones of the group's admin, user and audit roles.
struct PrivGroup {
    cat: &'static str,
    root: &'static [&'static str],
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

/// `$privgroups` of pve-access-control `src/PVE/AccessControl.pm` (PVE 9), group by group.
const PRIV_GROUPS: &[PrivGroup] = &[
    PrivGroup {
        cat: "VM",
        root: &[],
        admin: &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        user: &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        audit: &["VM.Audit", "VM.GuestAgent.Audit"],
    },
    PrivGroup {
        cat: "Sys",
        root: &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        admin: &["Sys.Console", "Sys.Syslog"],
        user: &[],
        audit: &["Sys.Audit"],
    },
    PrivGroup {
        cat: "Datastore",
        root: &[],
        admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        user: &["Datastore.AllocateSpace"],
        audit: &["Datastore.Audit"],
    },
    PrivGroup {
        cat: "SDN",
        root: &[],
        admin: &["SDN.Allocate", "SDN.Audit"],
        user: &["SDN.Use"],
        audit: &["SDN.Audit"],
    },
    PrivGroup {
        cat: "User",
        root: &["Realm.Allocate"],
        admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        user: &[],
        audit: &[],
    },
    PrivGroup {
        cat: "Pool",
        root: &[],
        admin: &["Pool.Allocate"],
        user: &["Pool.Audit"],
        audit: &["Pool.Audit"],
    },
    PrivGroup {
        cat: "Mapping",
        root: &[],
        admin: &["Mapping.Modify"],
        user: &["Mapping.Use"],
        audit: &["Mapping.Audit"],
    },
];

/// The names of the built-in roles, as `create_roles` makes them.
pub const BUILTIN_ROLES: &[&str] = &[
    "Administrator",
    "NoAccess",
    "PVEAdmin",
    "PVEAuditor",
    "PVEDatastoreAdmin",
    "PVEDatastoreUser",
    "PVEMappingAdmin",
    "PVEMappingUser",
    "PVEPoolAdmin",
    "PVEPoolUser",
    "PVESDNAdmin",
    "PVESDNUser",
    "PVESysAdmin",
    "PVETemplateUser",
    "PVEUserAdmin",
    "PVEVMAdmin",
    "PVEVMUser",
];

/// Built-in roles, built the way pve-access-control `AccessControl.pm` `create_roles`
/// builds them: `PVE<cat>Admin` and `PVEAdmin` get each group's admin, user and audit
/// privileges (never its root-only ones); `PVE<cat>User` (only for groups with user
/// privileges) the user and audit ones; `PVEAuditor` every audit privilege; `PVEAdmin`
/// loses `Mapping.Modify`; `PVETemplateUser` is `VM.Clone` + `VM.Audit`; `Administrator`
/// has every valid privilege (`Permissions.Modify` included), `NoAccess` none.
pub fn builtin_role(role: &str) -> Option<BTreeSet<String>> {
    let set = |it: &mut dyn Iterator<Item = &&str>| -> BTreeSet<String> {
        it.map(|p| p.to_string()).collect()
    };
    let non_root = |g: &PrivGroup| g.admin.iter().chain(g.user).chain(g.audit);
    Some(match role {
        "Administrator" => set(&mut PRIV_GROUPS
            .iter()
            .flat_map(|g| g.root.iter().chain(non_root(g)))
            .chain(&["Permissions.Modify"])),
        "NoAccess" => BTreeSet::new(),
        "PVEAdmin" => {
            let mut s = set(&mut PRIV_GROUPS.iter().flat_map(non_root));
            s.remove("Mapping.Modify");
            s
        }
        "PVEAuditor" => set(&mut PRIV_GROUPS.iter().flat_map(|g| g.audit.iter())),
        "PVETemplateUser" => set(&mut ["VM.Clone", "VM.Audit"].iter()),
        other => {
            let (cat, kind) = other.strip_prefix("PVE").and_then(|r| {
                r.strip_suffix("Admin")
                    .map(|c| (c, true))
                    .or_else(|| r.strip_suffix("User").map(|c| (c, false)))
            })?;
            let g = PRIV_GROUPS.iter().find(|g| g.cat == cat)?;
            if kind {
                set(&mut non_root(g))
            } else if g.user.is_empty() {
                return None;
            } else {
                set(&mut g.user.iter().chain(g.audit))
            }
        }
    })
}

/// The privileges of a role (built-in or custom).
pub fn role_privs(st: &State, role: &str) -> BTreeSet<String> {
    builtin_role(role)
        .or_else(|| st.roles.get(role).cloned())
        .unwrap_or_default()
}

/// Privileges of an ACL subject (`user` or `token` id) on `path`: the deepest ACL level
/// naming it wins; entries without propagate apply only to their exact path.
fn subject_privs(
    st: &State,
    ty: &str,
    ugid: &str,
    groups: &[String],
    path: &str,
) -> BTreeSet<String> {
    let mut levels = vec!["/".to_string()];
    let mut acc = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        acc.push('/');
        acc.push_str(seg);
        levels.push(acc.clone());
    }
    let mut roles: Option<BTreeSet<String>> = None;
    for level in &levels {
        let exact = level == path || (path.is_empty() && level == "/");
        let hits: Vec<&super::state::AclEntry> = st
            .acl
            .iter()
            .filter(|e| e.path == *level && (e.propagate || exact))
            .filter(|e| {
                (e.ty == ty && e.ugid == ugid) || (e.ty == "group" && groups.contains(&e.ugid))
            })
            .collect();
        // A user's own entries override its groups' entries on the same level.
        let own: Vec<_> = hits.iter().filter(|e| e.ty == ty).collect();
        let chosen: Vec<String> = if own.is_empty() {
            hits.iter().map(|e| e.roleid.clone()).collect()
        } else {
            own.iter().map(|e| e.roleid.clone()).collect()
        };
        if !chosen.is_empty() {
            roles = Some(chosen.into_iter().collect());
        }
    }
    let roles = roles.unwrap_or_default();
    if roles.contains("NoAccess") {
        return BTreeSet::new();
    }
    roles.iter().flat_map(|r| role_privs(st, r)).collect()
}

/// Effective privileges of a caller on a path (pool membership of guests counts).
pub fn privileges(st: &State, caller: &Caller, path: &str) -> BTreeSet<String> {
    if caller.user == "root@pam" {
        let all: BTreeSet<String> = PRIVILEGES.iter().map(|p| p.to_string()).collect();
        return match &caller.token {
            Some(_) => token_limited(st, caller, path, all),
            None => all,
        };
    }
    let groups = st
        .users
        .get(&caller.user)
        .map(|u| u.groups.clone())
        .unwrap_or_default();
    let mut privs = subject_privs(st, "user", &caller.user, &groups, path);
    if let Some(vmid) = path
        .strip_prefix("/vms/")
        .and_then(|v| v.parse::<u32>().ok())
    {
        for (pool, p) in &st.pools {
            if p.vms.contains(&vmid) {
                privs.extend(subject_privs(
                    st,
                    "user",
                    &caller.user,
                    &groups,
                    &format!("/pool/{pool}"),
                ));
            }
        }
    }
    match &caller.token {
        Some(_) => token_limited(st, caller, path, privs),
        None => privs,
    }
}

fn token_limited(
    st: &State,
    caller: &Caller,
    path: &str,
    user_privs: BTreeSet<String>,
) -> BTreeSet<String> {
    let privsep = st.tokens.get(&caller.authid).is_none_or(|t| t.privsep);
    if !privsep {
        return user_privs;
    }
    let mut tp = subject_privs(st, "token", &caller.authid, &[], path);
    if let Some(vmid) = path
        .strip_prefix("/vms/")
        .and_then(|v| v.parse::<u32>().ok())
    {
        for (pool, p) in &st.pools {
            if p.vms.contains(&vmid) {
                tp.extend(subject_privs(
                    st,
                    "token",
                    &caller.authid,
                    &[],
                    &format!("/pool/{pool}"),
                ));
            }
        }
    }
    user_privs.intersection(&tp).cloned().collect()
}

fn fill(template: &str, params: &Params) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Evaluate an endpoint's `permissions` against a caller.
pub fn check_permissions(
    st: &State,
    caller: &Caller,
    perms: Option<&Value>,
    params: &Params,
) -> ApiResult<()> {
    let Some(perms) = perms else {
        return if caller.is_root() {
            Ok(())
        } else {
            Err(ApiError::status(403, "Permission check failed"))
        };
    };
    if let Some(u) = perms.get("user").and_then(Value::as_str)
        && (u == "all" || u == "world")
    {
        return Ok(());
    }
    match perms.get("check") {
        Some(check) => eval(st, caller, check, params),
        None if caller.is_root() => Ok(()),
        None => Err(ApiError::status(403, "Permission check failed")),
    }
}

/// Checks the real handlers make themselves for endpoints whose schema says only
/// `user: all` (qemu-server/pve-container create, storage volume delete, SDN vnet writes).
pub fn handler_checks(
    st: &State,
    caller: &Caller,
    method: &str,
    path: &str,
    params: &Params,
) -> ApiResult<()> {
    let need = |path: &str, privilege: &str| -> ApiResult<()> {
        if privileges(st, caller, path).contains(privilege) {
            Ok(())
        } else {
            Err(ApiError::perm(path, privilege))
        }
    };
    match (method, path) {
        ("POST", "/nodes/{node}/qemu") | ("POST", "/nodes/{node}/lxc") => {
            let vmid = params.get("vmid").map(String::as_str).unwrap_or("");
            let lxc = path.ends_with("/lxc");
            let restore =
                params.get("restore").is_some_and(|r| r == "1") || params.contains_key("archive");
            // pve-container create_vm: a privileged container (`unprivileged` defaults to
            // 1 unless restoring) needs Sys.Modify on / — its very first check.
            if lxc && !restore && params.get("unprivileged").is_some_and(|u| u == "0") {
                need("/", "Sys.Modify")?;
            }
            if let Some(pool) = params.get("pool")
                && !st.pools.contains_key(pool)
            {
                // check_pool_exist, before any privilege check on the guest.
                return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
            }
            if !lxc {
                // qemu-server create_vm: the `storage` parameter, then VM.PowerMgmt when
                // `start` asks to boot the new VM, both before VM.Allocate.
                if let Some(storage) = params.get("storage") {
                    need(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
                }
                if params.get("start").is_some_and(|s| s == "1") {
                    need(&format!("/vms/{vmid}"), "VM.PowerMgmt")?;
                }
            }
            let on_vm = need(&format!("/vms/{vmid}"), "VM.Allocate");
            match (on_vm, params.get("pool")) {
                (Ok(()), _) => {}
                (Err(_), Some(pool)) => need(&format!("/pool/{pool}"), "VM.Allocate")
                    .map_err(|_| ApiError::status(403, "Permission check failed"))?,
                // raise_perm_exc() without a reason.
                (Err(_), None) => return Err(ApiError::status(403, "Permission check failed")),
            }
            for (k, v) in params {
                if super::guests::is_disk_key(k) || k == "storage" {
                    let storage = v.split([':', ',']).next().unwrap_or("");
                    if st.storages.contains_key(storage) {
                        need(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
                    }
                }
            }
            Ok(())
        }
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => {
            // pve-storage API2/Storage/Content.pm `delete`: a backup volume with an
            // owner needs Datastore.AllocateSpace and VM.Backup on that guest; any
            // other volume Datastore.Allocate.
            let storage = params.get("storage").map(String::as_str).unwrap_or("");
            let volume = params.get("volume").map(String::as_str).unwrap_or("");
            let volname = volume.split_once(':').map_or(volume, |(_, v)| v);
            let backup_owner = volname
                .strip_prefix("backup/vzdump-")
                .and_then(|r| r.split('-').nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            match backup_owner {
                Some(owner) => {
                    need(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
                    need(&format!("/vms/{owner}"), "VM.Backup")
                }
                None => need(&format!("/storage/{storage}"), "Datastore.Allocate"),
            }
        }
        ("DELETE", "/nodes/{node}/tasks/{upid}") => {
            let owner = params
                .get("upid")
                .and_then(|u| u.split(':').nth(7))
                .unwrap_or("");
            if owner == caller.authid {
                Ok(())
            } else {
                need(
                    &format!(
                        "/nodes/{}",
                        params.get("node").map(String::as_str).unwrap_or("")
                    ),
                    "Sys.Modify",
                )
            }
        }
        (m, p) if m != "GET" && p.starts_with("/cluster/sdn/vnets/{vnet}") => {
            need("/sdn", "SDN.Allocate")
        }
        _ => Ok(()),
    }
}

fn eval(st: &State, caller: &Caller, check: &Value, params: &Params) -> ApiResult<()> {
    let Some(arr) = check.as_array() else {
        return Ok(());
    };
    match arr.first().and_then(Value::as_str) {
        Some("perm") => {
            let path = fill(arr.get(1).and_then(Value::as_str).unwrap_or("/"), params);
            let privs: Vec<&str> = arr
                .get(2)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let any = arr.get(3).and_then(Value::as_str) == Some("any");
            let have = privileges(st, caller, &path);
            if any {
                if privs.iter().any(|p| have.contains(*p)) {
                    Ok(())
                } else {
                    Err(ApiError::perm(&path, &privs.join("|")))
                }
            } else {
                match privs.iter().find(|p| !have.contains(**p)) {
                    None => Ok(()),
                    Some(p) => Err(ApiError::perm(&path, p)),
                }
            }
        }
        Some("or") => {
            let mut last = ApiError::status(403, "Permission check failed");
            for sub in &arr[1..] {
                match eval(st, caller, sub, params) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Some("and") => arr[1..]
            .iter()
            .try_for_each(|s| eval(st, caller, s, params)),
        Some("userid-param") => {
            let target = params.get("userid").map(String::as_str).unwrap_or("");
            if arr.get(1).and_then(Value::as_str) == Some("self") {
                if target == caller.user {
                    Ok(())
                } else {
                    Err(ApiError::status(
                        403,
                        "Permission check failed (user != userid)",
                    ))
                }
            } else {
                let realm = target.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
                let path = format!("/access/realm/{realm}");
                if privileges(st, caller, &path).contains("Realm.AllocateUser") {
                    Ok(())
                } else {
                    Err(ApiError::perm(&path, "Realm.AllocateUser"))
                }
            }
        }
        Some("perm-modify") => {
            // RPCEnvironment check_perm_modify: Permissions.Modify, or the allocate
            // privilege of the object kind the path names.
            let path = fill(arr.get(1).and_then(Value::as_str).unwrap_or("/"), params);
            let have = privileges(st, caller, &path);
            let alt = if path.starts_with("/vms") {
                Some("VM.Allocate")
            } else if path.starts_with("/storage") {
                Some("Datastore.Allocate")
            } else if path.starts_with("/pool") {
                Some("Pool.Allocate")
            } else if path.starts_with("/sdn") {
                Some("SDN.Allocate")
            } else {
                None
            };
            if have.contains("Permissions.Modify") || alt.is_some_and(|a| have.contains(a)) {
                Ok(())
            } else {
                Err(ApiError::perm(&path, "Permissions.Modify"))
            }
        }
        Some("userid-group") => {
            let privs: Vec<&str> = arr
                .get(1)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let have = privileges(st, caller, "/access/groups");
            if privs.iter().any(|p| have.contains(*p)) {
                Ok(())
            } else {
                Err(ApiError::perm("/access/groups", &privs.join("|")))
            }
        }
        _ if caller.is_root() => Ok(()),
        _ => Err(ApiError::status(403, "Permission check failed")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_csrf_verify() {
        let t = make_ticket("k", "root@pam", now());
        assert!(t.starts_with("PVE:root@pam:"));
        assert_eq!(verify_ticket("k", &t).as_deref(), Some("root@pam"));
        assert_eq!(verify_ticket("other", &t), None);
        assert_eq!(
            verify_ticket("k", &make_ticket("k", "root@pam", now() - 8000)),
            None
        );
        let c = make_csrf("k", "root@pam", now());
        assert!(verify_csrf("k", "root@pam", &c));
        assert!(!verify_csrf("k", "bob@pve", &c));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// pve-access-control `AccessControl.pm` `create_roles`: the role contents a real
    /// PVE 9 host lists under `GET /access/roles`.
    #[test]
    fn builtin_roles_match_create_roles() {
        let r = |n: &str| -> Vec<String> { builtin_role(n).unwrap().into_iter().collect() };
        assert_eq!(
            r("PVEVMUser"),
            [
                "VM.Audit",
                "VM.Backup",
                "VM.Config.CDROM",
                "VM.Config.Cloudinit",
                "VM.Console",
                "VM.GuestAgent.Audit",
                "VM.GuestAgent.FileRead",
                "VM.GuestAgent.FileSystemMgmt",
                "VM.GuestAgent.FileWrite",
                "VM.PowerMgmt",
            ]
        );
        assert_eq!(r("PVESysAdmin"), ["Sys.Audit", "Sys.Console", "Sys.Syslog"]);
        assert_eq!(
            r("PVEUserAdmin"),
            ["Group.Allocate", "Realm.AllocateUser", "User.Modify"]
        );
        assert_eq!(r("PVEPoolUser"), ["Pool.Audit"]);
        assert_eq!(
            r("PVEAuditor"),
            [
                "Datastore.Audit",
                "Mapping.Audit",
                "Pool.Audit",
                "SDN.Audit",
                "Sys.Audit",
                "VM.Audit",
                "VM.GuestAgent.Audit"
            ]
        );
        let admin = builtin_role("PVEAdmin").unwrap();
        for root_only in [
            "Sys.Modify",
            "Sys.PowerMgmt",
            "Sys.Incoming",
            "Sys.AccessNetwork",
            "Realm.Allocate",
            "Permissions.Modify",
            "Mapping.Modify",
        ] {
            assert!(!admin.contains(root_only), "{root_only}");
        }
        assert!(admin.contains("Sys.Console") && admin.contains("VM.Allocate"));
        assert_eq!(builtin_role("PVEUserUser"), None);
        assert_eq!(builtin_role("PVESysUser"), None);
        for name in BUILTIN_ROLES {
            assert!(builtin_role(name).is_some(), "{name}");
        }
        // Every valid privilege is Administrator's, and PRIVILEGES lists exactly those.
        let all: BTreeSet<String> = PRIVILEGES.iter().map(|p| p.to_string()).collect();
        assert_eq!(builtin_role("Administrator").unwrap(), all);
    }

    /// pve-storage `API2/Storage/Content.pm` `delete`: a backup with an owner needs
    /// Datastore.AllocateSpace + VM.Backup on the guest, anything else Datastore.Allocate.
    #[test]
    fn deleting_a_backup_needs_vm_backup_not_allocate() {
        let mut st = super::super::sim::Genesis {
            cluster: "c".into(),
            nodes: vec!["pve".into()],
        }
        .state();
        for (path, role) in [
            ("/storage/local", "PVEDatastoreUser"),
            ("/vms/100", "PVEVMUser"),
        ] {
            st.acl.push(super::super::state::AclEntry {
                path: path.into(),
                ty: "user".into(),
                ugid: "u@pve".into(),
                roleid: role.into(),
                propagate: true,
            });
        }
        let caller = Caller {
            authid: "u@pve".into(),
            user: "u@pve".into(),
            token: None,
            ticket: true,
        };
        let del = |volume: &str| {
            let params: Params = [("node", "pve"), ("storage", "local"), ("volume", volume)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            handler_checks(
                &st,
                &caller,
                "DELETE",
                "/nodes/{node}/storage/{storage}/content/{volume}",
                &params,
            )
        };
        assert!(del("local:backup/vzdump-qemu-100-2026_01_01-00_00_00.vma.zst").is_ok());
        assert_eq!(
            del("local:backup/vzdump-qemu-101-2026_01_01-00_00_00.vma.zst")
                .unwrap_err()
                .reason(),
            "Permission check failed (/vms/101, VM.Backup)"
        );
        assert_eq!(
            del("local:iso/talos.iso").unwrap_err().reason(),
            "Permission check failed (/storage/local, Datastore.Allocate)"
        );
    }

    #[test]
    fn passwords_and_uuids() {
        let h = password_hash("s3cret");
        assert!(password_ok(&h, "s3cret"));
        assert!(!password_ok(&h, "nope"));
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
