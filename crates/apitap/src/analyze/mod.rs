//! `apitap analyze`: the central analytics of a sensor fleet. Reads the transaction events
//! of sensors in edge mode (or any ECS events), merges them into packet-time order and
//! runs the stateful analytics once over all of them: one inventory, one set of alerts,
//! with the same alert ids whichever sensor saw which transaction. With `--kafka` it is
//! one member of a consumer group on the events topic instead ([`kafka`]).

mod kafka;

pub(crate) use kafka::fleet_inventory;
pub use kafka::MemberStats;

use crate::analysis::{configured_engine, save_inventory};
use crate::bridge::alert_event;
use crate::Config;
use anyhow::{Context, Result};
use apitap_analytics::events::{parse_event, EventInputStats, EventMerge, MergeBounds};
use apitap_analytics::{Alert, Analytics, AnalyticsStats, TxRecord};
use apitap_core::SortKey;
use serde::Serialize;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `apitap analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Event files (JSON lines, as `apitap replay` or `run` write them), one or more per
    /// sensor; `-` reads stdin.
    #[arg(required_unless_present = "kafka", conflicts_with = "kafka")]
    pub files: Vec<PathBuf>,
    /// Be a member of the consumer group `analyze.group_id` on the events topic of these
    /// brokers (host:port,...; the rest of `[kafka]` applies), publishing alerts to the
    /// alerts topic.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// With `--kafka`: stop, as at the end of the input, once every partition has been at
    /// its end this many seconds (batch runs, tests); without it a member runs until
    /// SIGTERM.
    #[arg(long, value_name = "SECONDS", requires = "kafka")]
    pub exit_when_idle: Option<f64>,
    /// Configuration file (`[analytics]` and `[analyze]`).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Write the alerts to this file instead of stdout.
    #[arg(short, long, conflicts_with = "kafka")]
    pub output: Option<PathBuf>,
    /// OpenAPI 3 spec to diff traffic against (overrides analytics.spec.path).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Write the inventory (the saved-state JSON) to this file at the end (a member of
    /// `--kafka`: the hosts of its partitions).
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Write the inventory as an OpenAPI 3.0 document to this file at the end.
    #[arg(long, value_name = "FILE")]
    pub openapi: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Do not print the summary to stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// What `apitap analyze` reports at the end.
#[derive(Debug, Default, Serialize)]
pub struct AnalyzeSummary {
    /// The event input: lines, records, what was skipped and why, ordering.
    pub input: EventInputStats,
    /// The analytics.
    pub analytics: AnalyticsStats,
    /// `--kafka`: the member's group, offsets and alert deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberStats>,
    /// `--kafka`: the same for the member of the clients group (the auth failures
    /// topic, the per-client auth bursts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<Box<AnalyzeSummary>>,
}

/// Runs `apitap analyze`.
pub fn analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    cfg.analytics.enabled = true;
    // The centre runs every detector (a sensor's edge config may be given).
    cfg.analytics.mode = apitap_analytics::AnalyticsMode::Local;
    if let Some(spec) = &args.spec {
        cfg.analytics.spec.path = spec.display().to_string();
    }
    cfg.validate()?;
    check_paths(&args)?;
    if let Some(brokers) = &args.kafka {
        let exit_when_idle = match args.exit_when_idle {
            Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                Some(std::time::Duration::from_secs_f64(s))
            }
            Some(s) => anyhow::bail!("--exit-when-idle {s}: not within 0..=86400 seconds"),
            None => None,
        };
        let opts = kafka::MemberOptions {
            brokers: brokers.clone(),
            exit_when_idle,
        };
        let (summary, engine) = kafka::member(&cfg, &opts)?;
        save_state(&args, &engine)?;
        return report(&args, &summary);
    }
    let mut sources = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(BufReader::with_capacity(1 << 16, file))
        };
        sources.push(reader);
    }
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let summary = run(&cfg, &mut sources, &mut out, &args)?;
    report(&args, &summary)
}

/// Prints and saves the summary; the exit code says whether any transaction was read.
fn report(args: &AnalyzeArgs, summary: &AnalyzeSummary) -> Result<ExitCode> {
    let json = serde_json::to_string_pretty(&summary)?;
    if let Some(p) = &args.stats_json {
        std::fs::write(p, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if !args.quiet {
        eprintln!("{json}");
    }
    let input = &summary.input;
    if input.lines > 0 && input.transactions == 0 {
        eprintln!(
            "apitap analyze: no transaction event in {} lines (see the skipped counts)",
            input.lines
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the inventory (`--inventory`, `--openapi`).
fn save_state(args: &AnalyzeArgs, engine: &Analytics) -> Result<()> {
    if let Some(p) = &args.inventory {
        save_inventory(p, &engine.inventory_snapshot())?;
    }
    if let Some(p) = &args.openapi {
        let text = serde_json::to_string_pretty(&engine.openapi(None))?;
        std::fs::write(p, text + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Refuses stdin given twice, and an output file that is also an input (it would be
/// emptied before it is read).
fn check_paths(args: &AnalyzeArgs) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if args.files.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        anyhow::bail!("stdin (-) given more than once");
    }
    let id = |p: &PathBuf| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let outputs = [
        &args.output,
        &args.inventory,
        &args.openapi,
        &args.stats_json,
    ];
    for out in outputs.into_iter().flatten() {
        if let Some(out_id) = id(out) {
            if let Some(input) = args.files.iter().find(|p| id(p) == Some(out_id)) {
                anyhow::bail!(
                    "{} is both an input and an output; it would be overwritten",
                    input.display()
                );
            }
        }
    }
    Ok(())
}

fn run(
    cfg: &Config,
    sources: &mut [Box<dyn BufRead>],
    out: &mut impl Write,
    args: &AnalyzeArgs,
) -> Result<AnalyzeSummary> {
    let z = &cfg.analyze;
    let mut engine = configured_engine(cfg)?;
    let mut merge = EventMerge::new(sources.len(), bounds(cfg));
    let mut stats = EventInputStats::default();
    let (mut line, mut ready, mut alerts) = (Vec::new(), Vec::new(), Vec::<Alert>::new());
    let sensor = cfg.output.sensor_name.as_str();
    // Alerts are written as they fire, not held in the buffer: a long-running input
    // (a pipe) shows them at once.
    let mut write = |alerts: &mut Vec<Alert>| -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        for a in alerts.drain(..) {
            out.write_all(&alert_event(&a, SortKey::default(), sensor).json)?;
            out.write_all(b"\n")?;
        }
        out.flush().context("cannot write the alerts")
    };
    while let Some(i) = merge.next_source() {
        let source = sources.get_mut(i).context("no such source")?;
        match read_line(source, z.max_event_bytes, &mut line).with_context(|| {
            match args.files.get(i) {
                Some(p) => format!("cannot read {}", p.display()),
                None => "cannot read the events".into(),
            }
        })? {
            Line::End => merge.close(i, &mut stats, &mut ready),
            Line::TooLong => {
                stats.lines += 1;
                stats.skipped_too_long += 1;
            }
            Line::Full => {
                if let Some(rec) = admit(cfg, &line, &mut stats) {
                    merge.push(i, rec, line.len(), &mut stats, &mut ready);
                }
            }
        }
        for rec in ready.drain(..) {
            engine.process_into(&rec, &mut alerts);
        }
        write(&mut alerts)?;
    }
    alerts.extend(engine.finish());
    write(&mut alerts)?;
    out.flush().context("cannot write the alerts")?;
    save_state(args, &engine)?;
    Ok(AnalyzeSummary {
        input: stats,
        analytics: engine.stats(),
        member: None,
        clients: None,
    })
}

/// The merge's bounds from `[analyze]`.
fn bounds(cfg: &Config) -> MergeBounds {
    let z = &cfg.analyze;
    MergeBounds {
        allowed_lateness_ns: i64::try_from(z.allowed_lateness_ms.saturating_mul(1_000_000))
            .unwrap_or(i64::MAX),
        max_buffered: z.max_buffered_events,
        max_buffered_bytes: z.max_buffered_bytes,
    }
}

/// One message of the events topic as a record, or why not (counted in `input`): too
/// long, empty, not a transaction event, or from the future.
fn admit(cfg: &Config, payload: &[u8], input: &mut EventInputStats) -> Option<TxRecord> {
    input.lines += 1;
    if payload.len() > cfg.analyze.max_event_bytes {
        input.skipped_too_long += 1;
        return None;
    }
    if payload.trim_ascii().is_empty() {
        return None;
    }
    let future_limit = time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        + i128::from(cfg.analyze.max_future_s) * 1_000_000_000;
    match parse_event(payload) {
        Ok(rec) if i128::from(rec.ts_ns) > future_limit => {
            input.skipped_future += 1;
            None
        }
        Ok(rec) => {
            input.transactions += 1;
            Some(rec)
        }
        Err(skip) => {
            skip.count(input);
            None
        }
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its newline) is in the buffer.
    Full,
    /// The line was longer than the limit; it was read past, not kept.
    TooLong,
    /// End of input.
    End,
}

/// Reads one line of at most `max` bytes into `buf`, never holding more than that.
fn read_line(r: &mut dyn BufRead, max: usize, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let (mut any, mut too_long) = (false, false);
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Full,
            });
        }
        any = true;
        let (part, done) = match memchr::memchr(b'\n', chunk) {
            Some(n) => (&chunk[..n], n + 1),
            None => (chunk, chunk.len()),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let ended = done > part.len();
        r.consume(done);
        if ended {
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lines_are_cut_at_the_limit_and_read_past() {
        let text = b"short\n0123456789abcdef\nlast".to_vec();
        // A reader that gives 3 bytes at a time: lines cross refills.
        let mut r = BufReader::with_capacity(3, &text[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, 8, &mut buf).unwrap(), Line::Full);
        assert_eq!(buf, b"short");
        assert_eq!(read_line(&mut r, 8, &mut buf).unwrap(), Line::TooLong);
        assert!(buf.len() <= 8);
        assert_eq!(read_line(&mut r, 8, &mut buf).unwrap(), Line::Full);
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut r, 8, &mut buf).unwrap(), Line::End);
    }
}
