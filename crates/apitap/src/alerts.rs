//! `apitap alerts`: the alert topic read back for a person at a terminal, filtered, as a
//! compact table (coloured by severity on a terminal) or as the JSON lines published.
//!
//! By default the reader is a member of its own consumer group (one per user): each run
//! shows what arrived since that group's last run (everything, the first time) and commits
//! what it read, filtered-out alerts included. `--from-beginning` and `--since` read every
//! partition from its start instead, without a group and without committing. Without
//! `--follow` the run ends when every partition has been read up to the end it had at
//! start.

use crate::Config;
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `apitap alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Kafka brokers, host:port[,host:port...] (default: `[kafka] brokers` of --config).
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Configuration file: its `[kafka]` section (brokers, TLS, SASL, alerts_topic).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Topic to read (default: kafka.alerts_topic, "apitap.alerts").
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group: each run shows what arrived since the group's last run (default
    /// `apitap-alerts-USER`, one per user, so two people never split the partitions).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["from_beginning", "since"])]
    pub group: Option<String>,
    /// Read every alert on the topic, without a consumer group.
    #[arg(long)]
    pub from_beginning: bool,
    /// Only alerts whose time (`@timestamp`) is at or after TIME: RFC 3339
    /// (2026-12-07T08:00:00Z) or a span back from now (90s, 15m, 2h, 7d). Reads the topic
    /// from the start, without a consumer group.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Lowest severity shown: low, medium, high or critical.
    #[arg(long, value_name = "SEVERITY")]
    pub severity: Option<String>,
    /// Only this rule, by id (APITAP-BOLA-001) or name (object_id_enumeration); repeat for
    /// several.
    #[arg(long, value_name = "RULE")]
    pub rule: Vec<String>,
    /// Only alerts whose endpoint contains this text (e.g. "/api/users").
    #[arg(long, value_name = "TEXT")]
    pub endpoint: Option<String>,
    /// Only alerts about this client address.
    #[arg(long, value_name = "IP")]
    pub client: Option<String>,
    /// Print the alerts as published (JSON lines) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep reading new alerts until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Seconds allowed to reach the brokers at start.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

/// Severity labels, lowest first, and the lowest score of each (as in alerts).
const SEVERITIES: [(&str, u64); 4] = [("low", 1), ("medium", 40), ("high", 70), ("critical", 90)];

/// What a record must match to be shown.
#[derive(Debug, Default)]
struct Filter {
    min_severity: u64,
    rules: Vec<String>,
    endpoint: Option<String>,
    client: Option<String>,
    /// `@timestamp` lower bound, in the alerts' own format (fixed width, so it compares as
    /// text).
    since: Option<String>,
}

impl Filter {
    fn new(args: &AlertsArgs, now: time::OffsetDateTime) -> Result<Filter> {
        let min_severity = match &args.severity {
            None => 0,
            Some(s) => SEVERITIES
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, score)| *score)
                .ok_or_else(|| anyhow!("--severity {s:?}: use low, medium, high or critical"))?,
        };
        let since = args
            .since
            .as_deref()
            .map(|s| since_bound(s, now))
            .transpose()?;
        Ok(Filter {
            min_severity,
            rules: args.rule.clone(),
            endpoint: args.endpoint.clone(),
            client: args.client.clone(),
            since,
        })
    }

    fn matches(&self, alert: &Value) -> bool {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        if alert["event"]["severity"].as_u64().unwrap_or(0) < self.min_severity {
            return false;
        }
        if !self.rules.is_empty()
            && !self
                .rules
                .iter()
                .any(|r| *r == text(&alert["rule"]["id"]) || *r == text(&alert["rule"]["name"]))
        {
            return false;
        }
        if let Some(e) = &self.endpoint {
            if !text(&alert["apitap"]["endpoint"]).contains(e.as_str()) {
                return false;
            }
        }
        if let Some(c) = &self.client {
            if text(&alert["source"]["ip"]) != *c {
                return false;
            }
        }
        if let Some(since) = &self.since {
            if text(&alert["@timestamp"]).as_str() < since.as_str() {
                return false;
            }
        }
        true
    }
}

/// `--since` as an `@timestamp` in the alerts' format (`2026-12-07T08:00:00.000000Z`).
fn since_bound(text: &str, now: time::OffsetDateTime) -> Result<String> {
    let bad = || {
        anyhow!(
            "--since {text:?}: give RFC 3339 (2026-12-07T08:00:00Z) or a span (90s, 15m, 2h, 7d)"
        )
    };
    let at = if let Ok(t) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        t
    } else {
        let last = text.char_indices().last().map_or(0, |(i, _)| i);
        let (number, unit) = text.split_at(last);
        let n: i64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3600),
            "d" => n.saturating_mul(86_400),
            _ => return Err(bad()),
        };
        now.checked_sub(time::Duration::seconds(seconds))
            .ok_or_else(bad)?
    };
    let ns = i64::try_from(at.unix_timestamp_nanos()).map_err(|_| bad())?;
    Ok(apitap_analytics::rfc3339_micros(ns))
}

/// librdkafka reports reaching a partition's end as an error too; here it is the
/// expected way a run ends, so only other errors are logged.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::error!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Quiet {}

/// Records read, by what became of them.
#[derive(Debug, Default)]
struct Tally {
    shown: u64,
    filtered: u64,
    not_json: u64,
    not_alert: u64,
}

/// Runs `apitap alerts`. Exit 0 when the topic was read; 2 (via `Err`) when it could not
/// be (no brokers, a broker that cannot be reached, bad arguments).
pub fn alerts(args: AlertsArgs) -> Result<ExitCode> {
    let filter = Filter::new(&args, time::OffsetDateTime::now_utc())?;
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut kafka = cfg.kafka.clone().unwrap_or_default();
    if let Some(b) = &args.kafka {
        kafka.brokers = b.clone();
    }
    if kafka.brokers.trim().is_empty() {
        bail!("no brokers: give --kafka HOST:PORT, or [kafka] brokers in --config");
    }
    let topic = args.topic.clone().unwrap_or(kafka.alerts_topic.clone());
    let grouped = !args.from_beginning && args.since.is_none();
    let group = args.group.clone().unwrap_or_else(default_group);
    let mut client = kafka.consumer_config()?;
    client
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("group.id", &group);
    if !kafka.options.contains_key("session.timeout.ms") {
        // A console comes and goes; with the 45 s default a broker may hold a join (and a
        // departed console's partitions) that long. 6 s is Kafka's smallest by default.
        client.set("session.timeout.ms", "6000");
    }
    let consumer: BaseConsumer<Quiet> = client
        .create_with_context(Quiet)
        .context("cannot create the Kafka consumer")?;
    let timeout = Duration::from_secs(args.connect_timeout.max(1));
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| anyhow!("cannot reach Kafka at {}: {e}", kafka.brokers))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found.and_then(|t| t.error()) {
            None
            | Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {}
            Some(e) => bail!(
                "cannot read topic {topic} at {}: {}",
                kafka.brokers,
                RDKafkaErrorCode::from(e)
            ),
        }
        let n = found.map_or(0, |t| t.partitions().len());
        if n > 0 {
            break n;
        }
        if !args.follow {
            eprintln!(
                "apitap alerts: no topic {topic} at {} (no alert published yet)",
                kafka.brokers
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    if grouped {
        consumer
            .subscribe(&[&topic])
            .context("cannot join the consumer group")?;
    } else {
        let mut list = TopicPartitionList::new();
        for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
            list.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
    }

    let colour =
        !args.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(out, "{}", row(&HEADER, None, colour))?;
    }
    let mut tally = Tally::default();
    // Partitions read to their end since they were last assigned. The end is the broker's
    // end-of-partition report, not watermarks fetched at start: some Kafka-protocol brokers
    // report those late or short, and a run stopped on them loses records.
    let mut done: BTreeSet<i32> = BTreeSet::new();
    let mut assigned: BTreeSet<i32> = BTreeSet::new();
    // A group takes a moment to hand out partitions, and a partition whose leader is away
    // never reports its end: give up after a while without progress.
    let patience = timeout.saturating_mul(3);
    let mut progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                progress = Instant::now();
                show(
                    m.payload().unwrap_or(&[]),
                    &filter,
                    &args,
                    colour,
                    &mut tally,
                    &mut out,
                )?;
                if grouped {
                    consumer.store_offset_from_message(&m)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                progress = Instant::now();
                done.insert(p);
                out.flush()?;
                if grouped {
                    // What was shown is committed as soon as a partition is caught up.
                    let _ = consumer.commit_consumer_state(CommitMode::Async);
                }
            }
            Some(Err(e)) if args.follow => {
                tracing::warn!("reading {topic} from {}: {e}", kafka.brokers);
            }
            Some(Err(e)) => bail!("reading {topic} from {}: {e}", kafka.brokers),
            None => out.flush()?,
        }
        if args.follow {
            continue;
        }
        let now: BTreeSet<i32> = consumer
            .assignment()?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        if now != assigned {
            // A partition taken away (in a rebalance) is read to its end again if it returns.
            done.retain(|p| now.contains(p));
            assigned = now;
        }
        if !assigned.is_empty() && assigned.iter().all(|p| done.contains(p)) {
            break;
        }
        if progress.elapsed() > patience {
            if assigned.is_empty() {
                bail!("consumer group {group} got no partition of {topic}");
            }
            let waiting: Vec<String> = assigned
                .iter()
                .filter(|p| !done.contains(p))
                .map(i32::to_string)
                .collect();
            eprintln!(
                "apitap alerts: stopped waiting for partition(s) {} of {topic}",
                waiting.join(",")
            );
            break;
        }
    }
    out.flush()?;
    if grouped {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing new was read: nothing to commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) | Ok(()) => {}
            Err(e) => return Err(e).context("cannot commit the consumer group's offsets"),
        }
    }
    eprintln!(
        "apitap alerts: {} shown, {} filtered out, {} skipped (not JSON {}, not an alert {}) from {topic}",
        tally.shown,
        tally.filtered,
        tally.not_json + tally.not_alert,
        tally.not_json,
        tally.not_alert
    );
    Ok(ExitCode::SUCCESS)
}

const HEADER: [&str; 7] = [
    "TIME", "SEVERITY", "RULE", "CLIENT", "ENDPOINT", "SENSOR", "MESSAGE",
];
/// Column widths of the table (a longer cell widens its row, never cut).
const WIDTHS: [usize; 6] = [19, 8, 16, 15, 28, 8];

/// One record: counted, filtered, printed.
fn show(
    payload: &[u8],
    filter: &Filter,
    args: &AlertsArgs,
    colour: bool,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<()> {
    let Ok(alert) = serde_json::from_slice::<Value>(payload) else {
        tally.not_json += 1;
        return Ok(());
    };
    if alert["event"]["kind"] != "alert" || !alert["rule"]["id"].is_string() {
        tally.not_alert += 1;
        return Ok(());
    }
    if !filter.matches(&alert) {
        tally.filtered += 1;
        return Ok(());
    }
    tally.shown += 1;
    if args.json {
        writeln!(out, "{}", json_line(&alert))?;
        return Ok(());
    }
    let text = |v: &Value| match v.as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    };
    let time = text(&alert["@timestamp"]).replace('T', " ");
    let cells = [
        time.get(..19).unwrap_or(&time).to_string(),
        text(&alert["apitap"]["severity"]),
        text(&alert["rule"]["id"]),
        text(&alert["source"]["ip"]),
        text(&alert["apitap"]["endpoint"]),
        sensors(&alert),
        text(&alert["message"]),
    ];
    let severity = alert["apitap"]["severity"].as_str();
    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
    writeln!(out, "{}", row(&cells, severity, colour))?;
    Ok(())
}

/// The sensors of an alert: those that saw its endpoint (`apitap.sensors`, from the centre
/// of a fleet), else the one that raised it (`observer.name`); `-` when neither is named.
fn sensors(alert: &Value) -> String {
    let named: Vec<&str> = alert["apitap"]["sensors"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match (named.is_empty(), alert["observer"]["name"].as_str()) {
        (false, _) => named.join(","),
        (true, Some(name)) if !name.is_empty() => name.to_string(),
        _ => "-".to_string(),
    }
}

/// The consumer group of `apitap alerts` for the user running it.
fn default_group() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .unwrap_or_else(|| nix::unistd::getuid().to_string());
    format!("apitap-alerts-{user}")
}

/// Characters that must not reach a terminal from the wire or a topic: controls (C0, DEL,
/// C1) and the invisible ones that reorder or hide text (bidi overrides and isolates,
/// zero-width).
pub(crate) fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// An alert as one compact JSON line, with hostile characters written as `\uXXXX`
/// escapes (they can only occur inside strings, so the JSON stays the same value).
fn json_line(alert: &Value) -> String {
    let text = alert.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hostile(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A table line: cells padded to their column width; coloured by severity when asked.
fn row(cells: &[&str], severity: Option<&str>, colour: bool) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        // Control characters from the topic never reach the terminal.
        let clean: String = cell.chars().filter(|c| !hostile(*c)).collect();
        match WIDTHS.get(i) {
            Some(w) => line.push_str(&format!("{clean:<w$}  ")),
            None => line.push_str(&clean),
        }
    }
    let line = line.trim_end().to_string();
    let code = match (colour, severity) {
        (true, Some("critical")) => "1;31",
        (true, Some("high")) => "31",
        (true, Some("medium")) => "33",
        (true, Some("low")) => "36",
        _ => return line,
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> AlertsArgs {
        AlertsArgs {
            kafka: None,
            config: None,
            topic: None,
            group: None,
            from_beginning: false,
            since: None,
            severity: None,
            rule: Vec::new(),
            endpoint: None,
            client: None,
            json: false,
            follow: false,
            connect_timeout: 1,
        }
    }

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_765_094_400)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn since_takes_rfc3339_and_spans() {
        assert_eq!(
            since_bound("2026-12-07T08:00:00Z", now()).unwrap(),
            "2026-12-07T08:00:00.000000Z"
        );
        assert_eq!(
            since_bound("2026-12-07T09:30:00.5+01:30", now()).unwrap(),
            "2026-12-07T08:00:00.500000Z"
        );
        // now() is 2025-12-07T08:00:00Z.
        assert_eq!(
            since_bound("90m", now()).unwrap(),
            "2025-12-07T06:30:00.000000Z"
        );
        assert_eq!(
            since_bound("1d", now()).unwrap(),
            "2025-12-06T08:00:00.000000Z"
        );
        for bad in ["", "m", "5w", "yesterday", "-", "99999999999999999d"] {
            assert!(since_bound(bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_combine() {
        let alert = json!({
            "@timestamp": "2026-11-25T07:32:41.888409Z",
            "event": {"kind": "alert", "severity": 75},
            "rule": {"id": "APITAP-BOLA-001", "name": "object_id_enumeration"},
            "source": {"ip": "127.0.0.107"},
            "apitap": {"endpoint": "GET /api/users/{id}", "severity": "high"},
        });
        let mut a = args();
        let f = |a: &AlertsArgs| Filter::new(a, now()).unwrap().matches(&alert);
        assert!(f(&a));
        a.severity = Some("high".into());
        assert!(f(&a));
        a.severity = Some("critical".into());
        assert!(!f(&a));
        a.severity = None;
        a.rule = vec!["APITAP-AUTH-001".into(), "object_id_enumeration".into()];
        assert!(f(&a));
        a.rule = vec!["APITAP-AUTH-001".into()];
        assert!(!f(&a));
        a.rule.clear();
        a.endpoint = Some("/api/users".into());
        a.client = Some("127.0.0.107".into());
        assert!(f(&a));
        a.client = Some("127.0.0.1".into());
        assert!(!f(&a));
        a.client = None;
        a.since = Some("2026-11-25T07:32:42Z".into());
        assert!(!f(&a));
        a.since = Some("2026-11-25T07:32:41Z".into());
        assert!(f(&a));
        a.severity = Some("urgent".into());
        assert!(Filter::new(&a, now()).is_err());
    }

    #[test]
    fn records_that_are_not_alerts_are_counted() {
        let (a, f) = (args(), Filter::default());
        let mut tally = Tally::default();
        let mut out = Vec::new();
        for payload in [
            &b"not json"[..],
            b"{\"event\":{\"kind\":\"event\"}}",
            b"\xff\xfe",
        ] {
            show(payload, &f, &a, false, &mut tally, &mut out).unwrap();
        }
        assert_eq!((tally.not_json, tally.not_alert, tally.shown), (2, 1, 0));
        assert!(out.is_empty());
    }

    #[test]
    fn json_lines_escape_what_a_terminal_would_act_on() {
        let alert = json!({"message": "a\u{202e}b\u{9b}c\u{7f}d\né"});
        let line = json_line(&alert);
        assert_eq!(line, r#"{"message":"a\u202eb\u009bc\u007fd\né"}"#);
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), alert);
        assert!(!line.contains('\n'));
        assert!(since_bound("5µ", now()).is_err());
        assert!(since_bound("µ", now()).is_err());
    }

    #[test]
    fn the_sensor_column_names_the_fleet_sensors_else_the_observer() {
        let alert = |v: &str| -> Value { serde_json::from_str(v).unwrap() };
        assert_eq!(sensors(&alert("{}")), "-");
        assert_eq!(sensors(&alert(r#"{"observer":{"name":"s1"}}"#)), "s1");
        assert_eq!(
            sensors(&alert(
                r#"{"observer":{"name":"centre"},"apitap":{"sensors":["dc1","dc2"]}}"#
            )),
            "dc1,dc2"
        );
    }

    #[test]
    fn rows_are_plain_or_coloured_and_never_carry_control_characters() {
        let plain = row(&["a", "high", "R\x1b[2J\u{202e}x"], Some("high"), false);
        assert!(
            !plain.contains('\x1b') && !plain.contains('\u{202e}'),
            "{plain:?}"
        );
        assert!(plain.starts_with("a   "));
        let coloured = row(&["a"], Some("critical"), true);
        assert_eq!(coloured, "\x1b[1;31ma\x1b[0m");
    }
}
