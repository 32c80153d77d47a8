//! OpenAPI 3.0 spec import (JSON or YAML, via `openapiv3`) and request matching.
//!
//! A request matches an operation when its path, after one of the operation's server base
//! paths (`servers[].url`, operation or path-item `servers` first, server variables
//! substituted by their defaults), matches the operation's path template segment by segment
//! (`{param}` matches one non-empty segment; `file.{ext}` matches by prefix and suffix) and
//! the method is the operation's (HEAD also matches GET). Several matches: the one with the
//! most literal segments wins (`/users/me` over `/users/{id}`). Trailing slashes are ignored.

use foldhash::HashMap;
use std::collections::BTreeSet;
use std::fmt;

use openapiv3::{OpenAPI, ReferenceOr, Server, StatusCode};

/// A spec that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenAPI spec: {}", self.0)
    }
}

impl std::error::Error for SpecError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param,
    Pattern(String, String),
}

impl Seg {
    fn parse(s: &str) -> Seg {
        match (s.find('{'), s.rfind('}')) {
            (Some(0), Some(e)) if e == s.len() - 1 && !s[1..].contains('{') => Seg::Param,
            (Some(b), Some(e)) if b < e => Seg::Pattern(s[..b].to_string(), s[e + 1..].to_string()),
            _ => Seg::Lit(s.to_string()),
        }
    }

    fn matches(&self, seg: &str) -> bool {
        match self {
            Seg::Lit(l) => l == seg,
            Seg::Param => !seg.is_empty(),
            Seg::Pattern(p, s) => {
                seg.len() > p.len() + s.len()
                    && seg.starts_with(p.as_str())
                    && seg.ends_with(s.as_str())
            }
        }
    }
}

/// One operation of the spec (per server base path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecOperation {
    /// Method, upper case.
    pub method: String,
    /// Full path template including the server base path (`/v2/users/{id}`).
    pub path: String,
    /// `deprecated: true`.
    pub deprecated: bool,
    segs: Vec<Seg>,
    literals: usize,
    codes: Vec<u16>,
    ranges: Vec<u16>,
    has_default: bool,
}

impl SpecOperation {
    /// `METHOD /path`.
    pub fn display(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether the spec documents `status` for this operation (exact code, `2XX` range,
    /// or `default`).
    pub fn documents(&self, status: u16) -> bool {
        self.has_default || self.codes.contains(&status) || self.ranges.contains(&(status / 100))
    }

    fn matches_path(&self, segs: &[&str]) -> bool {
        self.segs.len() == segs.len() && self.segs.iter().zip(segs).all(|(s, r)| s.matches(r))
    }
}

/// Result of matching a request against the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecMatch<'a> {
    /// The operation.
    Operation(&'a SpecOperation),
    /// The path is documented, but not for this method.
    MethodNotDocumented,
    /// No documented path matches.
    NoPath,
}

/// A superseded API version in a request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// Version in the request (`1` for `/v1/`).
    pub requested: u32,
    /// Newest version the spec documents.
    pub current: u32,
    /// The documented operation the request would reach with the current version.
    pub successor: Option<String>,
}

/// An imported OpenAPI spec, ready for matching.
#[derive(Clone, Debug)]
pub struct ApiSpec {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// What could not be used (`$ref` path items, ...).
    pub warnings: Vec<String>,
    ops: Vec<SpecOperation>,
    by_len: HashMap<usize, Vec<usize>>,
    versions: BTreeSet<u32>,
}

fn version_of(seg: &str) -> Option<u32> {
    let rest = seg.strip_prefix('v').or_else(|| seg.strip_prefix('V'))?;
    if rest.is_empty() || rest.len() > 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn split(path: &str) -> Vec<&str> {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return Vec::new();
    }
    p.strip_prefix('/').unwrap_or(p).split('/').collect()
}

/// The base path of a server URL (variables substituted by their defaults).
fn base_path(server: &Server) -> String {
    let mut url = server.url.clone();
    if let Some(vars) = &server.variables {
        for (name, v) in vars {
            url = url.replace(&format!("{{{name}}}"), &v.default);
        }
    }
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None if url.starts_with("//") => url[2..].find('/').map_or("", |j| &url[2 + j..]),
        None => url.as_str(),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl ApiSpec {
    /// Loads a JSON or YAML spec (JSON when the text starts with `{`).
    pub fn parse(text: &str) -> Result<ApiSpec, SpecError> {
        if text.trim_start().starts_with('{') {
            ApiSpec::from_json(text)
        } else {
            ApiSpec::from_yaml(text)
        }
    }

    /// Loads a JSON spec.
    pub fn from_json(text: &str) -> Result<ApiSpec, SpecError> {
        let api: OpenAPI = serde_json::from_str(text).map_err(|e| SpecError(e.to_string()))?;
        Ok(ApiSpec::from_openapi(&api))
    }

    /// Loads a YAML spec.
    pub fn from_yaml(text: &str) -> Result<ApiSpec, SpecError> {
        let api: OpenAPI = serde_norway::from_str(text).map_err(|e| SpecError(e.to_string()))?;
        Ok(ApiSpec::from_openapi(&api))
    }

    /// Builds the matcher from a parsed document.
    pub fn from_openapi(api: &OpenAPI) -> ApiSpec {
        let mut warnings = Vec::new();
        if !api.openapi.starts_with("3.0") {
            warnings.push(format!("openapi {} is not 3.0.x; read as 3.0", api.openapi));
        }
        let top: Vec<String> = api.servers.iter().map(base_path).collect();
        let mut ops = Vec::new();
        for (path, item) in &api.paths.paths {
            let item = match item {
                ReferenceOr::Item(i) => i,
                ReferenceOr::Reference { reference } => {
                    warnings.push(format!("path {path}: $ref {reference} not followed"));
                    continue;
                }
            };
            let item_bases: Vec<String> = item.servers.iter().map(base_path).collect();
            for (method, op) in item.iter() {
                let mut bases: Vec<String> = if !op.servers.is_empty() {
                    op.servers.iter().map(base_path).collect()
                } else if !item_bases.is_empty() {
                    item_bases.clone()
                } else {
                    top.clone()
                };
                if bases.is_empty() {
                    bases.push(String::new());
                }
                bases.sort();
                bases.dedup();
                let mut codes = Vec::new();
                let mut ranges = Vec::new();
                for code in op.responses.responses.keys() {
                    match code {
                        StatusCode::Code(c) => codes.push(*c),
                        StatusCode::Range(r) => ranges.push(*r),
                    }
                }
                for base in bases {
                    let full =
                        format!("{base}{}", if path.starts_with('/') { "" } else { "/" }) + path;
                    let segs: Vec<Seg> = split(&full).into_iter().map(Seg::parse).collect();
                    let literals = segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
                    ops.push(SpecOperation {
                        method: method.to_ascii_uppercase(),
                        path: if full.is_empty() { "/".into() } else { full },
                        deprecated: op.deprecated,
                        segs,
                        literals,
                        codes: codes.clone(),
                        ranges: ranges.clone(),
                        has_default: op.responses.default.is_some(),
                    });
                }
            }
        }
        let mut by_len: HashMap<usize, Vec<usize>> = HashMap::default();
        let mut versions = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            by_len.entry(op.segs.len()).or_default().push(i);
            for s in &op.segs {
                if let Seg::Lit(l) = s {
                    if let Some(v) = version_of(l) {
                        versions.insert(v);
                    }
                }
            }
        }
        ApiSpec {
            title: api.info.title.clone(),
            version: api.info.version.clone(),
            warnings,
            ops,
            by_len,
            versions,
        }
    }

    /// Operations (one per server base path).
    pub fn operations(&self) -> &[SpecOperation] {
        &self.ops
    }

    /// Matches a request (path without query).
    pub fn match_request(&self, method: &str, path: &str) -> SpecMatch<'_> {
        let segs = split(path);
        let Some(cands) = self.by_len.get(&segs.len()) else {
            return SpecMatch::NoPath;
        };
        let mut path_found = false;
        let mut best: Option<&SpecOperation> = None;
        let mut best_get: Option<&SpecOperation> = None;
        for &i in cands {
            let op = &self.ops[i];
            if !op.matches_path(&segs) {
                continue;
            }
            path_found = true;
            let better = |b: Option<&SpecOperation>| b.is_none_or(|b| op.literals > b.literals);
            if op.method.eq_ignore_ascii_case(method) {
                if better(best) {
                    best = Some(op);
                }
            } else if op.method == "GET" && method.eq_ignore_ascii_case("HEAD") && better(best_get)
            {
                best_get = Some(op);
            }
        }
        match (best.or(best_get), path_found) {
            (Some(op), _) => SpecMatch::Operation(op),
            (None, true) => SpecMatch::MethodNotDocumented,
            (None, false) => SpecMatch::NoPath,
        }
    }

    /// Whether the request path uses a version (`/v1/`) older than the newest the spec
    /// documents and not documented itself.
    pub fn superseded(&self, path: &str) -> Option<Superseded> {
        let current = *self.versions.last()?;
        let segs = split(path);
        let (idx, requested) = segs
            .iter()
            .enumerate()
            .find_map(|(i, s)| version_of(s).map(|v| (i, v)))?;
        if requested >= current || self.versions.contains(&requested) {
            return None;
        }
        let mut replaced: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
        replaced[idx] = format!("v{current}");
        let refs: Vec<&str> = replaced.iter().map(String::as_str).collect();
        let successor = self
            .by_len
            .get(&refs.len())
            .and_then(|c| {
                c.iter()
                    .map(|&i| &self.ops[i])
                    .find(|op| op.matches_path(&refs))
            })
            .map(SpecOperation::display);
        Some(Superseded {
            requested,
            current,
            successor,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const YAML: &str = r#"
openapi: 3.0.3
info: {title: Shop, version: "2.1"}
servers:
  - url: https://{env}.example.com/api/{ver}
    variables:
      env: {default: prod}
      ver: {default: v2}
paths:
  /users/{id}:
    get:
      responses:
        200: {description: ok}
        4XX: {description: client error}
  /users/me:
    get:
      responses:
        "200": {description: ok}
  /users:
    post:
      deprecated: true
      responses:
        default: {description: any}
  /files/{name}.json:
    get:
      responses:
        "200": {description: ok}
  /health:
    get:
      servers: [{url: /}]
      responses:
        "204": {description: ok}
"#;

    #[test]
    fn yaml_and_matching() {
        let spec = ApiSpec::parse(YAML).unwrap();
        assert_eq!(spec.title, "Shop");
        let m = |method: &str, path: &str| match spec.match_request(method, path) {
            SpecMatch::Operation(op) => op.display(),
            SpecMatch::MethodNotDocumented => "method".into(),
            SpecMatch::NoPath => "none".into(),
        };
        assert_eq!(m("GET", "/api/v2/users/7"), "GET /api/v2/users/{id}");
        assert_eq!(m("GET", "/api/v2/users/me"), "GET /api/v2/users/me");
        assert_eq!(m("HEAD", "/api/v2/users/me/"), "GET /api/v2/users/me");
        assert_eq!(m("DELETE", "/api/v2/users/7"), "method");
        assert_eq!(m("GET", "/users/7"), "none");
        assert_eq!(
            m("GET", "/api/v2/files/a.json"),
            "GET /api/v2/files/{name}.json"
        );
        assert_eq!(m("GET", "/api/v2/files/a.xml"), "none");
        assert_eq!(m("GET", "/health"), "GET /health");
        let SpecMatch::Operation(op) = spec.match_request("GET", "/api/v2/users/7") else {
            panic!()
        };
        assert!(op.documents(200) && op.documents(404) && !op.documents(500) && !op.documents(201));
        let SpecMatch::Operation(op) = spec.match_request("POST", "/api/v2/users") else {
            panic!()
        };
        assert!(op.deprecated && op.documents(599));
    }

    #[test]
    fn versions() {
        let spec = ApiSpec::parse(YAML).unwrap();
        let s = spec.superseded("/api/v1/users/7").unwrap();
        assert_eq!((s.requested, s.current), (1, 2));
        assert_eq!(s.successor.as_deref(), Some("GET /api/v2/users/{id}"));
        assert_eq!(spec.superseded("/api/v2/nope"), None);
        assert_eq!(spec.superseded("/api/v3/users"), None);
        assert_eq!(spec.superseded("/other"), None);
    }

    #[test]
    fn json_and_errors() {
        let spec = ApiSpec::parse(
            r#"{"openapi":"3.0.0","info":{"title":"t","version":"1"},"paths":{"/":{"get":{"responses":{"200":{"description":"x"}}}}}}"#,
        )
        .unwrap();
        assert!(matches!(
            spec.match_request("GET", "/"),
            SpecMatch::Operation(_)
        ));
        assert!(ApiSpec::parse("{").is_err());
        assert!(ApiSpec::parse("openapi: [").is_err());
    }

    #[test]
    fn base_paths() {
        let s = |u: &str| {
            base_path(&Server {
                url: u.into(),
                ..Server::default()
            })
        };
        assert_eq!(s("https://api.example.com"), "");
        assert_eq!(s("https://api.example.com/v1/"), "/v1");
        assert_eq!(s("/api"), "/api");
        assert_eq!(s("api"), "/api");
        assert_eq!(s("//cdn.example.com/x"), "/x");
    }
}
