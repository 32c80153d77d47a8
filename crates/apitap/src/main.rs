//! The `apitap` command line.

use anyhow::{Context, Result};
use apitap::live::{run_live, LiveRun, Overrides};
use apitap::{replay_with_progress, Config, Output, RunSummary};
use clap::{CommandFactory, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// Events are built on the worker threads and freed on the sink thread; glibc's allocator
// spent a fifth of the CPU on that cross-thread traffic (malloc_consolidate, arena locks).
// mimalloc's per-thread free lists do not. `no_thp`: with transparent huge pages every page
// mimalloc purges and reuses came back as a zeroed 2 MB page (clear_page was 5% of the CPU).
// Measured on a 120k-transaction capture: 1.0-1.6 s -> 0.72 s, peak RSS 28 -> 30 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Event layout: ecs (default) or ocsf (OCSF 1.1.0 HTTP Activity); overrides
        /// output.format.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// OpenAPI 3 spec (JSON or YAML) to diff traffic against: shadow, zombie and drift
        /// alerts (overrides analytics.spec.path).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// TLS key log (SSLKEYLOGFILE format) to decrypt with; repeat for several (adds to
        /// tls.keylog_files). Must not be readable by other users.
        #[arg(long = "keylog", value_name = "FILE")]
        keylog: Vec<PathBuf>,
    },
    /// Capture live from interfaces until SIGTERM/SIGINT (the sensor daemon). Needs
    /// CAP_NET_RAW to start; drops to `--user` and gives up every capability once the
    /// capture is open. SIGHUP reloads the config file.
    Run {
        /// Configuration file (see sensor.toml); re-read on SIGHUP.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Interface to capture on; repeat for several (overrides capture.interfaces).
        #[arg(short, long = "interface", value_name = "IFACE")]
        interfaces: Vec<String>,
        /// BPF filter (overrides capture.bpf), e.g. "tcp port 80 or tcp port 8080".
        #[arg(long, value_name = "FILTER")]
        bpf: Option<String>,
        /// Write events to this file (JSON lines); default stdout unless Kafka is on.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Send events to Kafka at these brokers (overrides kafka.brokers).
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
        /// User to run as once the capture is open (overrides daemon.user).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Keep running as root when no user is set.
        #[arg(long)]
        allow_root: bool,
        /// Prometheus /metrics and /health address (overrides daemon.metrics_addr; ""
        /// turns it off).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// Flow worker threads (overrides pipeline.workers).
        #[arg(short, long)]
        workers: Option<usize>,
        /// Capture reader threads, sharing each interface through a kernel fanout group
        /// (overrides capture.reader_threads).
        #[arg(long, value_name = "N")]
        reader_threads: Option<usize>,
        /// Log format: text or json (overrides daemon.log_format).
        #[arg(long, value_name = "FORMAT")]
        log_format: Option<String>,
        /// Also write the final summary as JSON to this file.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Event layout: ecs (default) or ocsf; overrides output.format.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// OpenAPI 3 spec to diff traffic against (overrides analytics.spec.path; re-read
        /// on SIGHUP).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// TLS key log (SSLKEYLOGFILE format) to decrypt with; followed as it grows;
        /// repeat for several (adds to tls.keylog_files). Must not be readable by other users.
        #[arg(long = "keylog", value_name = "FILE")]
        keylog: Vec<PathBuf>,
    },
    /// Build the API endpoint inventory of capture files: print it, or export it as an
    /// OpenAPI 3 document.
    Inventory(apitap::cli::InventoryArgs),
    /// CI gate: diff recorded traffic (pcap/pcapng or HAR) against an OpenAPI spec and run
    /// every detector; exit 1 when findings at or above --fail-on are present.
    Check(apitap::cli::CheckArgs),
    /// The central analytics of a sensor fleet: read the events of sensors (in edge mode,
    /// `analytics.mode = "edge"`), merge them in packet-time order and write one set of
    /// alerts, with one inventory.
    Analyze(apitap::analyze::AnalyzeArgs),
    /// List the interfaces libpcap can capture on: name, flags, addresses, description.
    Interfaces,
    /// Read the alert topic: a table on a terminal (JSON lines with --json), filtered by
    /// severity, rule, endpoint, client or time; --follow keeps reading.
    Alerts(apitap::alerts::AlertsArgs),
    /// Write one self-contained HTML report of captures or HAR files: summary, alerts with
    /// their evidence, the endpoint inventory with spec coverage, charts over time.
    Report(apitap::report::ReportArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages, apitap.1 and one per subcommand, into DIR (for packaging).
    #[command(hide = true)]
    Manpages {
        /// Directory to write them into (created if missing).
        dir: PathBuf,
    },
}

/// Exit codes: 0 all input processed; 1 input or output failed part-way (events before the
/// failure were written); 2 nothing could be processed (usage, config, unreadable input).
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apitap: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; APITAP_LOG (e.g. "info", "apitap_sink=debug") overrides `level`.
fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APITAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging("warn", false);
    }
    match cli.command {
        Command::Interfaces => {
            for line in apitap_wire::list_interfaces()? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inventory(args) => apitap::cli::inventory(args),
        Command::Check(args) => apitap::cli::check(args),
        Command::Analyze(args) => apitap::analyze::analyze(args),
        Command::Alerts(args) => apitap::alerts::alerts(args),
        Command::Report(args) => apitap::report::report(args),
        Command::Completions { shell } => {
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "apitap", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("cannot write the completion script")
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Manpages { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            interfaces,
            bpf,
            output,
            kafka,
            user,
            allow_root,
            metrics_addr,
            workers,
            reader_threads,
            log_format,
            stats_json,
            format,
            spec,
            keylog,
        } => {
            let overrides = Overrides {
                keylog,
                interfaces,
                bpf,
                kafka,
                user,
                metrics_addr,
                workers,
                reader_threads,
                allow_root,
                log_format,
                spec,
            };
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            overrides.apply(&mut cfg);
            if let Some(f) = format {
                cfg.output.format = parse_format(&f)?;
            }
            cfg.validate()?;
            init_logging(&cfg.daemon.log_level, cfg.daemon.log_format == "json");
            let out = pick_output(output, cfg.kafka.is_some())?;
            // Created now, while the process may still write where the service user
            // cannot.
            let stats_file = stats_json.as_deref().map(create).transpose()?;
            let summary = run_live(LiveRun {
                cfg,
                config_path: config,
                overrides,
                output: out,
            })?;
            eprint!("{}", summary.to_text());
            finish(&summary, stats_file)
        }
        Command::Replay {
            files,
            output,
            config,
            workers,
            kafka,
            stats_json,
            quiet,
            format,
            spec,
            keylog,
        } => {
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(spec) = spec {
                cfg.analytics.spec.path = spec.display().to_string();
            }
            cfg.tls
                .keylog_files
                .extend(keylog.iter().map(|p| p.display().to_string()));
            if let Some(w) = workers {
                cfg.pipeline.workers = w.max(1);
            }
            if let Some(brokers) = kafka {
                cfg.kafka.get_or_insert_with(Default::default).brokers = brokers;
            }
            if let Some(f) = format {
                cfg.output.format = parse_format(&f)?;
            }
            cfg.validate()?;
            let out = pick_output(output, cfg.kafka.is_some())?;
            // Created before the run: a path that cannot be written is a usage error, not
            // a failure after all the input was processed.
            let stats_file = stats_json.as_deref().map(create).transpose()?;
            let progress = !quiet && std::io::stderr().is_terminal();
            let summary = replay_with_progress(&files, out, &cfg, progress)?;
            if !quiet {
                eprint!("{}", summary.to_text());
            }
            finish(&summary, stats_file)
        }
    }
}

fn parse_format(f: &str) -> Result<apitap_event::EventFormat> {
    match f {
        "ecs" => Ok(apitap_event::EventFormat::Ecs),
        "ocsf" => Ok(apitap_event::EventFormat::Ocsf),
        other => anyhow::bail!("--format {other:?}: use ecs or ocsf"),
    }
}

/// Events go to `-o FILE`, else to Kafka when configured, else to standard output.
fn pick_output(file: Option<PathBuf>, kafka: bool) -> Result<Option<Output>> {
    Ok(match (file, kafka) {
        (Some(path), _) => Some(Output::File(path)),
        (None, true) => None,
        (None, false) => {
            anyhow::ensure!(
                !stdout_was_closed(),
                "standard output is closed and events would go there: give -o FILE \
                 (-o /dev/null to discard them) or --kafka"
            );
            Some(Output::Stdout)
        }
    })
}

/// Whether the process started with standard output closed (`>&-`). Before `main` the
/// Rust runtime opens /dev/null on a closed standard descriptor, after which writes there
/// succeed and vanish and the closed one looks like any /dev/null; so the descriptor is
/// looked at earlier, by [`early::look_at_stdout`].
fn stdout_was_closed() -> bool {
    early::STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Code that runs before the Rust runtime starts (from the ELF `.init_array`, as C
/// constructors do).
#[allow(unsafe_code)]
mod early {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Standard output was closed when the process started.
    pub(super) static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

    // The loader calls every function in .init_array once, on the main thread, before
    // `main` and so before the runtime puts /dev/null on closed standard descriptors.
    #[used]
    #[link_section = ".init_array"]
    static LOOK_AT_STDOUT: extern "C" fn() = look_at_stdout;

    extern "C" fn look_at_stdout() {
        // SAFETY: fcntl(F_GETFD) takes any integer; on a closed descriptor it only fails
        // with EBADF. It touches no memory of ours.
        let rc = unsafe { nix::libc::fcntl(1, nix::libc::F_GETFD) };
        let closed =
            rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::EBADF);
        STDOUT_CLOSED.store(closed, Ordering::Relaxed);
    }
}

fn create(path: &Path) -> Result<(PathBuf, std::fs::File)> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok((path.to_path_buf(), file))
}

/// Writes `--stats-json`, prints warnings and errors, and picks the exit code.
fn finish(summary: &RunSummary, stats_json: Option<(PathBuf, std::fs::File)>) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    if let Some((path, mut file)) = stats_json {
        let text = serde_json::to_string_pretty(&summary.to_json())?;
        if let Err(e) = std::io::Write::write_all(&mut file, (text + "\n").as_bytes()) {
            // The run itself is done and its events are out: a partial failure, not a
            // usage error.
            eprintln!("apitap: error: cannot write {}: {e}", path.display());
            code = ExitCode::from(1);
        }
    }
    for w in &summary.warnings {
        eprintln!("apitap: warning: {w}");
    }
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
