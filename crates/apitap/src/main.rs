//! The `apitap` command line.

use anyhow::{Context, Result};
use apitap::{replay_with_progress, Config, Output};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Passive API-security sensor: rebuilds TCP streams, parses HTTP/1.x API calls and writes
/// one JSON event per transaction.
#[derive(Parser, Debug)]
#[command(name = "apitap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay pcap/pcapng files offline; events go to stdout (JSON lines) unless -o is given.
    Replay {
        /// Capture files, merged in timestamp order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write events to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Configuration file (see sensor.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Flow worker threads (default: pipeline.workers, 0 = one per core).
        #[arg(short, long)]
        workers: Option<usize>,
        /// Send events to Kafka at these brokers (host:port,...); overrides `[kafka]
        /// brokers`. With Kafka on, stdout gets no events unless -o is given.
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
        /// Also write the run summary as JSON to this file.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Do not print the summary (or the progress bar) to stderr.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// Exit codes: 0 all input processed; 1 input or output failed part-way (events before the
/// failure were written); 2 nothing could be processed (usage, config, unreadable input).
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; APITAP_LOG (e.g. "info", "apitap_sink=debug") sets the level.
    let filter = tracing_subscriber::EnvFilter::try_from_env("APITAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apitap: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay {
            files,
            output,
            config,
            workers,
            kafka,
            stats_json,
            quiet,
        } => {
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(w) = workers {
                cfg.pipeline.workers = w.max(1);
            }
            if let Some(brokers) = kafka {
                cfg.kafka.get_or_insert_with(Default::default).brokers = brokers;
            }
            cfg.validate()?;
            let out = match (output, cfg.kafka.is_some()) {
                (Some(path), _) => Some(Output::File(path)),
                (None, false) => Some(Output::Stdout),
                (None, true) => None,
            };
            let progress = !quiet && std::io::stderr().is_terminal();
            let summary = replay_with_progress(&files, out, &cfg, progress)?;
            if !quiet {
                eprint!("{}", summary.to_text());
            }
            if let Some(path) = stats_json {
                let text = serde_json::to_string_pretty(&summary.to_json())?;
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            for w in &summary.warnings {
                eprintln!("apitap: warning: {w}");
            }
            let mut code = ExitCode::SUCCESS;
            if let Some(e) = &summary.input_error {
                eprintln!("apitap: error: input stopped early: {e}");
                code = ExitCode::from(1);
            }
            if let Some(e) = &summary.output_error {
                eprintln!("apitap: error: {e}");
                code = ExitCode::from(1);
            }
            if let Some(k) = &summary.kafka {
                let lost = k.dropped + k.too_large + k.undelivered_at_close;
                if lost > 0 {
                    eprintln!(
                        "apitap: error: {lost} events did not reach Kafka ({} dropped by the queue bound, {} too large, {} undelivered at shutdown)",
                        k.dropped, k.too_large, k.undelivered_at_close
                    );
                    code = ExitCode::from(1);
                }
            }
            Ok(code)
        }
    }
}
