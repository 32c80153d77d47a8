//! Software versions disclosed by servers (`Server: nginx/1.18.0`, `X-Powered-By`).
//! A leaky server shows its banner on every response: the suppression check comes before
//! anything is built.

use super::{Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{Finding, Gate};
use crate::record::TxRecord;
use apitap_core::text::lower_ascii;
use serde_json::json;

/// The version-banner detector.
pub(crate) struct Banners;

impl Detector for Banners {
    fn observe(&mut self, cx: &TxContext<'_>, gate: &mut Gate, out: &mut Vec<Finding>) {
        let rule = Rule::VersionBanner;
        if gate.is_disabled(rule) {
            return;
        }
        let tx = cx.tx;
        let mut server_ip = None;
        for (name, value) in version_banners(tx) {
            let server_id: &str = match tx.host.as_deref() {
                Some(h) => h,
                None => server_ip.get_or_insert_with(|| tx.server.ip().to_string()),
            };
            let value_key = lower_ascii(value);
            if !gate.allowed(rule, &[server_id, name, &value_key], tx.ts_ns) {
                gate.count_suppressed();
                continue;
            }
            let key = format!("{server_id}|{name}|{value_key}");
            let shown: String = value.chars().take(128).collect();
            let mut alert = cx.alert(
                rule,
                format!("{server_id} discloses its software in {name}: {shown}"),
            );
            alert.details.insert("header".into(), json!(name));
            alert.details.insert("banner".into(), json!(shown));
            out.push(Finding::new(alert, key));
        }
    }
}

/// A response header that discloses software and a version: `(header, value)`.
/// `Server` counts when it carries a version number (`nginx/1.18.0`, `Apache/2.4.41`);
/// `X-Powered-By` (`PHP/7.2.1`, `Express`), `X-AspNet-Version`, `X-AspNetMvc-Version`
/// and `X-Generator` count whenever present.
pub(crate) fn version_banners(tx: &TxRecord) -> impl Iterator<Item = (&str, &str)> {
    tx.response_headers.iter().filter_map(|(n, v)| {
        let v = v.trim();
        let leaky = !v.is_empty()
            && match n {
                "server" => has_version(v),
                "x-powered-by" | "x-aspnet-version" | "x-aspnetmvc-version" | "x-generator" => true,
                _ => false,
            };
        leaky.then_some((n, v))
    })
}

/// `name/1.2`, `name 1.2`, `1.2.3`: a digit after `/`, or digit `.` digit.
fn has_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.windows(2).any(|w| w[0] == b'/' && w[1].is_ascii_digit())
        || b.windows(3)
            .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        let tx = TxRecord {
            response_headers: [
                ("server", "nginx/1.18.0"),
                ("x-powered-by", "Express"),
                ("content-type", "text/html"),
            ]
            .into_iter()
            .collect(),
            ..TxRecord::default()
        };
        assert_eq!(
            version_banners(&tx).collect::<Vec<_>>(),
            [("server", "nginx/1.18.0"), ("x-powered-by", "Express")]
        );
        let quiet = TxRecord {
            response_headers: [("server", "nginx")].into_iter().collect(),
            ..TxRecord::default()
        };
        assert_eq!(version_banners(&quiet).count(), 0);
        assert!(has_version("Apache/2.4.41 (Ubuntu)"));
        assert!(has_version("Microsoft-IIS/10.0"));
        assert!(!has_version("cloudflare"));
    }
}
