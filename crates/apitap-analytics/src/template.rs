//! Path templating: `/users/123/orders/5f0c...` -> `/users/{id}/orders/{hex}`.
//!
//! Two stages:
//! 1. Shape rules per segment ([`classify_segment`], in apitap-core, the same rules every
//!    event's `apitap.endpoint` uses): integers `{id}`, UUIDs `{uuid}`, hex strings of 8+
//!    chars with a digit (or 16+ chars) `{hex}`, long mixed base64/base64url tokens
//!    `{token}`, dates `2024-01-31` `{date}`, emails `{email}`. With
//!    `typed_placeholders = false` every one of them is `{id}`.
//! 2. Learned variable segments: per (host, method, parent template, position) the distinct
//!    literal values are counted (as 64-bit hashes); once a position has seen more than
//!    `variable_after_distinct` values it becomes `{param}` for every later path, and
//!    [`Templater::apply_learned`] folds templates recorded before that into it.
//!    Only transactions that were answered (status present, not 404) teach, and only at
//!    positions >= `learn_min_depth`.

use foldhash::{HashMap, HashSet};

use hashlink::LruCache;
use serde::{Deserialize, Serialize};

use crate::config::TemplatingConfig;
pub use apitap_core::endpoint::{classify_segment, Placeholder};
use apitap_core::text::split_ascii;
use apitap_core::{stable_hash, StableHasher};

/// A variable segment position learned from traffic: the segment after `parent` (a
/// template) is `{param}` for `method` on `host`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedVariable {
    /// Host (empty when requests had no Host header).
    pub host: String,
    /// Method.
    pub method: String,
    /// Parent template (`/users`; empty for the first segment).
    pub parent: String,
}

/// A templated path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templated {
    /// The template (`/users/{id}`).
    pub template: String,
    /// Hash of the literal values behind the object-like placeholders (everything but
    /// `{date}`), `None` when there are none: one value per distinct object.
    pub object_key: Option<u64>,
    /// A learned `{param}` is in the template: it differs from the shape template of the
    /// path alone ([`apitap_core::endpoint::shape_template`]).
    pub learned: bool,
}

/// Counters of the templater.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplaterCounters {
    /// Positions forgotten while learning because `max_learned_positions` was reached.
    pub positions_evicted: u64,
    /// Promotions not recorded because `max_learned_positions` variables exist.
    pub variables_overflow: u64,
}

/// Templates paths and learns variable segments. Bounded by `max_learned_positions`.
#[derive(Debug)]
pub struct Templater {
    typed: bool,
    after: usize,
    min_depth: usize,
    max: usize,
    learning: LruCache<u64, HashSet<u64>>,
    variables: HashMap<u64, LearnedVariable>,
    /// Counters.
    pub counters: TemplaterCounters,
}

impl Templater {
    /// A templater with no learned state.
    pub fn new(cfg: &TemplatingConfig) -> Templater {
        Templater {
            typed: cfg.typed_placeholders,
            after: cfg.variable_after_distinct,
            min_depth: cfg.learn_min_depth,
            max: cfg.max_learned_positions,
            learning: LruCache::new_unbounded(),
            variables: HashMap::default(),
            counters: TemplaterCounters::default(),
        }
    }

    fn key(host: &str, method: &str, parent: &str) -> u64 {
        stable_hash(&[host.as_bytes(), method.as_bytes(), parent.as_bytes()])
    }

    /// Templates `path`; with `learn`, counts literal segment values (and may promote a
    /// position to `{param}`).
    pub fn template(&mut self, host: &str, method: &str, path: &str, learn: bool) -> Templated {
        if !path.starts_with('/') {
            return Templated {
                template: path.to_string(),
                object_key: None,
                learned: false,
            };
        }
        let mut out = String::with_capacity(path.len() + 8);
        let mut obj: Option<u64> = None;
        let mut add_obj = |seg: &str| {
            let prev = obj.unwrap_or(0);
            obj = Some(stable_hash(&[&prev.to_le_bytes(), seg.as_bytes()]));
        };
        // Hash of (host, method, the template so far), extended as `out` grows: the key
        // of the position a literal segment is at, without hashing the prefix again.
        let mut prefix = StableHasher::new();
        prefix.part(host.as_bytes());
        prefix.part(method.as_bytes());
        let mut hashed = 0;
        let mut learned = false;
        for (depth, seg) in split_ascii(&path[1..], b'/').enumerate() {
            prefix.bytes(&out.as_bytes()[hashed..]);
            hashed = out.len();
            if let Some(ph) = classify_segment(seg) {
                out.push('/');
                out.push_str(ph.text(self.typed));
                if ph != Placeholder::Date {
                    add_obj(seg);
                }
                continue;
            }
            if seg.is_empty() {
                out.push('/');
                continue;
            }
            let key = {
                let mut k = prefix;
                k.end_part();
                k.finish()
            };
            debug_assert_eq!(key, Templater::key(host, method, &out));
            if self.variables.contains_key(&key)
                || (learn && depth >= self.min_depth && self.learn(key, seg, host, method, &out))
            {
                out.push_str("/{param}");
                add_obj(seg);
                learned = true;
                continue;
            }
            out.push('/');
            out.push_str(seg);
        }
        Templated {
            template: out,
            object_key: obj,
            learned,
        }
    }

    /// Counts `seg` at the position `key`; true when this made the position variable.
    fn learn(&mut self, key: u64, seg: &str, host: &str, method: &str, parent: &str) -> bool {
        let value = stable_hash(&[seg.as_bytes()]);
        let full = match self.learning.get_mut(&key) {
            Some(set) => {
                set.insert(value);
                set.len() > self.after
            }
            None => {
                if self.learning.len() >= self.max && self.learning.remove_lru().is_some() {
                    self.counters.positions_evicted += 1;
                }
                let mut set = HashSet::default();
                set.insert(value);
                let full = set.len() > self.after;
                self.learning.insert(key, set);
                full
            }
        };
        if !full {
            return false;
        }
        self.learning.remove(&key);
        if self.variables.len() >= self.max {
            self.counters.variables_overflow += 1;
            return false;
        }
        self.variables.insert(
            key,
            LearnedVariable {
                host: host.to_string(),
                method: method.to_string(),
                parent: parent.to_string(),
            },
        );
        true
    }

    /// Re-templates a template recorded earlier with the variables learned since
    /// (literal segments at variable positions become `{param}`).
    pub fn apply_learned(&self, host: &str, method: &str, template: &str) -> String {
        if self.variables.is_empty() || !template.starts_with('/') {
            return template.to_string();
        }
        let mut out = String::with_capacity(template.len());
        for seg in template[1..].split('/') {
            let is_placeholder = seg.starts_with('{') && seg.ends_with('}');
            if !is_placeholder
                && !seg.is_empty()
                && self
                    .variables
                    .contains_key(&Templater::key(host, method, &out))
            {
                out.push_str("/{param}");
            } else {
                out.push('/');
                out.push_str(seg);
            }
        }
        out
    }

    /// Learned variables, sorted.
    pub fn learned(&self) -> Vec<LearnedVariable> {
        let mut v: Vec<LearnedVariable> = self.variables.values().cloned().collect();
        v.sort();
        v
    }

    /// Restores learned variables (from a saved inventory); beyond the bound they are
    /// counted as overflow.
    pub fn restore(&mut self, vars: &[LearnedVariable]) {
        for v in vars {
            let key = Templater::key(&v.host, &v.method, &v.parent);
            if self.variables.len() >= self.max && !self.variables.contains_key(&key) {
                self.counters.variables_overflow += 1;
                continue;
            }
            self.variables.insert(key, v.clone());
        }
    }

    /// Number of positions being learned and of learned variables.
    pub fn sizes(&self) -> (usize, usize) {
        (self.learning.len(), self.variables.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_learning_a_template_is_the_shape_template() {
        // Events of a run without analytics carry core's shape template: the templater
        // must not add rules of its own.
        for path in [
            "/users/123/orders",
            "/o/123e4567-e89b-12d3-a456-426614174000",
            "/blob/9f86d081",
            "/words/deadbeef",
            "/r/2024-01-31",
            "/u/alice%40example.com",
            "/t/aGVsbG8gd29ybGQhIQ1Xy",
            "/posts/my-first-blog-post-2024",
            "/a//b/",
            "/",
            "*",
        ] {
            for typed in [true, false] {
                let cfg = TemplatingConfig {
                    typed_placeholders: typed,
                    ..TemplatingConfig::default()
                };
                let mut tp = Templater::new(&cfg);
                assert_eq!(
                    tp.template("h", "GET", path, true).template,
                    apitap_core::endpoint::shape_template(path, typed),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn untyped() {
        let cfg = TemplatingConfig {
            typed_placeholders: false,
            ..TemplatingConfig::default()
        };
        let mut tp = Templater::new(&cfg);
        assert_eq!(
            tp.template("h", "GET", "/a/2024-01-31/b/9f86d081", true)
                .template,
            "/a/{id}/b/{id}"
        );
    }

    #[test]
    fn object_key_distinguishes_ids() {
        let mut tp = Templater::new(&TemplatingConfig::default());
        let a = tp.template("h", "GET", "/users/1", true);
        let b = tp.template("h", "GET", "/users/2", true);
        let c = tp.template("h", "GET", "/users", true);
        assert_ne!(a.object_key, b.object_key);
        assert!(a.object_key.is_some());
        assert_eq!(c.object_key, None);
        assert_eq!(
            tp.template("h", "GET", "/r/2024-01-31", true).object_key,
            None
        );
    }

    #[test]
    fn learns_variable_segments() {
        let mut tp = Templater::new(&TemplatingConfig::default());
        // Fixed paths stay distinct.
        for p in ["/users/me", "/users/search", "/health"] {
            assert_eq!(tp.template("h", "GET", p, true).template, p);
        }
        // 60 distinct slugs: after 50 the position becomes {param}.
        let mut last = String::new();
        for i in 0..60 {
            let letter = (b'a' + (i % 26) as u8) as char;
            last = tp
                .template("h", "GET", &format!("/files/name-{letter}{i}/meta"), true)
                .template;
        }
        assert_eq!(last, "/files/{param}/meta");
        // Earlier literal templates fold into it.
        assert_eq!(
            tp.apply_learned("h", "GET", "/files/name-a0/meta"),
            "/files/{param}/meta"
        );
        // Other hosts / methods / parents are not affected.
        assert_eq!(
            tp.template("other", "GET", "/files/x/meta", true).template,
            "/files/x/meta"
        );
        assert_eq!(
            tp.template("h", "POST", "/files/x/meta", true).template,
            "/files/x/meta"
        );
        assert_eq!(
            tp.template("h", "GET", "/users/me", true).template,
            "/users/me"
        );
        // The first segment never becomes a variable (learn_min_depth = 1).
        for i in 0..100 {
            tp.template("h", "GET", &format!("/root-{i}"), true);
        }
        assert_eq!(tp.template("h", "GET", "/root-x", true).template, "/root-x");
        assert_eq!(tp.learned().len(), 1);
    }

    #[test]
    fn learning_is_bounded() {
        let cfg = TemplatingConfig {
            max_learned_positions: 4,
            ..TemplatingConfig::default()
        };
        let mut tp = Templater::new(&cfg);
        for i in 0..10 {
            tp.template("h", "GET", &format!("/p{i}/x"), true);
        }
        assert_eq!(tp.sizes().0, 4);
        assert_eq!(tp.counters.positions_evicted, 6);
    }
}
