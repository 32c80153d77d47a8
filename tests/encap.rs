//! Encapsulated and fragmented captures (fixtures/encap/, built from real captures by
//! scripts/make-encap-fixtures.py) give the events of the plain capture, field by field,
//! plus the VLAN and tunnel they came in; for 1 and 3 workers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

const PYHTTP: &str = "fixtures/pyhttp/pyhttp.pcap";
const NGINX6: &str = "fixtures/nginx/nginx-ipv6.pcap";

struct Case {
    file: &'static str,
    plain: &'static str,
    vlan: Option<&'static str>,
    tunnel: Option<Value>,
    /// One output frame per input frame: packet indices, hence flow ids, are unchanged.
    same_indices: bool,
}

fn cases() -> Vec<Case> {
    let t = |kind: &str, id: Option<u32>| {
        Some(match id {
            Some(id) => json!({"type": kind, "id": id}),
            None => json!({"type": kind}),
        })
    };
    let c = |file, plain, vlan, tunnel, same_indices| Case {
        file,
        plain,
        vlan,
        tunnel,
        same_indices,
    };
    vec![
        c("gre.pcap", PYHTTP, None, t("gre", Some(1234)), true),
        c("gre-teb.pcap", PYHTTP, None, t("gre", None), true),
        c(
            "erspan2.pcap",
            PYHTTP,
            None,
            t("erspan_ii", Some(100)),
            true,
        ),
        c(
            "erspan3.pcap",
            PYHTTP,
            None,
            t("erspan_iii", Some(200)),
            true,
        ),
        c("vxlan.pcap", PYHTTP, None, t("vxlan", Some(1234)), true),
        c("geneve.pcap", PYHTTP, None, t("geneve", Some(5678)), true),
        c("ipip.pcap", PYHTTP, None, t("ipip", None), true),
        c("ip6in4.pcap", NGINX6, None, t("ip6ip", None), true),
        c(
            "vlan-vxlan.pcap",
            PYHTTP,
            Some("100"),
            t("vxlan", Some(4321)),
            true,
        ),
        c("wlan.pcap", PYHTTP, None, None, true),
        c("wlan-radiotap.pcap", PYHTTP, None, None, true),
        c("frag4.pcap", PYHTTP, None, None, false),
        c("frag4-reversed.pcap", PYHTTP, None, None, false),
        c("frag4-tiny.pcap", PYHTTP, None, None, false),
        c("frag6.pcap", NGINX6, None, None, false),
        c("frag6-reversed.pcap", NGINX6, None, None, false),
    ]
}

/// Removes `observer.ingress` (and `observer` when nothing is left) and `apitap.tunnel`,
/// returning what they held.
fn take_encap(ev: &mut Value) -> (Option<Value>, Option<Value>) {
    let mut vlan = None;
    if let Some(obs) = ev.get_mut("observer").and_then(Value::as_object_mut) {
        vlan = obs.remove("ingress").map(|i| i["vlan"]["id"].clone());
        if obs.is_empty() {
            ev.as_object_mut().unwrap().remove("observer");
        }
    }
    let tunnel = ev
        .get_mut("apitap")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove("tunnel"));
    (vlan, tunnel)
}

/// Replaces every flow id (`F` + 16 hex digits) in string values by its order of first
/// appearance, so outputs whose packet indices differ compare equal.
fn normalise_flow_ids(lines: &mut [Value]) {
    fn walk(v: &mut Value, ids: &mut HashMap<String, usize>) {
        match v {
            Value::String(s) => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(pos) = rest.find('F') {
                    let (before, from) = rest.split_at(pos);
                    out.push_str(before);
                    let cand = from.get(..17).filter(|c| {
                        c[1..]
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    });
                    match cand {
                        Some(id) => {
                            let n = ids.len();
                            let n = *ids.entry(id.to_string()).or_insert(n);
                            out.push_str(&format!("FLOW{n}"));
                            rest = &from[17..];
                        }
                        None => {
                            out.push('F');
                            rest = &from[1..];
                        }
                    }
                }
                out.push_str(rest);
                *s = out;
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, ids)),
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, ids)),
            _ => {}
        }
    }
    let mut ids = HashMap::new();
    for l in lines {
        walk(l, &mut ids);
    }
}

#[test]
fn encapsulated_captures_give_the_plain_events_plus_vlan_and_tunnel() {
    let mut failures = Vec::new();
    for case in cases() {
        let plain_path = root().join(case.plain);
        let (plain_out, _) = run_replay(std::slice::from_ref(&plain_path), 1);
        let mut plain = parse_all(&plain_out);
        assert!(
            plain
                .iter()
                .filter(|v| v["event"]["kind"] == "event")
                .count()
                >= 4
        );
        let path: PathBuf = root().join("fixtures/encap").join(case.file);
        for workers in [1, 3] {
            let (out, summary) = run_replay(std::slice::from_ref(&path), workers);
            let mut got = parse_all(&out);
            let name = format!("{} ({workers} workers)", case.file);
            // Every frame decoded: tunnels to TCP, fragments held or reassembled.
            let d = &summary.decode;
            let other_drops: u64 = d
                .drops()
                .filter(|(n, _)| *n != "ip_fragment")
                .map(|(_, n)| n)
                .sum();
            assert_eq!(other_drops, 0, "{name}: {d:?}");
            if case.same_indices {
                assert_eq!(d.tcp, d.packets, "{name}");
            } else {
                let f = &d.defrag;
                assert!(f.reassembled > 0, "{name}: {f:?}");
                assert_eq!(
                    f.fragments,
                    d.skipped.get(apitap_wire::Skip::IpFragment) + f.reassembled,
                    "{name}: {f:?}"
                );
                assert_eq!(
                    (f.timed_out, f.evicted, f.overlaps, f.bad_fragments),
                    (0, 0, 0, 0),
                    "{name}"
                );
                assert_eq!(
                    (f.too_many_fragments, f.too_big, f.fragments_dropped),
                    (0, 0, 0),
                    "{name}"
                );
            }
            if got.len() != plain.len() {
                failures.push(format!(
                    "{name}: {} lines, plain {}",
                    got.len(),
                    plain.len()
                ));
                continue;
            }
            for ev in got.iter_mut() {
                if ev["event"]["kind"] != "event" {
                    continue;
                }
                let (vlan, tunnel) = take_encap(ev);
                assert_eq!(vlan, case.vlan.map(|v| json!(v)), "{name}: vlan");
                assert_eq!(tunnel, case.tunnel, "{name}: tunnel");
            }
            let mut expected = plain.clone();
            if !case.same_indices {
                normalise_flow_ids(&mut got);
                normalise_flow_ids(&mut expected);
            }
            for (i, (a, e)) in got.iter().zip(&expected).enumerate() {
                let mut d = Vec::new();
                diff(a, e, "", &mut d);
                if !d.is_empty() {
                    failures.push(format!("{name} line {i}: {}", d.join("; ")));
                    break;
                }
            }
        }
        plain.clear();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With reassembly off, fragmented captures lose the fragmented packets (counted).
#[test]
fn defrag_off_counts_fragments() {
    let mut cfg = apitap::config::Config::default();
    cfg.defrag.enabled = false;
    cfg.pipeline.workers = 1;
    let (_, summary) = run_replay_with(&[root().join("fixtures/encap/frag4.pcap")], &cfg);
    assert_eq!(summary.decode.defrag.fragments, 0);
    assert!(summary.decode.skipped.get(apitap_wire::Skip::IpFragment) > 50);
    let json = summary.to_json();
    assert!(json["input"]["skipped"]["ip_fragment"].as_u64().unwrap() > 50);
    assert_eq!(json["input"]["defrag"]["reassembled"], 0);
}

/// The summary reports the reassembly counters.
#[test]
fn summary_reports_defrag_counters() {
    let (_, summary) = run_replay(&[root().join("fixtures/encap/frag6-reversed.pcap")], 2);
    let json = summary.to_json();
    let d = &json["input"]["defrag"];
    assert!(d["reassembled"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["fragments"], summary.decode.defrag.fragments);
    let text = summary.to_text();
    assert!(text.contains("defrag.reassembled="), "{text}");
}
