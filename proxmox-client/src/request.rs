//! Pure request values: method, path and typed parameters, and their wire encoding.
//!
//! Every typed call builds an [`ApiRequest`] with a pure function (see [`crate::requests`]);
//! the client only sends it. That keeps request building testable without a network, and lets
//! a test check every request against the official API schema.

use std::fmt;

/// HTTP method of an API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET (parameters in the query string).
    Get,
    /// POST (parameters form-encoded in the body).
    Post,
    /// PUT (parameters form-encoded in the body).
    Put,
    /// DELETE (parameters in the query string).
    Delete,
}

impl Method {
    /// The method name as in the API schema (`GET`, `POST`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// Whether PVE reads parameters from the body (POST/PUT) rather than the query string.
    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter value with its schema type kept, so it can be encoded the PVE way
/// (booleans as `0`/`1`) and checked against the schema.
#[derive(Clone)]
pub enum ParamValue {
    /// A string (including property strings and lists).
    Str(String),
    /// An integer.
    Int(i64),
    /// A number.
    Num(f64),
    /// A boolean, sent as `1` or `0`.
    Bool(bool),
    /// A secret string (password): sent as is, redacted in `Debug`.
    Secret(secrecy::SecretString),
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Str(s) => f.debug_tuple("Str").field(s).finish(),
            ParamValue::Int(i) => f.debug_tuple("Int").field(i).finish(),
            ParamValue::Num(n) => f.debug_tuple("Num").field(n).finish(),
            ParamValue::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            ParamValue::Secret(_) => f.write_str("Secret([redacted])"),
        }
    }
}

impl PartialEq for ParamValue {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        match (self, other) {
            (ParamValue::Str(a), ParamValue::Str(b)) => a == b,
            (ParamValue::Int(a), ParamValue::Int(b)) => a == b,
            (ParamValue::Num(a), ParamValue::Num(b)) => a == b,
            (ParamValue::Bool(a), ParamValue::Bool(b)) => a == b,
            (ParamValue::Secret(a), ParamValue::Secret(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            _ => false,
        }
    }
}

impl From<secrecy::SecretString> for ParamValue {
    fn from(v: secrecy::SecretString) -> Self {
        ParamValue::Secret(v)
    }
}
impl From<&secrecy::SecretString> for ParamValue {
    fn from(v: &secrecy::SecretString) -> Self {
        ParamValue::Secret(v.clone())
    }
}

impl ParamValue {
    /// The form/query encoding of the value.
    pub fn to_wire(&self) -> String {
        match self {
            ParamValue::Str(s) => s.clone(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Num(n) => n.to_string(),
            ParamValue::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            ParamValue::Secret(s) => secrecy::ExposeSecret::expose_secret(s).to_string(),
        }
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Str(v.to_string())
    }
}
impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Str(v)
    }
}
impl From<&String> for ParamValue {
    fn from(v: &String) -> Self {
        ParamValue::Str(v.clone())
    }
}
impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ParamValue {
            fn from(v: $t) -> Self { ParamValue::Int(i64::from(v)) }
        }
    )*};
}
int_from!(u8, u16, u32, i32, i64);
impl From<u64> for ParamValue {
    fn from(v: u64) -> Self {
        // Values above i64::MAX do not occur in the PVE API; saturate rather than wrap.
        ParamValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Num(v)
    }
}

/// One API call, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// Path below `/api2/json`, starting with `/`, segments percent-encoded.
    pub path: String,
    /// Parameters in insertion order (path parameters are not repeated here).
    pub params: Vec<(String, ParamValue)>,
}

impl ApiRequest {
    /// A request with no parameters. `segments` are percent-encoded and joined with `/`.
    pub fn new(method: Method, segments: &[&str]) -> ApiRequest {
        ApiRequest {
            method,
            path: path_of(segments),
            params: Vec::new(),
        }
    }

    /// A request on a literal path (already encoded), e.g. from the raw escape hatch.
    pub fn raw(method: Method, path: &str) -> ApiRequest {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        ApiRequest {
            method,
            path,
            params: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(mut self, name: &str, value: impl Into<ParamValue>) -> ApiRequest {
        self.params.push((name.to_string(), value.into()));
        self
    }

    /// Adds a parameter if it is `Some`.
    pub fn opt<V: Into<ParamValue>>(self, name: &str, value: Option<V>) -> ApiRequest {
        match value {
            Some(v) => self.param(name, v),
            None => self,
        }
    }

    /// Adds all parameters from a list.
    pub fn params(mut self, params: impl IntoIterator<Item = (String, ParamValue)>) -> ApiRequest {
        self.params.extend(params);
        self
    }

    /// The looked-up value of a parameter.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// `application/x-www-form-urlencoded` encoding of the parameters (body for POST/PUT,
    /// query string for GET/DELETE). Spaces become `%20`, never `+`.
    pub fn encoded_params(&self) -> String {
        let wire: Vec<(&str, String)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_wire()))
            .collect();
        encode_form(wire.iter().map(|(k, v)| (*k, v.as_str())))
    }
}

/// Characters left as-is in form values and path segments (RFC 3986 unreserved).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as in Perl's `uri_unescape`).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Form-encodes key/value pairs.
pub fn encode_form<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// Joins path segments, percent-encoding each (UPIDs contain `:`, `!` and `@`).
pub fn path_of(segments: &[&str]) -> String {
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.push_str(&percent_encode(s));
    }
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_zero_one_and_spaces_percent20() {
        let r = ApiRequest::new(Method::Post, &["nodes", "pve", "qemu"])
            .param("vmid", 100u32)
            .param("start", true)
            .param("onboot", false)
            .param("description", "a b+c&d=e");
        assert_eq!(
            r.encoded_params(),
            "vmid=100&start=1&onboot=0&description=a%20b%2Bc%26d%3De"
        );
        assert_eq!(r.path, "/nodes/pve/qemu");
    }

    #[test]
    fn upid_path_segment_is_encoded() {
        let p = path_of(&[
            "nodes",
            "pve",
            "tasks",
            "UPID:pve:0003C2FF:00829204:6738AA7F:qmcreate:100:root@pam!tf:",
            "status",
        ]);
        assert_eq!(
            p,
            "/nodes/pve/tasks/UPID%3Apve%3A0003C2FF%3A00829204%3A6738AA7F%3Aqmcreate%3A100%3Aroot%40pam%21tf%3A/status"
        );
    }

    #[test]
    fn percent_decode_keeps_plus() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn secrets_are_redacted_in_debug_but_sent() {
        let r = ApiRequest::new(Method::Post, &["access", "ticket"]).param(
            "password",
            secrecy::SecretString::from("hunter2".to_string()),
        );
        assert!(!format!("{r:?}").contains("hunter2"));
        assert_eq!(r.encoded_params(), "password=hunter2");
    }

    #[test]
    fn raw_path_gets_leading_slash() {
        assert_eq!(ApiRequest::raw(Method::Get, "version").path, "/version");
        assert_eq!(ApiRequest::raw(Method::Get, "/version").path, "/version");
    }
}
