//! The endpoint table (generated from the official PVE 9.1 API schema by `cargo xtask
//! codegen`, embedded) and request validation with PVE's per-parameter messages.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult};

/// Request parameters after decoding: every value as the string PVE would see.
pub type Params = BTreeMap<String, String>;

const TABLE: &str = include_str!("schema_table.json");

/// One served endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    /// Path template, e.g. `/nodes/{node}/qemu/{vmid}`.
    pub path: String,
    /// HTTP method.
    pub method: String,
    /// Parameter schemas by name (`net[n]` for indexed ones).
    pub params: BTreeMap<String, ParamSchema>,
    /// Whether unknown parameters are allowed.
    #[serde(default)]
    pub additional: bool,
    /// Whether API tokens may call it.
    #[serde(default)]
    pub allowtoken: Option<bool>,
    /// The parameter naming the node the request is proxied to.
    #[serde(default)]
    pub proxyto: Option<String>,
    /// Permission requirements (`check` expression, `user`).
    #[serde(default)]
    pub permissions: Option<Value>,
}

/// The schema of one parameter (or one key of a property string).
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct ParamSchema {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub optional: bool,
    pub format: Option<String>,
    #[serde(rename = "enum")]
    pub enumeration: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_num")]
    pub minimum: Option<f64>,
    #[serde(default, deserialize_with = "de_num")]
    pub maximum: Option<f64>,
    #[serde(rename = "minLength")]
    pub min_length: Option<usize>,
    #[serde(rename = "maxLength")]
    pub max_length: Option<usize>,
    pub pattern: Option<String>,
    pub requires: Option<Value>,
    #[serde(default, deserialize_with = "de_bool")]
    pub default_key: bool,
    pub alias: Option<String>,
    #[serde(rename = "keyAlias")]
    pub key_alias: Option<String>,
    pub default: Option<Value>,
    pub props: Option<BTreeMap<String, ParamSchema>>,
    pub items: Option<Box<ParamSchema>>,
    pub max_index: Option<u32>,
}

fn de_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
        Value::String(s) => s == "1",
        _ => false,
    })
}

// The schema writes a few bounds as strings (`"minimum": "0"`).
fn de_num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

#[derive(Debug, Deserialize)]
struct Table {
    endpoints: Vec<Endpoint>,
}

/// All served endpoints (parsed once from the embedded table).
pub fn endpoints() -> &'static [Endpoint] {
    static T: OnceLock<Vec<Endpoint>> = OnceLock::new();
    T.get_or_init(|| match serde_json::from_str::<Table>(TABLE) {
        Ok(t) => t.endpoints,
        Err(e) => {
            // The table is generated and checked in; a unit test proves it parses.
            tracing::error!("embedded PVE endpoint table does not parse: {e}");
            Vec::new()
        }
    })
}

/// The result of matching a request path.
#[derive(Debug)]
pub enum Match {
    /// Path and method served.
    Found(&'static Endpoint, Params),
    /// Path known, method not.
    NoMethod,
    /// Path unknown.
    NoPath,
}

/// Match a path (below `/api2/json`, percent-decoded per segment) and method.
pub fn lookup(method: &str, path: &str) -> Match {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let mut path_known = false;
    // Literal segments beat `{param}` ones (`/nodes/{node}/qemu/{vmid}/status/current`
    // vs a hypothetical template), so prefer the template with the most literals.
    let mut best: Option<(&'static Endpoint, Params, usize)> = None;
    for ep in endpoints() {
        let tsegs: Vec<&str> = ep.path.split('/').skip(1).collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut params = Params::new();
        let mut literals = 0;
        let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                params.insert(name.to_string(), percent_decode(s));
                !s.is_empty()
            } else {
                literals += 1;
                t == s
            }
        });
        if !ok {
            continue;
        }
        path_known = true;
        if ep.method == method && best.as_ref().is_none_or(|b| b.2 < literals) {
            best = Some((ep, params, literals));
        }
    }
    match best {
        Some((ep, params, _)) => Match::Found(ep, params),
        None if path_known => Match::NoMethod,
        None => Match::NoPath,
    }
}

/// Decode `%XX` escapes (invalid ones stay as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

impl Endpoint {
    /// The schema of a parameter name, resolving `net0` to `net[n]`.
    pub fn schema_of(&self, name: &str) -> Option<&ParamSchema> {
        if let Some(s) = self.params.get(name) {
            return Some(s);
        }
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits == name.len() {
            return None;
        }
        let (base, idx) = name.split_at(name.len() - digits);
        let s = self.params.get(&format!("{base}[n]"))?;
        let idx: u32 = idx.parse().ok()?;
        if idx.to_string() != name[base.len()..] {
            return None;
        }
        match s.max_index {
            Some(max) if idx > max => None,
            _ => Some(s),
        }
    }

    /// Validate merged parameters (path parameters included) the way PVE's JSONSchema does.
    pub fn validate(&self, params: &Params) -> ApiResult<()> {
        let mut errors = BTreeMap::new();
        for (name, value) in params {
            match self.schema_of(name) {
                Some(schema) => {
                    if let Err(msg) = check_value(name, schema, value) {
                        add_error(&mut errors, name, msg);
                    }
                    if let Some(Value::String(req)) = &schema.requires
                        && !params.contains_key(req)
                    {
                        add_error(
                            &mut errors,
                            req,
                            format!("missing property - '{name}' requires this property"),
                        );
                    }
                }
                None if self.additional => {}
                None => add_error(
                    &mut errors,
                    name,
                    "property is not defined in schema and the schema does not allow additional properties".into(),
                ),
            }
        }
        for (name, schema) in &self.params {
            if !schema.optional && !name.ends_with("[n]") && !params.contains_key(name) {
                add_error(
                    &mut errors,
                    name,
                    "property is missing and it is not optional".into(),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::params(errors))
        }
    }
}

fn add_error(errors: &mut BTreeMap<String, String>, path: &str, msg: String) {
    errors
        .entry(path.to_string())
        .and_modify(|e| {
            e.push('\n');
            e.push_str(&msg);
        })
        .or_insert(msg);
}

fn is_integer(v: &str) -> bool {
    let d = v.strip_prefix(['+', '-']).unwrap_or(v);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

fn is_number(v: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$").ok())
        .as_ref()
        .is_some_and(|re| re.is_match(v))
}

fn regex_for(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    c.entry(pattern.to_string())
        // PVE anchors every pattern: m/^$pattern$/. Perl-only constructs make Regex::new
        // fail; such a pattern is then not checked (none of the served ones need it).
        .or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok())
        .clone()
}

/// Check one value against its schema (JSONSchema.pm `check_prop` order: type, format,
/// pattern, maxLength, minLength, maximum, minimum, enum).
pub fn check_value(name: &str, schema: &ParamSchema, value: &str) -> Result<(), String> {
    let ty = schema.ty.as_deref().unwrap_or("string");
    // Array parameters arrive as repeated form keys, which the server joins with NUL as
    // CGI's `Vars` does; each element is checked against `items`.
    if ty == "array" {
        let items = schema.items.as_deref().cloned().unwrap_or_default();
        for el in value.split('\0') {
            check_value(name, &items, el)?;
        }
        return Ok(());
    }
    let type_ok = match ty {
        "boolean" => value == "1" || value == "0",
        "integer" => is_integer(value),
        "number" => is_number(value),
        _ => true,
    };
    if !type_ok {
        return Err(format!("type check ('{ty}') failed - got '{value}'"));
    }
    if let Some(props) = &schema.props {
        parse_property_string(name, props, value).map_err(|e| format!("invalid format - {e}"))?;
    } else if let Some(fmt) = &schema.format
        && let Err(e) = super::formats::check(fmt, value)
    {
        return Err(format!("invalid format - {e}\n"));
    }
    if let Some(p) = &schema.pattern
        && let Some(re) = regex_for(p)
        && !re.is_match(value)
    {
        return Err("value does not match the regex pattern".into());
    }
    if let Some(max) = schema.max_length
        && value.chars().count() > max
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(min) = schema.min_length
        && value.chars().count() < min
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    if is_number(value)
        && let Ok(n) = value.parse::<f64>()
    {
        if let Some(max) = schema.maximum
            && n > max
        {
            return Err(format!("value must have a maximum value of {}", num(max)));
        }
        if let Some(min) = schema.minimum
            && n < min
        {
            return Err(format!("value must have a minimum value of {}", num(min)));
        }
    }
    if let Some(e) = &schema.enumeration
        && !e.iter().any(|v| v == value)
    {
        return Err(format!(
            "value '{value}' does not have a value in the enumeration '{}'",
            e.join(", ")
        ));
    }
    Ok(())
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// Parse a property string (`key=value,...` with an optional positional default key) and
/// check it against its key schemas. Errors read like PVE's `parse_property_string`.
pub fn parse_property_string(
    name: &str,
    props: &BTreeMap<String, ParamSchema>,
    value: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut res = BTreeMap::new();
    let default_key = props
        .iter()
        .find(|(_, s)| s.default_key)
        .map(|(k, _)| k.clone());
    for part in value.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        if let Some((k, v)) = part.split_once('=')
            && !k.is_empty()
            && !v.is_empty()
        {
            let mut key = k.to_string();
            if res.contains_key(&key) {
                return Err(format!(
                    "duplicate key in comma-separated list property: {key}\n"
                ));
            }
            let Some(mut schema) = props.get(&key) else {
                return Err(format!(
                    "invalid key in comma-separated list property: {key}\n"
                ));
            };
            if let Some(alias) = &schema.alias {
                if let Some(ka) = &schema.key_alias {
                    if res.contains_key(ka) {
                        return Err(format!(
                            "duplicate key in comma-separated list property: {ka}\n"
                        ));
                    }
                    res.insert(ka.clone(), key.clone());
                }
                key = alias.clone();
                schema = match props.get(&key) {
                    Some(s) => s,
                    None => {
                        return Err(format!(
                            "invalid key in comma-separated list property: {key}\n"
                        ));
                    }
                };
            }
            let v = if schema.ty.as_deref() == Some("boolean") {
                match v.to_ascii_lowercase().as_str() {
                    "1" | "on" | "yes" | "true" => "1".to_string(),
                    "0" | "off" | "no" | "false" => "0".to_string(),
                    _ => v.to_string(),
                }
            } else {
                v.to_string()
            };
            res.insert(key, v);
        } else if !part.contains('=') {
            let Some(dk) = &default_key else {
                return Err("value without key, but schema does not define a default key\n".into());
            };
            if res.contains_key(dk) {
                return Err(format!(
                    "duplicate key in comma-separated list property: {dk}\n"
                ));
            }
            res.insert(dk.clone(), part.to_string());
        } else {
            return Err("missing key in comma-separated list property\n".into());
        }
    }
    let mut errors = BTreeMap::new();
    for (k, s) in props {
        let path = format!("{name}.{k}");
        match res.get(k) {
            Some(v) => {
                if let Err(e) = check_value(&path, s, v) {
                    add_error(&mut errors, &path, e);
                }
            }
            None if !s.optional && s.alias.is_none() => {
                add_error(
                    &mut errors,
                    &path,
                    "property is missing and it is not optional".into(),
                );
            }
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(res)
    } else {
        let mut msg = String::from("format error\n");
        for (k, v) in errors {
            msg.push_str(&format!("{k}: {v}\n"));
        }
        Err(msg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ep(method: &str, path: &str) -> &'static Endpoint {
        match lookup(method, path) {
            Match::Found(e, _) => e,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn table_parses_and_matches_paths() {
        assert!(endpoints().len() > 90);
        let Match::Found(e, p) = lookup("GET", "/nodes/pve1/qemu/100/status/current") else {
            panic!()
        };
        assert_eq!(e.path, "/nodes/{node}/qemu/{vmid}/status/current");
        assert_eq!(p["vmid"], "100");
        assert!(matches!(
            lookup("PATCH", "/nodes/pve1/qemu"),
            Match::NoMethod
        ));
        assert!(matches!(lookup("GET", "/nope"), Match::NoPath));
    }

    #[test]
    fn validation_messages_are_pves() {
        let e = ep("POST", "/nodes/pve1/qemu");
        let mut p = Params::new();
        p.insert("node".into(), "pve1".into());
        p.insert("vmid".into(), "99".into());
        p.insert("cores".into(), "abc".into());
        p.insert("sockets".into(), "0".into());
        p.insert("start".into(), "true".into());
        p.insert("bogus".into(), "1".into());
        p.insert("net0".into(), "virtio,bridge=vmbr0,tag=5000".into());
        p.insert("net99".into(), "virtio".into());
        p.insert("ostype".into(), "dos".into());
        let err = e.validate(&p).unwrap_err();
        let errs = err.errors.unwrap();
        // The pve-vmid format check runs before the range check, as in JSONSchema.pm.
        assert_eq!(
            errs["vmid"],
            "invalid format - value does not look like a valid VM ID\n"
        );
        assert_eq!(errs["sockets"], "value must have a minimum value of 1");
        assert_eq!(errs["cores"], "type check ('integer') failed - got 'abc'");
        assert_eq!(errs["start"], "type check ('boolean') failed - got 'true'");
        assert_eq!(
            errs["bogus"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        assert_eq!(
            errs["net99"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        assert_eq!(
            errs["net0"],
            "invalid format - format error\nnet0.tag: value must have a maximum value of 4094\n"
        );
        assert!(
            errs["ostype"]
                .starts_with("value 'dos' does not have a value in the enumeration 'other, wxp")
        );
        p.clear();
        p.insert("node".into(), "pve1".into());
        let errs = e.validate(&p).unwrap_err().errors.unwrap();
        assert_eq!(errs["vmid"], "property is missing and it is not optional");
    }

    #[test]
    fn property_strings_resolve_aliases_and_default_keys() {
        let e = ep("POST", "/nodes/pve1/qemu");
        let props = e.schema_of("net0").unwrap().props.as_ref().unwrap();
        let m = parse_property_string(
            "net0",
            props,
            "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1",
        )
        .unwrap();
        assert_eq!(m["model"], "virtio");
        assert_eq!(m["macaddr"], "BC:24:11:00:00:01");
        let err = parse_property_string("net0", props, "virtio,colour=red").unwrap_err();
        assert_eq!(
            err,
            "invalid key in comma-separated list property: colour\n"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("root%40pam%21t"), "root@pam!t");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
