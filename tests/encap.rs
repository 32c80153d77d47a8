//! Encapsulated and fragmented captures give the events of the plain capture, field by
//! field, plus the VLAN and tunnel they came in; for 1 and 3 workers. Most are built from
//! real captures by scripts/make-encap-fixtures.py; the `-kernel` ones are the Linux VXLAN
//! driver's own packets (scripts/make-vxlan-fixtures.sh), compared with the same
//! conversation captured inside the tunnel (so only packet times differ).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;

const PYHTTP: &str = "fixtures/pyhttp/pyhttp.pcap";
const NGINX6: &str = "fixtures/nginx/nginx-ipv6.pcap";
const TEREDO_PLAIN: &str = "fixtures/encap/teredo-plain.pcap";

struct Case {
    file: &'static str,
    plain: &'static str,
    vlan: Option<&'static str>,
    tunnel: Option<Value>,
    /// One output frame per input frame (no IP fragments): packet counts are unchanged.
    same_indices: bool,
    /// The plain capture was taken at another point (inside the tunnel): packet times
    /// differ, nothing else.
    other_clock: bool,
    /// `[decode]` settings (TOML) the capture needs.
    decode: &'static str,
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
        other_clock: false,
        decode: "",
    };
    let kernel = |file, plain, tunnel, decode| Case {
        file,
        plain,
        vlan: None,
        tunnel,
        same_indices: true,
        other_clock: true,
        decode,
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
        c("gre-udp.pcap", PYHTTP, None, t("gre_udp", Some(77)), true),
        c("erspan1.pcap", PYHTTP, None, t("erspan_i", None), true),
        c(
            "erspan2-vlan.pcap",
            PYHTTP,
            Some("42"),
            t("erspan_ii", Some(101)),
            true,
        ),
        c(
            "erspan3-ip.pcap",
            PYHTTP,
            Some("43"),
            t("erspan_iii", Some(201)),
            true,
        ),
        c(
            "gtpu.pcap",
            PYHTTP,
            None,
            t("gtpu", Some(0x1234_abcd)),
            true,
        ),
        c(
            "gtpu-ipv6.pcap",
            NGINX6,
            None,
            t("gtpu", Some(0x00c0_ffee)),
            true,
        ),
        c(
            "vxlan-gpe-ipv6.pcap",
            NGINX6,
            None,
            t("vxlan_gpe", Some(77)),
            true,
        ),
        c(
            "vxlan-gpe-eth.pcap",
            PYHTTP,
            None,
            t("vxlan_gpe", Some(78)),
            true,
        ),
        c("teredo.pcap", TEREDO_PLAIN, None, t("teredo", None), true),
        c(
            "teredo-relay.pcap",
            TEREDO_PLAIN,
            None,
            t("teredo", None),
            true,
        ),
        c("nflog.pcap", PYHTTP, None, None, true),
        c("nflog-be-ipv6.pcap", NGINX6, None, None, true),
        c("chdlc.pcap", PYHTTP, None, None, true),
        kernel(
            "vxlan-gpe-kernel.pcap",
            "fixtures/encap/vxlan-gpe-kernel.inner.pcap",
            t("vxlan_gpe", Some(42)),
            "",
        ),
        kernel(
            "vxlan-8472-kernel.pcap",
            "fixtures/encap/vxlan-8472-kernel.inner.pcap",
            t("vxlan", Some(4242)),
            "vxlan_ports = [4789, 8472]",
        ),
    ]
}

/// The config of a case: its `[decode]` settings, `workers` workers.
fn config(decode: &str, workers: usize) -> apitap::config::Config {
    let text = format!("[decode]\n{decode}\n[pipeline]\nworkers = {workers}\n");
    let path = std::env::temp_dir().join(format!(
        "apitap-encap-{}-{workers}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let cfg = apitap::config::Config::load(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    cfg
}

/// Removes what depends on when packets were captured: times, durations, alert windows
/// and the alert ids made from them.
fn strip_packet_times(lines: &mut [Value]) {
    for v in lines {
        let Some(m) = v.as_object_mut() else { continue };
        m.remove("@timestamp");
        let alert = m["event"]["kind"] == "alert";
        if let Some(e) = m.get_mut("event").and_then(Value::as_object_mut) {
            e.remove("duration");
            if alert {
                e.remove("id");
            }
        }
        if let Some(a) = m.get_mut("apitap").and_then(Value::as_object_mut) {
            a.remove("window");
        }
    }
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

#[test]
fn encapsulated_captures_give_the_plain_events_plus_vlan_and_tunnel() {
    let mut failures = Vec::new();
    for case in cases() {
        let plain_path = root().join(case.plain);
        let (plain_out, _) =
            run_replay_with(std::slice::from_ref(&plain_path), &config(case.decode, 1));
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
            let (out, summary) =
                run_replay_with(std::slice::from_ref(&path), &config(case.decode, workers));
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
            if case.other_clock {
                strip_packet_times(&mut got);
                strip_packet_times(&mut expected);
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

/// `src` with every frame cut to its first `keep` bytes (both lengths say so), as a
/// little-endian microsecond pcap.
fn cut_frames(src: &std::path::Path, keep: usize, dst: &std::path::Path) {
    let data = std::fs::read(src).unwrap();
    assert_eq!(&data[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "{}", src.display());
    let mut out = data[..24].to_vec();
    let mut pos = 24;
    while pos + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let frame = &data[pos + 16..pos + 16 + incl];
        let kept = &frame[..keep.min(frame.len())];
        out.extend_from_slice(&data[pos..pos + 8]);
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        out.extend_from_slice(kept);
        pos += 16 + incl;
    }
    std::fs::write(dst, out).unwrap();
}

/// Tunnel headers the capture cut short are counted under their reason and, in the summary
/// and the metrics, by tunnel kind.
#[test]
fn cut_tunnel_headers_are_counted_by_kind() {
    let dir = std::env::temp_dir().join(format!("apitap-encap-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Ethernet (14) + IPv4 (20) + UDP (8) + 6 bytes of the GTP-U / VXLAN-GPE header;
    // Ethernet + IPv4 + GRE with a sequence number (8) + 5 bytes of the ERSPAN III header.
    for (file, keep, kind) in [
        ("gtpu.pcap", 48, "gtpu"),
        ("vxlan-gpe-eth.pcap", 48, "vxlan_gpe"),
        ("erspan3-ip.pcap", 14 + 20 + 8 + 5, "erspan_iii"),
    ] {
        let cut = dir.join(file);
        cut_frames(&root().join("fixtures/encap").join(file), keep, &cut);
        let (out, summary) = run_replay(std::slice::from_ref(&cut), 1);
        assert!(parse_lines(&out).is_empty(), "{file}");
        let d = &summary.decode;
        let truncated = d.skipped.get(apitap_wire::Skip::TunnelTruncated);
        assert_eq!(truncated, d.packets, "{file}: {d:?}");
        let json = summary.to_json();
        assert_eq!(json["input"]["tunnel_truncated"][kind], truncated, "{file}");
        assert_eq!(json["input"]["tunnel_malformed"][kind], 0, "{file}");
        let text = summary.to_text();
        assert!(
            text.contains(&format!("tunnel_truncated.{kind}={truncated}")),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The requests tshark's dissectors find in a capture (client port, method, target), with
/// extra tshark options.
fn tshark_requests(pcap: &std::path::Path, options: &[&str]) -> Vec<(String, String, String)> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(options)
        .args(["-Y", "http.request", "-T", "fields"])
        .args(["-e", "tcp.srcport", "-e", "http.request.method"])
        .args(["-e", "http.request.uri"])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string(), c[2].to_string())
        })
        .collect();
    rows.sort();
    rows
}

/// tshark, decoding the same tunnels and link types with its own dissectors, sees the
/// requests apitap reports (client port, method, target).
#[test]
fn tshark_sees_the_same_requests_inside_the_tunnels() {
    let teredo_heuristic = ["-o", "teredo.heuristic_teredo:TRUE"];
    let cases: [(&str, &[&str], &str); 13] = [
        ("gre-udp.pcap", &[], ""),
        ("erspan1.pcap", &[], ""),
        ("erspan2-vlan.pcap", &[], ""),
        ("gtpu.pcap", &[], ""),
        ("gtpu-ipv6.pcap", &[], ""),
        ("vxlan-gpe-ipv6.pcap", &[], ""),
        ("vxlan-gpe-eth.pcap", &[], ""),
        ("teredo.pcap", &[], ""),
        ("teredo-relay.pcap", &teredo_heuristic, ""),
        ("nflog.pcap", &[], ""),
        ("chdlc.pcap", &[], ""),
        ("vxlan-gpe-kernel.pcap", &[], ""),
        (
            "vxlan-8472-kernel.pcap",
            &["-d", "udp.port==8472,vxlan"],
            "vxlan_ports = [4789, 8472]",
        ),
    ];
    for (file, options, decode) in cases {
        let path = root().join("fixtures/encap").join(file);
        let theirs = tshark_requests(&path, options);
        assert!(theirs.len() >= 3, "{file}: tshark found {theirs:?}");
        let (out, _) = run_replay_with(std::slice::from_ref(&path), &config(decode, 1));
        let mut ours: Vec<_> = parse_lines(&out)
            .iter()
            .map(|e| {
                (
                    e["source"]["port"].to_string(),
                    e["http"]["request"]["method"].as_str().unwrap().to_string(),
                    e["url"]["original"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        ours.sort();
        assert_eq!(ours, theirs, "{file}");
    }
}
