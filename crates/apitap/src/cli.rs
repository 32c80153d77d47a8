//! `apitap inventory` and `apitap check`: the analytics without an event stream.

use crate::{replay_with_analytics, Config};
use anyhow::{bail, Context, Result};
use apitap_analytics::{rfc3339_micros, sarif, severity_label, Alert, Analytics, EndpointStats};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `apitap inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Capture files, merged in timestamp order.
    #[arg(required_unless_present = "kafka", conflicts_with = "kafka")]
    pub files: Vec<PathBuf>,
    /// The fleet's inventory instead: every event on the events topic of these brokers
    /// (host:port,...; the rest of `[kafka]` applies), read to its end.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Configuration file (templating and inventory bounds come from `[analytics]`).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Also write the inventory as an OpenAPI 3.0 document to this file.
    #[arg(long, value_name = "FILE")]
    pub openapi: Option<PathBuf>,
    /// Print the inventory as JSON (the saved-state format) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Start from this saved inventory and write the result back to it.
    #[arg(long, value_name = "FILE", conflicts_with = "kafka")]
    pub state: Option<PathBuf>,
    /// Only this host in the OpenAPI export.
    #[arg(long)]
    pub host: Option<String>,
}

/// Arguments of `apitap check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The OpenAPI 3 spec (JSON or YAML).
    #[arg(long, value_name = "FILE", required = true)]
    pub spec: PathBuf,
    /// Capture files (.pcap/.pcapng) and HAR files (.har).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Configuration file (`[analytics]` thresholds).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Output: text (default), json or sarif (SARIF 2.1.0).
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub format: String,
    /// Lowest severity that fails the check: low, medium (default), high, critical,
    /// or none (never fail).
    #[arg(long, default_value = "medium", value_name = "SEVERITY")]
    pub fail_on: String,
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let mut cfg = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    cfg.analytics.enabled = true;
    // Every detector runs here, whatever a fleet sensor's config says.
    cfg.analytics.mode = apitap_analytics::AnalyticsMode::Local;
    // No events are written: Kafka stays off whatever the file says.
    cfg.kafka = None;
    cfg.validate()?;
    Ok(cfg)
}

/// Runs `apitap inventory`.
pub fn inventory(args: InventoryArgs) -> Result<ExitCode> {
    let mut cfg = load_config(args.config.as_ref())?;
    if let Some(state) = &args.state {
        cfg.analytics.inventory.state_file = state.display().to_string();
    }
    let (engine, input_error) = match &args.kafka {
        Some(brokers) => {
            // The topics and the client settings come from the file's `[kafka]`.
            cfg.kafka = match &args.config {
                Some(p) => Config::load(p)?.kafka,
                None => None,
            };
            let (engine, input) = crate::analyze::fleet_inventory(&cfg, brokers)?;
            if input.lines > 0 && input.transactions == 0 {
                eprintln!(
                    "apitap: warning: no transaction event among {} messages",
                    input.lines
                );
            }
            (engine, None)
        }
        None => {
            let (summary, outcome) = replay_with_analytics(&args.files, None, &cfg, false, false)?;
            (
                outcome.context("analytics did not run")?.engine,
                summary.input_error,
            )
        }
    };
    let overflow = engine.stats().endpoints_overflow_transactions;
    if overflow > 0 {
        eprintln!(
            "apitap: warning: inventory full (analytics.inventory.max_endpoints = {}): {overflow} transactions of further endpoints not recorded",
            cfg.analytics.inventory.max_endpoints
        );
    }
    if let Some(e) = &input_error {
        eprintln!("apitap: error: input stopped early: {e}");
    }
    if let Some(path) = &args.openapi {
        let doc = engine.openapi(args.host.as_deref());
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&engine.inventory_snapshot())?
        );
    } else {
        print!("{}", inventory_table(&engine.inventory().endpoints()));
        let services = engine.tls_services();
        if !services.is_empty() {
            print!(
                "\nEncrypted services (TLS)\n{}",
                tls_services_table(&services)
            );
        }
    }
    Ok(if input_error.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The inventory as an aligned text table, one endpoint per line; a SENSORS column when
/// the inventory names sensors (a fleet's).
pub fn inventory_table(endpoints: &[EndpointStats]) -> String {
    let rows: Vec<[String; 8]> = endpoints
        .iter()
        .map(|e| {
            let join = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let statuses: Vec<String> = e
                .status_codes
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            [
                if e.host.is_empty() {
                    "-".into()
                } else {
                    e.host.clone()
                },
                format!("{} {}", e.method, e.template),
                e.count.to_string(),
                statuses.join(","),
                join(&e.auth_schemes),
                format!(
                    "{}{}",
                    e.clients.len(),
                    if e.clients_capped { "+" } else { "" }
                ),
                rfc3339_micros(e.last_seen_ns),
                e.sensors.iter().cloned().collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    let header = [
        "HOST",
        "ENDPOINT",
        "COUNT",
        "STATUS",
        "AUTH",
        "CLIENTS",
        "LAST_SEEN",
        "SENSORS",
    ];
    if endpoints.iter().any(|e| !e.sensors.is_empty()) {
        return table(&header, &rows);
    }
    let [h @ .., _] = header;
    let rows: Vec<[String; 7]> = rows
        .into_iter()
        .map(|[a, b, c, d, e, f, g, _]| [a, b, c, d, e, f, g])
        .collect();
    table(&h, &rows)
}

/// The encrypted services (TLS) of the inventory as an aligned text table.
pub fn tls_services_table(services: &[apitap_analytics::TlsService]) -> String {
    let set = |s: &std::collections::BTreeSet<String>| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(",")
        }
    };
    let rows: Vec<[String; 8]> = services
        .iter()
        .map(|s| {
            [
                s.host.clone(),
                s.port.to_string(),
                s.connections.to_string(),
                set(&s.versions),
                set(&s.alpn),
                set(&s.ciphers),
                s.client_fingerprints.len().to_string(),
                rfc3339_micros(s.last_seen_ns),
            ]
        })
        .collect();
    let header = [
        "HOST",
        "PORT",
        "CONNECTIONS",
        "VERSIONS",
        "ALPN",
        "CIPHERS",
        "CLIENT_FINGERPRINTS",
        "LAST_SEEN",
    ];
    table(&header, &rows)
}

/// Rows under a header, columns padded to their widest cell, the last one not padded.
/// Hosts, paths and sensor names come from the wire: characters that could drive a
/// terminal are left out.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| {
            r.clone().map(|c| {
                c.chars()
                    .filter(|&ch| !crate::alerts::hostile(ch))
                    .collect()
            })
        })
        .collect();
    let rows = rows.as_slice();
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// Severity threshold of `--fail-on`: `None` never fails.
fn fail_threshold(label: &str) -> Result<Option<u8>> {
    Ok(match label {
        "low" => Some(1),
        "medium" => Some(40),
        "high" => Some(70),
        "critical" => Some(90),
        "none" => None,
        other => bail!("--fail-on {other:?}: use low, medium, high, critical or none"),
    })
}

/// Runs `apitap check`. Exit 0: nothing at or above the threshold; 1: findings that fail
/// the gate; 2 (via `Err`): the check could not run.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let threshold = fail_threshold(&args.fail_on)?;
    if !matches!(args.format.as_str(), "text" | "json" | "sarif") {
        bail!("--format {:?}: use text, json or sarif", args.format);
    }
    let mut cfg = load_config(args.config.as_ref())?;
    cfg.analytics.spec.path = args.spec.display().to_string();
    // A check never touches a live sensor's saved inventory.
    cfg.analytics.inventory.state_file.clear();
    let (hars, pcaps): (Vec<PathBuf>, Vec<PathBuf>) =
        args.files.into_iter().partition(|p| crate::har::is_har(p));

    let mut findings: Vec<Alert> = Vec::new();
    let mut transactions = 0u64;
    if !pcaps.is_empty() {
        let (summary, outcome) = replay_with_analytics(&pcaps, None, &cfg, false, true)?;
        if let Some(e) = summary.input_error {
            bail!("input stopped early: {e}");
        }
        let outcome = outcome.context("analytics did not run")?;
        transactions += outcome.engine.stats().transactions;
        findings.extend(outcome.alerts);
    }
    if !hars.is_empty() {
        let mut engine: Analytics = crate::analysis::configured_engine(&cfg)?;
        let mut records = Vec::new();
        for path in &hars {
            records.extend(crate::har::read(path)?);
        }
        records.sort_by_key(|r| r.ts_ns);
        for r in &records {
            engine.process_into(r, &mut findings);
        }
        findings.extend(engine.finish());
        transactions += engine.stats().transactions;
    }

    let failing = findings
        .iter()
        .filter(|a| threshold.is_some_and(|t| a.severity >= t))
        .count();
    match args.format.as_str() {
        "sarif" => println!(
            "{}",
            serde_json::to_string_pretty(&sarif(&findings, env!("CARGO_PKG_VERSION")))?
        ),
        "json" => {
            let list: Vec<serde_json::Value> = findings.iter().map(Alert::to_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "transactions": transactions,
                    "findings": list,
                    "failing": failing,
                    "fail_on": args.fail_on,
                    "passed": failing == 0,
                }))?
            );
        }
        _ => print!(
            "{}",
            check_text(&findings, transactions, failing, &args.fail_on)
        ),
    }
    Ok(if failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The human report of `apitap check`.
pub fn check_text(findings: &[Alert], transactions: u64, failing: usize, fail_on: &str) -> String {
    let mut out = String::new();
    for a in findings {
        let where_ = match (&a.host, &a.endpoint) {
            (Some(h), Some(e)) => format!("{h} {e}"),
            (None, Some(e)) => e.clone(),
            (Some(h), None) => h.clone(),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<22} {where_}\n         {}\n         evidence: {}",
            severity_label(a.severity).to_uppercase(),
            a.rule.id(),
            a.message,
            a.evidence.join(" ")
        );
    }
    let mut by_label = std::collections::BTreeMap::new();
    for a in findings {
        *by_label.entry(severity_label(a.severity)).or_insert(0u64) += 1;
    }
    let counts: Vec<String> = ["critical", "high", "medium", "low"]
        .iter()
        .filter_map(|l| by_label.get(l).map(|n| format!("{n} {l}")))
        .collect();
    let _ = writeln!(
        out,
        "apitap check: {transactions} transactions, {} findings{}; {}",
        findings.len(),
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        },
        if failing > 0 {
            format!("FAILED: {failing} at or above --fail-on {fail_on}")
        } else {
            format!("passed (--fail-on {fail_on})")
        }
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apitap_analytics::{Analytics, AnalyticsConfig, TxRecord};

    fn inventory(sensor: Option<&str>) -> Vec<EndpointStats> {
        let mut engine = Analytics::new(AnalyticsConfig::default()).unwrap();
        let tx = TxRecord {
            host: Some("a\u{1b}[2Jb\u{202e}.example".into()),
            method: "GET".into(),
            path: "/x".into(),
            status: Some(200),
            sensor: sensor.map(String::from),
            ..TxRecord::default()
        };
        engine.process_into(&tx, &mut Vec::new());
        engine.inventory().endpoints()
    }

    #[test]
    fn the_inventory_table_names_sensors_only_for_a_fleet_and_drops_terminal_controls() {
        let local = inventory_table(&inventory(None));
        assert!(!local.contains("SENSORS"), "{local}");
        assert!(local.contains("a[2Jb.example"), "{local}");
        assert!(!local.contains('\u{1b}') && !local.contains('\u{202e}'));
        let fleet = inventory_table(&inventory(Some("edge-\u{7}1")));
        let header = fleet.lines().next().unwrap();
        assert!(header.ends_with(" SENSORS"), "{header}");
        assert!(fleet.lines().nth(1).unwrap().ends_with("edge-1"), "{fleet}");
    }
}
