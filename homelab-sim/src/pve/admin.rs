//! Pools, users, API tokens, roles, ACLs and backup jobs (SDN objects: `sdn.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::api::{Reply, flag, req};
use super::auth::{self, Caller};
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::{Sim, now};
use super::state::{AclEntry, Pool, State, Token, User};

/// Route admin endpoints.
pub async fn dispatch(
    sim: &Sim,
    caller: &Caller,
    m: &str,
    path: &str,
    p: Params,
) -> ApiResult<Reply> {
    let reply = {
        let mut st = sim.state();
        match (m, path) {
            ("GET", "/pools") => pools_list(&st, &p),
            ("POST", "/pools") => pool_create(&mut st, &p),
            ("PUT", "/pools") => pool_update(&mut st, &p),
            ("DELETE", "/pools") => pool_delete(&mut st, &p),
            ("GET", "/pools/{poolid}") => pool_get(&st, req(&p, "poolid")?),
            ("POST", "/access/ticket") => ticket(sim, &st, &p),
            ("GET", "/access/users") => users_list(&st, &p),
            ("POST", "/access/users") => user_create(&mut st, &p),
            ("GET", "/access/users/{userid}") => user_get(&st, &p),
            ("PUT", "/access/users/{userid}") => user_update(&mut st, &p),
            ("DELETE", "/access/users/{userid}") => user_delete(&mut st, &p),
            ("GET", "/access/users/{userid}/token") => tokens_list(&st, &p),
            ("GET", "/access/users/{userid}/token/{tokenid}") => token_get(&st, &p),
            ("POST", "/access/users/{userid}/token/{tokenid}") => token_create(&mut st, &p),
            ("PUT", "/access/users/{userid}/token/{tokenid}") => token_update(&mut st, &p),
            ("DELETE", "/access/users/{userid}/token/{tokenid}") => token_delete(&mut st, &p),
            ("GET", "/access/acl") => acl_list(&st, caller),
            ("PUT", "/access/acl") => acl_update(&mut st, &p),
            ("GET", "/access/roles") => roles_list(&st),
            ("POST", "/access/roles") => role_create(&mut st, &p),
            ("GET", "/access/roles/{roleid}") => role_get(&st, &p),
            ("PUT", "/access/roles/{roleid}") => role_update(&mut st, &p),
            ("DELETE", "/access/roles/{roleid}") => role_delete(&mut st, &p),
            ("GET", "/cluster/backup") => backup_list(&st),
            ("POST", "/cluster/backup") => backup_create(&mut st, caller, &p),
            ("GET", "/cluster/backup/{id}") => backup_get(&st, &p),
            ("PUT", "/cluster/backup/{id}") => backup_update(&mut st, caller, &p),
            ("DELETE", "/cluster/backup/{id}") => backup_delete(&mut st, &p),
            _ => Err(ApiError::not_implemented(m, path)),
        }
    }?;
    if m != "GET" {
        sim.persist();
    }
    Ok(reply.into())
}

fn opt_str(p: &Params, k: &str) -> Option<String> {
    p.get(k).cloned()
}

// ----------------------------------------------------------------------------- pools

fn pool_members(st: &State, pool: &Pool) -> Vec<Value> {
    let mut out = Vec::new();
    for id in &pool.vms {
        if let Some(g) = st.guests.get(id) {
            out.push(json!({
                "id": format!("{}/{}", g.kind.as_str(), id),
                "type": g.kind.as_str(),
                "vmid": id,
                "node": g.node,
                "name": g.name(),
                "status": if g.running { "running" } else { "stopped" },
                "template": u8::from(g.is_template()),
            }));
        }
    }
    // One entry per storage, on the local node (pve-manager PVE/API2/Pool.pm, `index` with
    // `poolid`: `extract_storage_stats` for `$storage_node`, the local node unless the
    // storage is restricted to others); storages that no longer exist are skipped.
    for s in &pool.storage {
        if !st.storages.contains_key(s) {
            continue;
        }
        if let Some(node) = st.nodes.keys().next() {
            out.push(json!({
                "id": format!("storage/{node}/{s}"),
                "type": "storage",
                "storage": s,
                "node": node,
            }));
        }
    }
    out
}

fn pool_json(st: &State, id: &str, pool: &Pool, members: bool) -> Value {
    let mut o = Map::new();
    o.insert("poolid".into(), json!(id));
    if let Some(c) = &pool.comment {
        o.insert("comment".into(), json!(c));
    }
    if members {
        o.insert("members".into(), Value::Array(pool_members(st, pool)));
    }
    Value::Object(o)
}

fn pools_list(st: &State, p: &Params) -> ApiResult<Value> {
    let list: Vec<Value> = st
        .pools
        .iter()
        .filter(|(id, _)| p.get("poolid").is_none_or(|w| w == *id))
        .map(|(id, pool)| {
            let mut v = pool_json(st, id, pool, p.contains_key("poolid"));
            if let (Some(ty), Some(members)) = (
                p.get("type"),
                v.get_mut("members").and_then(Value::as_array_mut),
            ) {
                members.retain(|m| m["type"] == json!(ty));
            }
            v
        })
        .collect();
    if let Some(id) = p.get("poolid")
        && list.is_empty()
    {
        return Err(ApiError::fail(format!("pool '{id}' does not exist")));
    }
    Ok(Value::Array(list))
}

fn pool_get(st: &State, id: &str) -> ApiResult<Value> {
    let pool = st
        .pools
        .get(id)
        .ok_or_else(|| ApiError::fail(format!("pool '{id}' does not exist")))?;
    let mut v = pool_json(st, id, pool, true);
    if let Some(o) = v.as_object_mut() {
        o.remove("poolid");
    }
    Ok(v)
}

/// pve-manager PVE/API2/Pool.pm, `create_pool`: a nested pool needs its parent, every
/// level starts with a letter, and an empty comment is not stored.
fn pool_create(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "poolid")?;
    if st.pools.contains_key(id) {
        return Err(ApiError::fail(format!("pool '{id}' already exists")));
    }
    let leaf = match id.rsplit_once('/') {
        Some((parent, leaf)) => {
            if !st.pools.contains_key(parent) {
                return Err(ApiError::fail(format!(
                    "parent '{parent}' of pool '{id}' does not exist"
                )));
            }
            leaf
        }
        None => id,
    };
    if !leaf.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(ApiError::fail("pool name must start with a letter"));
    }
    st.pools.insert(
        id.to_string(),
        Pool {
            comment: opt_str(p, "comment").filter(|c| !c.is_empty() && c != "0"),
            ..Pool::default()
        },
    );
    Ok(Value::Null)
}

fn pool_update(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "poolid")?.to_string();
    if !st.pools.contains_key(&id) {
        return Err(ApiError::fail(format!("pool '{id}' does not exist")));
    }
    let delete = flag(p, "delete", false);
    let allow_move = flag(p, "allow-move", false);
    if let Some(vms) = p.get("vms") {
        for v in super::formats::split_list(vms) {
            let vmid: u32 = v
                .parse()
                .map_err(|_| ApiError::param("vms", format!("invalid VMID '{v}'")))?;
            if !st.guests.contains_key(&vmid) {
                return Err(ApiError::fail(format!("VM {vmid} does not exist")));
            }
            // pve-manager PVE/API2/Pool.pm, `update_pool`: removing a non-member or adding
            // a member again is an error.
            let member = st.pools.get(&id).is_some_and(|pl| pl.vms.contains(&vmid));
            if delete {
                if !member {
                    return Err(ApiError::fail(format!("VM {vmid} is not a pool member")));
                }
                if let Some(pool) = st.pools.get_mut(&id) {
                    pool.vms.remove(&vmid);
                }
                continue;
            }
            if member {
                return Err(ApiError::fail(format!(
                    "VM {vmid} is already a pool member"
                )));
            }
            if let Some((other, _)) = st
                .pools
                .iter()
                .find(|(o, pl)| **o != id && pl.vms.contains(&vmid))
            {
                if !allow_move {
                    return Err(ApiError::fail(format!(
                        "VM {vmid} belongs already to pool '{other}' and 'allow-move' is not set"
                    )));
                }
                let other = other.clone();
                if let Some(pl) = st.pools.get_mut(&other) {
                    pl.vms.remove(&vmid);
                }
            }
            if let Some(pool) = st.pools.get_mut(&id) {
                pool.vms.insert(vmid);
            }
        }
    }
    if let Some(s) = p.get("storage") {
        for sid in super::formats::split_list(s) {
            if !st.storages.contains_key(sid) {
                return Err(ApiError::fail(format!("storage '{sid}' does not exist")));
            }
            if let Some(pool) = st.pools.get_mut(&id) {
                if delete {
                    if !pool.storage.remove(sid) {
                        return Err(ApiError::fail(format!(
                            "Storage '{sid}' is not a pool member"
                        )));
                    }
                } else if !pool.storage.insert(sid.to_string()) {
                    return Err(ApiError::fail(format!(
                        "Storage '{sid}' is already a pool member"
                    )));
                }
            }
        }
    }
    if let Some(c) = p.get("comment")
        && let Some(pool) = st.pools.get_mut(&id)
    {
        pool.comment = Some(c.clone());
    }
    Ok(Value::Null)
}

fn pool_delete(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "poolid")?;
    let pool = st
        .pools
        .get(id)
        .ok_or_else(|| ApiError::fail(format!("pool '{id}' does not exist")))?;
    // pve-manager PVE/API2/Pool.pm, `delete_pool`: sub-pools first, then guests and
    // storages that still exist, each named.
    let prefix = format!("{id}/");
    if let Some(sub) = st.pools.keys().find(|k| k.starts_with(&prefix)) {
        return Err(ApiError::fail(format!(
            "pool '{id}' is not empty (contains pool '{sub}')"
        )));
    }
    if let Some(vmid) = pool.vms.iter().find(|v| st.guests.contains_key(v)) {
        return Err(ApiError::fail(format!(
            "pool '{id}' is not empty (contains VM {vmid})"
        )));
    }
    if let Some(sid) = pool.storage.iter().find(|s| st.storages.contains_key(*s)) {
        return Err(ApiError::fail(format!(
            "pool '{id}' is not empty (contains storage '{sid}')"
        )));
    }
    st.pools.remove(id);
    Ok(Value::Null)
}

// ----------------------------------------------------------------------------- ticket

fn ticket(sim: &Sim, st: &State, p: &Params) -> ApiResult<Value> {
    let mut username = req(p, "username")?.to_string();
    if !username.contains('@') {
        let realm = p.get("realm").map(String::as_str).unwrap_or("pam");
        username = format!("{username}@{realm}");
    }
    let password = req(p, "password")?;
    let fail = || ApiError::status(401, "authentication failure");
    let user = st.users.get(&username).ok_or_else(fail)?;
    let renewing =
        auth::verify_ticket(&st.auth_key, password).as_deref() == Some(username.as_str());
    let password_ok = if username == "root@pam" {
        password == sim.root_password()
    } else {
        user.password_hash
            .as_deref()
            .is_some_and(|h| auth::password_ok(h, password))
    };
    if !(renewing || password_ok) || !user.enable || (user.expire != 0 && user.expire < now()) {
        return Err(fail());
    }
    let t = now();
    let caller = Caller {
        authid: username.clone(),
        user: username.clone(),
        token: None,
        ticket: true,
    };
    let mut cap = Map::new();
    for (area, path) in [
        ("vms", "/vms"),
        ("storage", "/storage"),
        ("access", "/access"),
        ("nodes", "/nodes"),
        ("dc", "/"),
        ("sdn", "/sdn"),
    ] {
        let privs: Map<String, Value> = auth::privileges(st, &caller, path)
            .into_iter()
            .map(|p| (p, json!(1)))
            .collect();
        cap.insert(area.into(), Value::Object(privs));
    }
    Ok(json!({
        "username": username,
        "ticket": auth::make_ticket(&st.auth_key, &username, t),
        "CSRFPreventionToken": auth::make_csrf(&st.auth_key, &username, t),
        "cap": cap,
        "clustername": st.cluster,
    }))
}

// ----------------------------------------------------------------------------- users

fn user_json(id: &str, u: &User, st: &State, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("userid".into(), json!(id));
    o.insert("enable".into(), json!(u8::from(u.enable)));
    o.insert("expire".into(), json!(u.expire));
    for (k, v) in [
        ("comment", &u.comment),
        ("email", &u.email),
        ("firstname", &u.firstname),
        ("lastname", &u.lastname),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    if !u.groups.is_empty() {
        o.insert("groups".into(), json!(u.groups.join(",")));
    }
    if full {
        let tokens: Vec<Value> = st
            .tokens
            .values()
            .filter(|t| t.userid == id)
            .map(token_json)
            .collect();
        o.insert("tokens".into(), Value::Array(tokens));
        o.insert(
            "realm-type".into(),
            json!(id.rsplit('@').next().unwrap_or("")),
        );
    }
    Value::Object(o)
}

fn users_list(st: &State, p: &Params) -> ApiResult<Value> {
    let enabled = p.get("enabled").map(|v| v == "1");
    Ok(Value::Array(
        st.users
            .iter()
            .filter(|(_, u)| enabled.is_none_or(|e| u.enable == e))
            .map(|(id, u)| user_json(id, u, st, flag(p, "full", false)))
            .collect(),
    ))
}

fn user_of<'a>(st: &'a State, id: &str) -> ApiResult<&'a User> {
    st.users
        .get(id)
        .ok_or_else(|| ApiError::fail(format!("no such user ('{id}')")))
}

fn user_get(st: &State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "userid")?;
    let u = user_of(st, id)?;
    let mut v = user_json(id, u, st, true);
    if let Some(o) = v.as_object_mut() {
        o.remove("userid");
        if let Some(Value::Array(tokens)) = o.remove("tokens") {
            let map: Map<String, Value> = tokens
                .into_iter()
                .filter_map(|mut t| {
                    let id = t.get("tokenid")?.as_str()?.to_string();
                    t.as_object_mut()?.remove("tokenid");
                    Some((id, t))
                })
                .collect();
            o.insert("tokens".into(), Value::Object(map));
        }
    }
    Ok(v)
}

fn user_create(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "userid")?.to_string();
    if st.users.contains_key(&id) {
        return Err(ApiError::fail(format!(
            "create user failed: user '{id}' already exists"
        )));
    }
    let realm = id.rsplit('@').next().unwrap_or("");
    if !matches!(realm, "pve" | "pam") {
        return Err(ApiError::fail(format!(
            "create user failed: domain '{realm}' does not exist"
        )));
    }
    if p.contains_key("password") && realm != "pve" {
        return Err(ApiError::fail(format!(
            "create user failed: can't set password on auth type '{realm}'"
        )));
    }
    st.users.insert(
        id,
        User {
            enable: flag(p, "enable", true),
            expire: p.get("expire").and_then(|e| e.parse().ok()).unwrap_or(0),
            comment: opt_str(p, "comment"),
            email: opt_str(p, "email"),
            firstname: opt_str(p, "firstname"),
            lastname: opt_str(p, "lastname"),
            groups: p
                .get("groups")
                .map(|g| super::formats::split_list(g).map(str::to_string).collect())
                .unwrap_or_default(),
            password_hash: p.get("password").map(|pw| auth::password_hash(pw)),
        },
    );
    Ok(Value::Null)
}

fn user_update(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "userid")?.to_string();
    user_of(st, &id)?;
    let u = st.users.entry(id).or_default();
    if let Some(e) = p.get("enable") {
        u.enable = e == "1";
    }
    if let Some(e) = p.get("expire") {
        u.expire = e.parse().unwrap_or(0);
    }
    for (k, f) in [
        ("comment", &mut u.comment),
        ("email", &mut u.email),
        ("firstname", &mut u.firstname),
        ("lastname", &mut u.lastname),
    ] {
        if let Some(v) = p.get(k) {
            *f = Some(v.clone());
        }
    }
    if let Some(g) = p.get("groups") {
        let new: Vec<String> = super::formats::split_list(g).map(str::to_string).collect();
        if flag(p, "append", false) {
            u.groups.extend(new);
        } else {
            u.groups = new;
        }
    }
    Ok(Value::Null)
}

fn user_delete(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "userid")?.to_string();
    user_of(st, &id)?;
    if id == "root@pam" {
        return Err(ApiError::fail(
            "delete user failed: cannot delete 'root@pam'",
        ));
    }
    st.users.remove(&id);
    st.tokens.retain(|_, t| t.userid != id);
    st.acl.retain(|e| {
        !(e.ty == "user" && e.ugid == id
            || e.ty == "token" && e.ugid.starts_with(&format!("{id}!")))
    });
    Ok(Value::Null)
}

// ----------------------------------------------------------------------------- tokens

fn token_json(t: &Token) -> Value {
    let mut o = Map::new();
    o.insert("tokenid".into(), json!(t.tokenid));
    o.insert("privsep".into(), json!(u8::from(t.privsep)));
    o.insert("expire".into(), json!(t.expire));
    if let Some(c) = &t.comment {
        o.insert("comment".into(), json!(c));
    }
    Value::Object(o)
}

fn tokens_list(st: &State, p: &Params) -> ApiResult<Value> {
    let user = req(p, "userid")?;
    user_of(st, user)?;
    Ok(Value::Array(
        st.tokens
            .values()
            .filter(|t| t.userid == user)
            .map(token_json)
            .collect(),
    ))
}

fn token_full(p: &Params) -> ApiResult<String> {
    Ok(format!("{}!{}", req(p, "userid")?, req(p, "tokenid")?))
}

fn token_get(st: &State, p: &Params) -> ApiResult<Value> {
    let full = token_full(p)?;
    let t = st.tokens.get(&full).ok_or_else(|| {
        ApiError::fail(format!(
            "no such token '{}' for user '{}'",
            req(p, "tokenid").unwrap_or(""),
            req(p, "userid").unwrap_or("")
        ))
    })?;
    let mut v = token_json(t);
    if let Some(o) = v.as_object_mut() {
        o.remove("tokenid");
    }
    Ok(v)
}

fn token_create(st: &mut State, p: &Params) -> ApiResult<Value> {
    let user = req(p, "userid")?.to_string();
    let tokenid = req(p, "tokenid")?.to_string();
    user_of(st, &user)?;
    let full = format!("{user}!{tokenid}");
    if st.tokens.contains_key(&full) {
        return Err(ApiError::fail("Token already exists."));
    }
    let secret = auth::uuid();
    let t = Token {
        userid: user,
        tokenid,
        secret_sha256: auth::secret_hash(&secret),
        privsep: flag(p, "privsep", true),
        expire: p.get("expire").and_then(|e| e.parse().ok()).unwrap_or(0),
        comment: opt_str(p, "comment"),
    };
    let mut info = token_json(&t);
    if let Some(o) = info.as_object_mut() {
        o.remove("tokenid");
    }
    st.tokens.insert(full.clone(), t);
    Ok(json!({"full-tokenid": full, "value": secret, "info": info}))
}

fn token_update(st: &mut State, p: &Params) -> ApiResult<Value> {
    let full = token_full(p)?;
    let t = st
        .tokens
        .get_mut(&full)
        .ok_or_else(|| ApiError::fail(format!("no such token '{full}'")))?;
    if let Some(v) = p.get("privsep") {
        t.privsep = v == "1";
    }
    if let Some(v) = p.get("expire") {
        t.expire = v.parse().unwrap_or(0);
    }
    if let Some(v) = p.get("comment") {
        t.comment = Some(v.clone());
    }
    let mut v = token_json(t);
    if let Some(o) = v.as_object_mut() {
        o.remove("tokenid");
    }
    Ok(v)
}

fn token_delete(st: &mut State, p: &Params) -> ApiResult<Value> {
    let full = token_full(p)?;
    if st.tokens.remove(&full).is_none() {
        return Err(ApiError::fail(format!("no such token '{full}'")));
    }
    st.acl.retain(|e| !(e.ty == "token" && e.ugid == full));
    Ok(Value::Null)
}

// ----------------------------------------------------------------------------- ACL, roles

fn acl_list(st: &State, caller: &Caller) -> ApiResult<Value> {
    Ok(Value::Array(
        st.acl
            .iter()
            .filter(|e| {
                caller.is_root()
                    || auth::privileges(st, caller, &e.path).contains("Permissions.Modify")
                    || auth::privileges(st, caller, &e.path).contains("Sys.Audit")
            })
            .map(|e| {
                json!({
                    "path": e.path,
                    "type": e.ty,
                    "ugid": e.ugid,
                    "roleid": e.roleid,
                    "propagate": u8::from(e.propagate),
                })
            })
            .collect(),
    ))
}

fn acl_update(st: &mut State, p: &Params) -> ApiResult<Value> {
    let path = req(p, "path")?.to_string();
    let roles: Vec<String> = super::formats::split_list(req(p, "roles")?)
        .map(str::to_string)
        .collect();
    let delete = flag(p, "delete", false);
    let propagate = flag(p, "propagate", true);
    if !path.starts_with('/') {
        return Err(ApiError::param(
            "path",
            format!("invalid ACL path '{path}'"),
        ));
    }
    for r in &roles {
        if auth::builtin_role(r).is_none() && !st.roles.contains_key(r) {
            return Err(ApiError::fail(format!("role '{r}' does not exist")));
        }
    }
    let mut subjects = Vec::new();
    for (param, ty) in [("users", "user"), ("groups", "group"), ("tokens", "token")] {
        if let Some(list) = p.get(param) {
            for id in super::formats::split_list(list) {
                match ty {
                    "user" if !st.users.contains_key(id) => {
                        return Err(ApiError::fail(format!("user '{id}' does not exist")));
                    }
                    "token" if !st.tokens.contains_key(id) => {
                        return Err(ApiError::fail(format!("no such token '{id}'")));
                    }
                    _ => {}
                }
                subjects.push((ty, id.to_string()));
            }
        }
    }
    for (ty, id) in subjects {
        for r in &roles {
            st.acl
                .retain(|e| !(e.path == path && e.ty == ty && e.ugid == id && e.roleid == *r));
            if !delete {
                st.acl.push(AclEntry {
                    path: path.clone(),
                    ty: ty.to_string(),
                    ugid: id.clone(),
                    roleid: r.clone(),
                    propagate,
                });
            }
        }
    }
    Ok(Value::Null)
}

fn roles_list(st: &State) -> ApiResult<Value> {
    let builtin = auth::BUILTIN_ROLES;
    let mut list: Vec<Value> = builtin
        .iter()
        .map(|r| {
            let privs: Vec<String> = auth::builtin_role(r)
                .unwrap_or_default()
                .into_iter()
                .collect();
            json!({"roleid": r, "privs": privs.join(","), "special": 1})
        })
        .collect();
    for (r, privs) in &st.roles {
        let privs: Vec<&str> = privs.iter().map(String::as_str).collect();
        list.push(json!({"roleid": r, "privs": privs.join(",")}));
    }
    Ok(Value::Array(list))
}

fn parse_privs(p: &Params) -> ApiResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if let Some(list) = p.get("privs") {
        for pr in super::formats::split_list(list) {
            if !auth::PRIVILEGES.contains(&pr) {
                return Err(ApiError::fail(format!("invalid privilege '{pr}'")));
            }
            out.insert(pr.to_string());
        }
    }
    Ok(out)
}

fn role_create(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "roleid")?.to_string();
    if auth::builtin_role(&id).is_some() || st.roles.contains_key(&id) {
        return Err(ApiError::fail(format!("role '{id}' already exists")));
    }
    let privs = parse_privs(p)?;
    st.roles.insert(id, privs);
    Ok(Value::Null)
}

fn role_get(st: &State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "roleid")?;
    let privs = auth::builtin_role(id)
        .or_else(|| st.roles.get(id).cloned())
        .ok_or_else(|| ApiError::fail(format!("role '{id}' does not exist")))?;
    Ok(Value::Object(
        privs.into_iter().map(|p| (p, json!(1))).collect(),
    ))
}

fn role_update(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "roleid")?.to_string();
    if auth::builtin_role(&id).is_some() {
        return Err(ApiError::fail(format!(
            "cannot modify built-in role '{id}'"
        )));
    }
    let privs = parse_privs(p)?;
    let role = st
        .roles
        .get_mut(&id)
        .ok_or_else(|| ApiError::fail(format!("role '{id}' does not exist")))?;
    if flag(p, "append", false) {
        role.extend(privs);
    } else {
        *role = privs;
    }
    Ok(Value::Null)
}

fn role_delete(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "roleid")?.to_string();
    if auth::builtin_role(&id).is_some() {
        return Err(ApiError::fail(format!(
            "cannot delete built-in role '{id}'"
        )));
    }
    if st.roles.remove(&id).is_none() {
        return Err(ApiError::fail(format!("role '{id}' does not exist")));
    }
    st.acl.retain(|e| e.roleid != id);
    Ok(Value::Null)
}

// ----------------------------------------------------------------------------- backup jobs

fn backup_json(id: &str, job: &BTreeMap<String, String>) -> Value {
    let mut o: Map<String, Value> = job
        .iter()
        .map(|(k, v)| {
            let val = match k.as_str() {
                "enabled" | "all" | "protected" | "repeat-missed" => v
                    .parse::<i64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v)),
                // jobs.cfg parses property-string options into hashes, so the API answers
                // objects (the schema's `type: object`) with the values as strings.
                "prune-backups" | "fleecing" | "performance" => {
                    let default_key = (k == "fleecing").then_some("enabled");
                    let obj: Map<String, Value> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| match p.split_once('=') {
                            Some((a, b)) => Some((a.to_string(), json!(b))),
                            None => default_key.map(|d| (d.to_string(), json!(p))),
                        })
                        .collect();
                    Value::Object(obj)
                }
                _ => json!(v),
            };
            (k.clone(), val)
        })
        .collect();
    o.insert("id".into(), json!(id));
    o.insert("type".into(), json!("vzdump"));
    o.entry("enabled").or_insert(json!(1));
    // pve-manager `PVE/API2/Backup.pm` `index`: every job with a schedule gets the next
    // event after now, enabled or not.
    if let Some(next) = job
        .get("schedule")
        .and_then(|s| super::calendar::next_event(s, now() as i64))
    {
        o.insert("next-run".into(), json!(next));
    }
    Value::Object(o)
}

fn backup_list(st: &State) -> ApiResult<Value> {
    Ok(Value::Array(
        st.backup_jobs
            .iter()
            .map(|(id, j)| backup_json(id, j))
            .collect(),
    ))
}

/// pve-manager `PVE/API2/Backup.pm` `create_job`: per-parameter permissions
/// (`assert_param_permission_create`) and the pool's `VM.Backup` come first.
fn backup_create(st: &mut State, caller: &Caller, p: &Params) -> ApiResult<Value> {
    super::perms::backup_create(st, caller, p)?;
    let id = p
        .get("id")
        .cloned()
        .unwrap_or_else(|| format!("backup-{}", &hex::encode(rand::random::<[u8; 6]>())[..12]));
    if st.backup_jobs.contains_key(&id) {
        return Err(ApiError::fail(format!("Job '{id}' already exists")));
    }
    if !p.contains_key("vmid") && !flag(p, "all", false) && !p.contains_key("pool") {
        return Err(ApiError::param(
            "vmid",
            "property is missing and it is not optional",
        ));
    }
    if let Some(s) = p.get("storage")
        && !st.storages.contains_key(s)
    {
        return Err(ApiError::fail(format!("storage '{s}' does not exist")));
    }
    let job: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| *k != "id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    st.backup_jobs.insert(id, job);
    Ok(Value::Null)
}

fn backup_get(st: &State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "id")?;
    st.backup_jobs
        .get(id)
        .map(|j| backup_json(id, j))
        // Backup.pm read_job: raise_param_exc({ id => "No such job '$id'" }).
        .ok_or_else(|| ApiError::param("id", format!("No such job '{id}'")))
}

/// pve-manager `PVE/API2/Backup.pm` `update_job`: `assert_param_permission_update` before
/// the job is read and again with the stored job (its storage needs `Datastore.Allocate`
/// too, so a token cannot retarget a job it could not have created).
fn backup_update(st: &mut State, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let id = req(p, "id")?.to_string();
    let update: Params = p
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "delete" | "digest"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deletes: Vec<String> = p
        .get("delete")
        .map(|d| super::formats::split_list(d).map(str::to_string).collect())
        .unwrap_or_default();
    super::perms::backup_update(st, caller, &update, &deletes, None)?;
    if update.is_empty() && deletes.is_empty() {
        return Err(ApiError::fail("no options specified"));
    }
    if let Some(current) = st.backup_jobs.get(&id) {
        super::perms::backup_update(st, caller, &update, &deletes, Some(current))?;
    }
    let job = st
        .backup_jobs
        .get_mut(&id)
        // Backup.pm update_job: die "no such vzdump job\n" inside the lock.
        .ok_or_else(|| ApiError::fail("no such vzdump job"))?;
    if let Some(d) = p.get("delete") {
        for k in super::formats::split_list(d) {
            job.remove(k);
        }
    }
    for (k, v) in p {
        if k != "id" && k != "delete" && k != "digest" {
            job.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Null)
}

fn backup_delete(st: &mut State, p: &Params) -> ApiResult<Value> {
    let id = req(p, "id")?;
    st.backup_jobs
        .remove(id)
        .map(|_| Value::Null)
        // Backup.pm delete_job: raise_param_exc({ id => "No such job '$id'" }).
        .ok_or_else(|| ApiError::param("id", format!("No such job '{id}'")))
}
