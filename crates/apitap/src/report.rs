//! `apitap report`: one self-contained HTML file (no external assets; works offline) for an
//! incident responder or an API owner: summary counts, alerts by severity with their
//! evidence events, the endpoint inventory (sortable) with its spec coverage, and charts of
//! requests, errors and latency over time per endpoint (inline SVG).
//!
//! Captures are replayed with the analytics on, their events written to a private
//! temporary file and read back once; HAR files go straight to the analytics. Everything
//! taken from traffic is HTML-escaped.

use crate::analysis::{configured_engine, load_spec};
use crate::{replay_with_analytics, Config, Output};
use anyhow::{bail, Context, Result};
use apitap_analytics::{rfc3339_micros, Alert, ApiSpec, EndpointStats};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `apitap report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Capture files (.pcap/.pcapng) and HAR files (.har).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// OpenAPI 3 spec (JSON or YAML): spec coverage, shadow and zombie endpoints.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Configuration file (`[analytics]` thresholds, templating).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Endpoints charted, the busiest first.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub max_charts: usize,
}

/// Time buckets per chart.
const BUCKETS: usize = 48;
/// Evidence events shown per alert.
const EVIDENCE_SHOWN: usize = 20;

/// One transaction, as the report needs it.
#[derive(Clone, Debug, Default)]
struct Tx {
    id: String,
    ts_ns: i64,
    host: String,
    endpoint: String,
    client: String,
    target: String,
    status: Option<u16>,
    duration_ns: Option<u64>,
}

/// Requests, errors and latency of one endpoint over the report's time range.
#[derive(Clone, Debug)]
struct Series {
    requests: [u64; BUCKETS],
    errors: [u64; BUCKETS],
    latency_sum_ns: [u64; BUCKETS],
    latency_n: [u64; BUCKETS],
}

impl Default for Series {
    fn default() -> Self {
        Series {
            requests: [0; BUCKETS],
            errors: [0; BUCKETS],
            latency_sum_ns: [0; BUCKETS],
            latency_n: [0; BUCKETS],
        }
    }
}

/// What the report collects from the transactions.
struct Collected {
    start_ns: i64,
    bucket_ns: i64,
    series: BTreeMap<(String, String), Series>,
    /// Series kept at most (host names come from traffic: a bound, like the inventory's).
    max_series: usize,
    /// Transactions of endpoints beyond `max_series`, not charted.
    uncharted: u64,
    evidence_wanted: BTreeSet<String>,
    evidence: HashMap<String, Tx>,
}

impl Collected {
    fn new(start_ns: i64, end_ns: i64, alerts: &[Alert], max_series: usize) -> Collected {
        let span = end_ns.saturating_sub(start_ns).max(1);
        Collected {
            start_ns,
            bucket_ns: (span / BUCKETS as i64).max(1) + 1,
            series: BTreeMap::new(),
            max_series,
            uncharted: 0,
            evidence_wanted: alerts
                .iter()
                .flat_map(|a| a.evidence.iter().take(EVIDENCE_SHOWN).cloned())
                .collect(),
            evidence: HashMap::new(),
        }
    }

    fn add(&mut self, tx: Tx) {
        let bucket = usize::try_from(tx.ts_ns.saturating_sub(self.start_ns) / self.bucket_ns)
            .unwrap_or(0)
            .min(BUCKETS - 1);
        if self.evidence_wanted.contains(&tx.id) {
            self.evidence.insert(tx.id.clone(), tx.clone());
        }
        let key = (tx.host, tx.endpoint);
        if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
            self.uncharted += 1;
            return;
        }
        let s = self.series.entry(key).or_default();
        s.requests[bucket] += 1;
        if tx.status.is_none_or(|c| c >= 400) {
            s.errors[bucket] += 1;
        }
        if let Some(d) = tx.duration_ns {
            s.latency_sum_ns[bucket] = s.latency_sum_ns[bucket].saturating_add(d);
            s.latency_n[bucket] += 1;
        }
    }
}

/// A transaction event of the sensor's output (ECS), or `None` for other events.
fn tx_of_event(ev: &Value) -> Option<Tx> {
    if ev["event"]["kind"] != "event" {
        return None;
    }
    let endpoint = ev["apitap"]["endpoint"].as_str()?.to_string();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let ts = time::OffsetDateTime::parse(
        ev["@timestamp"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(Tx {
        id: text(&ev["event"]["id"]),
        ts_ns: i64::try_from(ts.unix_timestamp_nanos()).ok()?,
        host: text(&ev["url"]["domain"]),
        endpoint,
        client: text(&ev["source"]["ip"]),
        target: text(&ev["url"]["original"]),
        status: ev["http"]["response"]["status_code"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok()),
        duration_ns: ev["event"]["duration"].as_u64(),
    })
}

/// Runs `apitap report`. Exit 0 with the report written; 1 when an input stopped early
/// (the report covers what was read); 2 (via `Err`) when nothing could be reported.
pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    // The events are read back here: whatever the file says, they are ECS.
    cfg.output.format = apitap_event::EventFormat::Ecs;
    cfg.analytics.enabled = true;
    // A report runs every detector here, whatever a fleet sensor's config says.
    cfg.analytics.mode = apitap_analytics::AnalyticsMode::Local;
    cfg.kafka = None;
    cfg.analytics.inventory.state_file.clear();
    if let Some(spec) = &args.spec {
        cfg.analytics.spec.path = spec.display().to_string();
    }
    cfg.validate()?;
    let spec = match cfg.analytics.spec.path.as_str() {
        "" => None,
        p => Some(load_spec(std::path::Path::new(p))?),
    };
    // Unreadable inputs and an unwritable target are refused before any work; the report
    // is written next to its target and renamed into place at the end, so a failure never
    // leaves a half-written or emptied file.
    for f in &args.files {
        std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        if same_file(f, &args.output) {
            bail!("{} is an input; write the report elsewhere", f.display());
        }
    }
    let dir_of_output = match args.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staged = tempfile::Builder::new()
        .prefix(".apitap-report-")
        .tempfile_in(&dir_of_output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let (hars, pcaps): (Vec<PathBuf>, Vec<PathBuf>) = args
        .files
        .iter()
        .cloned()
        .partition(|p| crate::har::is_har(p));
    if !hars.is_empty() && !pcaps.is_empty() {
        // Two analytics engines would each see half the traffic and list endpoints twice.
        bail!("give captures or HAR files, not both, to one report");
    }

    let mut alerts: Vec<Alert> = Vec::new();
    let mut input_error = None;
    let mut endpoints: Vec<EndpointStats> = Vec::new();
    let mut txs_from_har: Vec<Tx> = Vec::new();
    let dir = tempfile::TempDir::new().context("cannot create a temporary directory")?;
    let events = dir.path().join("events.jsonl");
    if !pcaps.is_empty() {
        let (summary, outcome) = replay_with_analytics(
            &pcaps,
            Some(Output::File(events.clone())),
            &cfg,
            false,
            true,
        )?;
        input_error = summary.input_error;
        let outcome = outcome.context("analytics did not run")?;
        endpoints.extend(outcome.engine.inventory().endpoints());
        alerts.extend(outcome.alerts);
    }
    if !hars.is_empty() {
        let mut engine = configured_engine(&cfg)?;
        let mut records = Vec::new();
        for path in &hars {
            records.extend(crate::har::read(path)?);
        }
        records.sort_by_key(|r| r.ts_ns);
        for r in &records {
            let Some(named) = engine.process_into(r, &mut alerts) else {
                continue;
            };
            let endpoint = named.endpoint.to_string();
            txs_from_har.push(Tx {
                id: r.event_id.clone(),
                ts_ns: r.ts_ns,
                host: r.host.clone().unwrap_or_default(),
                endpoint,
                client: r.client.ip().to_string(),
                // The path only: a HAR's query string is not redacted like an event's.
                target: r.path.clone(),
                status: r.status,
                duration_ns: r.duration_ns,
            });
        }
        alerts.extend(engine.finish());
        endpoints.extend(engine.inventory().endpoints());
    }
    alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.ts_ns.cmp(&b.ts_ns)));
    // The busiest endpoints first, until a reader sorts otherwise.
    endpoints.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.host, &a.method, &a.template).cmp(&(&b.host, &b.method, &b.template)))
    });
    // The time range of the transactions themselves (the inventory leaves some out: 404s,
    // endpoints past its bound): one pass for the range, one to collect.
    let (mut start, mut end) = (i64::MAX, i64::MIN);
    let mut span = |ts: i64| {
        start = start.min(ts);
        end = end.max(ts);
    };
    each_event(&events, |tx| span(tx.ts_ns))?;
    txs_from_har.iter().for_each(|tx| span(tx.ts_ns));
    if start > end {
        (start, end) = (0, 0);
    }
    let mut collected = Collected::new(
        start,
        end,
        &alerts,
        cfg.analytics.inventory.max_endpoints.max(1),
    );
    each_event(&events, |tx| collected.add(tx))?;
    for tx in txs_from_har {
        collected.add(tx);
    }
    let inputs: Vec<String> = args
        .files
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        })
        .collect();
    let html = render(&Page {
        inputs: &inputs,
        start_ns: start,
        end_ns: end,
        alerts: &alerts,
        endpoints: &endpoints,
        spec: spec.as_ref(),
        collected: &collected,
        max_charts: args.max_charts,
        input_error: input_error.as_deref(),
    });
    std::fs::write(staged.path(), html)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    staged
        .persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "apitap report: {} ({} endpoints, {} alerts)",
        args.output.display(),
        endpoints.len(),
        alerts.len()
    );
    if let Some(e) = input_error {
        eprintln!("apitap: error: input stopped early: {e}");
        return Ok(ExitCode::from(1));
    }
    if pcaps.is_empty() && hars.is_empty() {
        bail!("no input");
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls `f` with each transaction of the events file (none when it does not exist).
fn each_event(path: &std::path::Path, mut f: impl FnMut(Tx)) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let file = std::fs::File::open(path).context("cannot read the events back")?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.context("cannot read the events back")?;
        if let Some(tx) = serde_json::from_str::<Value>(&line)
            .ok()
            .as_ref()
            .and_then(tx_of_event)
        {
            f(tx);
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Everything one page shows.
struct Page<'a> {
    inputs: &'a [String],
    start_ns: i64,
    end_ns: i64,
    alerts: &'a [Alert],
    endpoints: &'a [EndpointStats],
    spec: Option<&'a ApiSpec>,
    collected: &'a Collected,
    max_charts: usize,
    input_error: Option<&'a str>,
}

/// Text made safe for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Where an endpoint stands against the spec.
fn coverage(spec: Option<&ApiSpec>, method: &str, template: &str) -> &'static str {
    let Some(spec) = spec else {
        return "no spec";
    };
    match spec.match_request(method, template) {
        apitap_analytics::spec::SpecMatch::Operation(op) => {
            if op.deprecated || spec.superseded(template).is_some() {
                "zombie"
            } else {
                "observed"
            }
        }
        _ => "shadow",
    }
}

const SEVERITY_ORDER: [&str; 4] = ["critical", "high", "medium", "low"];

fn render(p: &Page<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>apitap report</title><style>{STYLE}</style></head><body>\n\
         <header><h1>API traffic report</h1><p class=\"meta\">{} · {} to {} · apitap {}</p></header>\n",
        esc(&p.inputs.join(", ")),
        esc(&rfc3339_micros(p.start_ns)),
        esc(&rfc3339_micros(p.end_ns)),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(e) = p.input_error {
        let _ = writeln!(
            h,
            "<p class=\"warning\">Input stopped early: {}. The report covers what was read.</p>",
            esc(e)
        );
    }
    summary(&mut h, p);
    alerts(&mut h, p);
    inventory(&mut h, p);
    charts(&mut h, p);
    let _ = write!(
        h,
        "<footer>Made by apitap {}. One file, no external assets.</footer>\n<script>{SCRIPT}</script>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn summary(h: &mut String, p: &Page<'_>) {
    let transactions: u64 = p.endpoints.iter().map(|e| e.count).sum();
    let clients: BTreeSet<_> = p.endpoints.iter().flat_map(|e| e.clients.iter()).collect();
    let mut cards = vec![
        ("transactions", "Transactions", transactions.to_string()),
        ("endpoints", "Endpoints", p.endpoints.len().to_string()),
        ("clients", "Clients", clients.len().to_string()),
        ("alerts", "Alerts", p.alerts.len().to_string()),
    ];
    for sev in SEVERITY_ORDER {
        let n = p
            .alerts
            .iter()
            .filter(|a| a.severity_label() == sev)
            .count();
        cards.push((sev, sev, n.to_string()));
    }
    if let Some(spec) = p.spec {
        // Shadow and zombie count endpoints seen; observed counts the spec's operations that
        // traffic reached (several concrete endpoints may reach one templated operation).
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut reached: BTreeSet<String> = BTreeSet::new();
        for e in p.endpoints {
            match coverage(Some(spec), &e.method, &e.template) {
                "observed" => {
                    if let apitap_analytics::spec::SpecMatch::Operation(op) =
                        spec.match_request(&e.method, &e.template)
                    {
                        reached.insert(op.display());
                    }
                }
                other => *counts.entry(other).or_default() += 1,
            }
        }
        counts.insert("observed", reached.len());
        cards.push((
            "documented",
            "Documented",
            spec.operations().len().to_string(),
        ));
        for (key, label) in [
            ("observed", "Observed"),
            ("shadow", "Shadow"),
            ("zombie", "Zombie"),
        ] {
            cards.push((
                key,
                label,
                counts.get(key).copied().unwrap_or(0).to_string(),
            ));
        }
    }
    h.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
    for (key, label, n) in cards {
        let _ = write!(
            h,
            "<div class=\"card {key}\" data-key=\"{key}\"><span class=\"n\">{n}</span><span class=\"label\">{}</span></div>",
            esc(label)
        );
    }
    h.push_str("</div></section>\n");
}

fn alerts(h: &mut String, p: &Page<'_>) {
    h.push_str("<section id=\"alerts\"><h2>Alerts</h2>");
    if p.alerts.is_empty() {
        h.push_str("<p>No alerts.</p>");
    }
    for sev in SEVERITY_ORDER {
        let list: Vec<&Alert> = p
            .alerts
            .iter()
            .filter(|a| a.severity_label() == sev)
            .collect();
        if list.is_empty() {
            continue;
        }
        let _ = write!(h, "<h3 class=\"sev {sev}\">{sev} ({})</h3>", list.len());
        for a in list {
            let _ = write!(
                h,
                "<details class=\"alert {sev}\" data-rule=\"{}\"><summary><span class=\"badge {sev}\">{sev}</span> <code>{}</code> {}</summary>\
                 <dl><dt>Rule</dt><dd>{} · {}</dd><dt>Client</dt><dd>{}</dd><dt>Endpoint</dt><dd>{}</dd>\
                 <dt>Window</dt><dd>{} to {} · {} transactions</dd></dl>",
                esc(a.rule.id()),
                esc(a.rule.id()),
                esc(&a.message),
                esc(a.rule.name()),
                esc(&format!("{} {}", a.rule.owasp(), a.rule.owasp_name())),
                esc(&a.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into())),
                esc(a.endpoint.as_deref().unwrap_or("-")),
                esc(&rfc3339_micros(a.window_start_ns)),
                esc(&rfc3339_micros(a.window_end_ns)),
                a.count,
            );
            h.push_str("<table class=\"evidence\"><thead><tr><th>Event</th><th>Time</th><th>Client</th><th>Request</th><th>Status</th><th>ms</th></tr></thead><tbody>");
            for id in a.evidence.iter().take(EVIDENCE_SHOWN) {
                match p.collected.evidence.get(id) {
                    Some(t) => {
                        let _ = write!(
                            h,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                            esc(id),
                            esc(&rfc3339_micros(t.ts_ns)),
                            esc(&t.client),
                            esc(t.endpoint.split(' ').next().unwrap_or("")),
                            esc(&t.target),
                            t.status.map_or("-".into(), |s| s.to_string()),
                            t.duration_ns
                                .map_or("-".into(), |d| format!("{:.1}", d as f64 / 1e6)),
                        );
                    }
                    None => {
                        let _ = write!(
                            h,
                            "<tr><td><code>{}</code></td><td colspan=\"5\">not a transaction of this report</td></tr>",
                            esc(id)
                        );
                    }
                }
            }
            if a.evidence.len() > EVIDENCE_SHOWN {
                let _ = write!(
                    h,
                    "<tr><td colspan=\"6\">{} more</td></tr>",
                    a.evidence.len() - EVIDENCE_SHOWN
                );
            }
            h.push_str("</tbody></table></details>");
        }
    }
    h.push_str("</section>\n");
}

fn inventory(h: &mut String, p: &Page<'_>) {
    h.push_str(
        "<section id=\"inventory\"><h2>Endpoint inventory</h2>\
         <table id=\"inventory-table\" class=\"sortable\"><thead><tr>\
         <th data-key=\"host\">Host</th><th data-key=\"endpoint\">Endpoint</th>\
         <th data-key=\"coverage\">Spec</th><th data-key=\"requests\" data-type=\"num\">Requests</th>\
         <th data-key=\"4xx\" data-type=\"num\">4xx</th><th data-key=\"5xx\" data-type=\"num\">5xx</th>\
         <th data-key=\"clients\" data-type=\"num\">Clients</th><th data-key=\"auth\">Auth</th>\
         <th data-key=\"last\">Last seen</th></tr></thead><tbody>",
    );
    let mut seen_ops: BTreeSet<String> = BTreeSet::new();
    for e in p.endpoints {
        let cov = coverage(p.spec, &e.method, &e.template);
        if let Some(spec) = p.spec {
            if let apitap_analytics::spec::SpecMatch::Operation(op) =
                spec.match_request(&e.method, &e.template)
            {
                seen_ops.insert(op.display());
            }
        }
        let class = |k: &str| e.status_classes.get(k).copied().unwrap_or(0);
        let auth: Vec<&str> = e.auth_schemes.keys().map(String::as_str).collect();
        let endpoint = format!("{} {}", e.method, e.template);
        let _ = write!(
            h,
            "<tr data-endpoint=\"{}\"><td>{}</td><td><code>{}</code></td><td class=\"cov {cov}\">{cov}</td>\
             <td data-value=\"{}\">{}</td><td data-value=\"{}\">{}</td><td data-value=\"{}\">{}</td>\
             <td data-value=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&endpoint),
            esc(if e.host.is_empty() { "-" } else { &e.host }),
            esc(&endpoint),
            e.count,
            e.count,
            class("4xx"),
            class("4xx"),
            class("5xx"),
            class("5xx"),
            e.clients.len(),
            e.clients.len(),
            esc(&auth.join(", ")),
            esc(&rfc3339_micros(e.last_seen_ns)),
        );
    }
    if let Some(spec) = p.spec {
        for op in spec.operations() {
            let name = op.display();
            if !seen_ops.insert(name.clone()) {
                continue;
            }
            let _ = write!(
                h,
                "<tr data-endpoint=\"{}\"><td>-</td><td><code>{}</code></td><td class=\"cov documented\">documented</td>\
                 <td data-value=\"0\">0</td><td data-value=\"0\">0</td><td data-value=\"0\">0</td>\
                 <td data-value=\"0\">0</td><td></td><td>never</td></tr>",
                esc(&name),
                esc(&name)
            );
        }
    }
    h.push_str("</tbody></table></section>\n");
}

fn charts(h: &mut String, p: &Page<'_>) {
    let mut busiest: Vec<(&(String, String), &Series)> = p.collected.series.iter().collect();
    busiest.sort_by_key(|(k, s)| (std::cmp::Reverse(s.requests.iter().sum::<u64>()), *k));
    busiest.truncate(p.max_charts);
    let _ = write!(
        h,
        "<section id=\"charts\"><h2>Over time</h2><p class=\"meta\">{} buckets of {:.3} s from {}; requests, errors (4xx, 5xx, no response) and mean latency.</p>",
        BUCKETS,
        p.collected.bucket_ns as f64 / 1e9,
        esc(&rfc3339_micros(p.collected.start_ns)),
    );
    if p.collected.uncharted > 0 {
        let _ = write!(
            h,
            "<p class=\"warning\">{} transactions of endpoints beyond the first {} are not charted (analytics.inventory.max_endpoints).</p>",
            p.collected.uncharted, p.collected.max_series
        );
    }
    for ((host, endpoint), s) in busiest {
        let latency_ms: Vec<f64> = s
            .latency_sum_ns
            .iter()
            .zip(&s.latency_n)
            .map(|(sum, n)| {
                if *n == 0 {
                    0.0
                } else {
                    *sum as f64 / *n as f64 / 1e6
                }
            })
            .collect();
        let _ = write!(
            h,
            "<figure class=\"chart\" data-endpoint=\"{}\"><figcaption><code>{}</code> {}</figcaption>{}{}{}</figure>",
            esc(endpoint),
            esc(endpoint),
            esc(host),
            bars(&s.requests, "requests", "req"),
            bars(&s.errors, "errors", "err"),
            line(&latency_ms, "latency", "ms"),
        );
    }
    h.push_str("</section>\n");
}

const CHART_W: f64 = 240.0;
const CHART_H: f64 = 40.0;

/// A bar chart of `values` as inline SVG.
fn bars(values: &[u64], class: &str, unit: &str) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let w = CHART_W / values.len() as f64;
    let mut svg = format!(
        "<svg class=\"{class}\" viewBox=\"0 0 {CHART_W} {}\" width=\"{CHART_W}\" height=\"{}\" role=\"img\"><title>{class}, peak {max} {unit}</title>",
        CHART_H + 12.0,
        CHART_H + 12.0
    );
    for (i, v) in values.iter().enumerate() {
        if *v == 0 {
            continue;
        }
        let bh = (*v as f64 / max * CHART_H).max(1.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"/>",
            i as f64 * w,
            CHART_H - bh,
            (w - 1.0).max(0.5)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\">{class} (max {max} {unit})</text></svg>",
        CHART_H + 10.0
    );
    svg
}

/// A line chart of `values` as inline SVG.
fn line(values: &[f64], class: &str, unit: &str) -> String {
    let max = values
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let w = CHART_W / values.len().max(1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * w + w / 2.0,
                CHART_H - v / max * (CHART_H - 1.0)
            )
        })
        .collect();
    format!(
        "<svg class=\"{class}\" viewBox=\"0 0 {CHART_W} {}\" width=\"{CHART_W}\" height=\"{}\" role=\"img\"><title>{class}, peak {max:.1} {unit}</title>\
         <polyline fill=\"none\" points=\"{}\"/><text x=\"0\" y=\"{}\">{class} (max {max:.1} {unit})</text></svg>",
        CHART_H + 12.0,
        CHART_H + 12.0,
        points.join(" "),
        CHART_H + 10.0
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 2em 2em;color:#1d2330}\
h1{margin:.6em 0 0}h2{border-bottom:1px solid #ccd;padding-bottom:.2em;margin-top:1.6em}\
.meta{color:#667}.warning{background:#fff3cd;padding:.5em}\
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #ccd;border-radius:6px;padding:.5em .9em;min-width:6em}\
.card .n{display:block;font-size:1.6em;font-weight:600}.card .label{color:#556;text-transform:capitalize}\
.critical{--c:#8b0000}.high{--c:#d0342c}.medium{--c:#d98c00}.low{--c:#2b7bb9}\
.card.critical,.card.high,.card.medium,.card.low{border-left:5px solid var(--c)}\
.badge{background:var(--c);color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em}\
h3.sev{color:var(--c);text-transform:capitalize}details.alert{border-left:4px solid var(--c);margin:.4em 0;padding:.2em .6em;background:#f7f8fb}\
summary{cursor:pointer}dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em}dt{color:#667}\
table{border-collapse:collapse;margin:.5em 0}th,td{border-bottom:1px solid #e3e5ec;padding:.25em .6em;text-align:left;vertical-align:top}\
th[data-key]{cursor:pointer;user-select:none}th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\
td[data-value]{text-align:right}.cov.shadow{color:#d0342c;font-weight:600}.cov.zombie{color:#8b0000;font-weight:600}\
.cov.documented{color:#667}figure.chart{display:inline-block;margin:.5em 1em .5em 0;border:1px solid #e3e5ec;padding:.4em}\
figcaption{margin-bottom:.2em}svg{display:block}svg rect{fill:#2b7bb9}svg.errors rect{fill:#d0342c}\
svg polyline{stroke:#6a3d9a;stroke-width:1.5}svg text{font-size:9px;fill:#667}footer{margin-top:2em;color:#889}";

/// Sorting of the inventory table: click a header (again to reverse), or open the file with
/// `#sort=KEY` or `#sort=KEY-desc`.
const SCRIPT: &str = r#"(function(){
function sortBy(table,key,desc){
 var ths=table.tHead.rows[0].cells,col=-1,num=false;
 for(var i=0;i<ths.length;i++){ths[i].classList.remove('asc','desc');if(ths[i].dataset.key===key){col=i;num=ths[i].dataset.type==='num';}}
 if(col<0)return;
 var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
 rows.sort(function(a,b){
  var x=a.cells[col],y=b.cells[col],r;
  if(num){r=Number(x.dataset.value)-Number(y.dataset.value);}else{r=x.textContent.localeCompare(y.textContent);}
  return desc?-r:r;});
 rows.forEach(function(r){body.appendChild(r);});
 ths[col].classList.add(desc?'desc':'asc');
 table.dataset.sorted=key+(desc?'-desc':'');}
var t=document.getElementById('inventory-table');if(!t)return;
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th){th.addEventListener('click',function(){
 sortBy(t,th.dataset.key,th.classList.contains('asc'));});});
var m=/sort=([\w-]+?)(-desc)?$/.exec(location.hash);if(m){sortBy(t,m[1],!!m[2]);}
})();"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_text_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
    }

    #[test]
    fn charts_are_svg_whatever_the_values() {
        let b = bars(&[0, 3, 1], "requests", "req");
        assert!(b.starts_with("<svg") && b.ends_with("</svg>") && b.contains("<rect"));
        assert!(!bars(&[0; 4], "errors", "err").contains("<rect"));
        let l = line(&[0.0, 2.5, f64::NAN], "latency", "ms");
        assert!(l.contains("<polyline"));
        assert!(line(&[], "latency", "ms").contains("<polyline"));
    }

    #[test]
    fn collected_buckets_stay_in_range() {
        let mut c = Collected::new(1_000, 1_000, &[], 1);
        for ts in [i64::MIN, 0, 1_000, 5_000, i64::MAX] {
            c.add(Tx {
                ts_ns: ts,
                endpoint: "GET /".into(),
                status: Some(500),
                ..Tx::default()
            });
        }
        let s = &c.series[&(String::new(), "GET /".to_string())];
        assert_eq!(s.requests.iter().sum::<u64>(), 5);
        assert_eq!(s.errors.iter().sum::<u64>(), 5);
        // One series at most: another endpoint is counted, not charted.
        c.add(Tx {
            endpoint: "GET /other".into(),
            ..Tx::default()
        });
        assert_eq!((c.series.len(), c.uncharted), (1, 1));
    }
}
