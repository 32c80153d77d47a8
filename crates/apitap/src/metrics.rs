//! The telemetry thread of a live sensor: a small tokio runtime serving `/metrics`
//! (Prometheus text) and `/health` over HTTP/1.1 (hyper), and writing a one-line stats
//! summary to the log every `daemon.stats_interval_s`.

use crate::telemetry::Shared;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The running telemetry thread.
pub struct Telemetry {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Telemetry {
    /// Stops serving and waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        if self.thread.join().is_err() {
            tracing::error!("the telemetry thread panicked");
        }
    }
}

/// Starts the telemetry thread. `listener` (already bound, non-blocking) serves the
/// endpoints when given; the stats line is logged every `interval_s` seconds (0: never;
/// re-read each time so SIGHUP can change it).
pub fn spawn(
    listener: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    interval_s: Arc<AtomicU64>,
) -> Result<Telemetry> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the telemetry runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("apitap-telemetry".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(l) = listener {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(serve(l, Arc::clone(&shared), stop_rx.clone()));
                        }
                        Err(e) => tracing::error!("metrics endpoint not started: {e}"),
                    }
                }
                stats_log(shared, interval_s, stop_rx).await;
            });
        })
        .context("cannot start the telemetry thread")?;
    Ok(Telemetry {
        stop: stop_tx,
        thread,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(respond(&shared, &req)) }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// `/metrics`, `/health`, or 404.
fn respond(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.prometheus(),
        ),
        ("GET", "/health") => {
            let (healthy, body) = health(shared);
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", body)
        }
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /health\n".into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Healthy while capturing and the output works.
fn health(shared: &Shared) -> (bool, String) {
    let summary = shared.summary();
    let stopping = shared.stopping.load(Ordering::Relaxed);
    let last = shared.last_packet_unix_s.load(Ordering::Relaxed);
    let age = (last > 0).then(|| crate::live::unix_now_s().saturating_sub(last));
    let output_error = summary.output_error.clone();
    let healthy = !stopping && output_error.is_none();
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "stopping": stopping,
        "uptime_s": shared.uptime_s().round(),
        "packets": summary.decode.packets,
        "last_packet_age_s": age,
        "transactions": summary.workers.transactions.total,
        "output_error": output_error,
    });
    (healthy, format!("{body}\n"))
}

async fn stats_log(
    shared: Arc<Shared>,
    interval_s: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut prev = Totals::default();
    let mut last = tokio::time::Instant::now();
    loop {
        let secs = interval_s.load(Ordering::Relaxed);
        let wait = Duration::from_secs(if secs == 0 { 1 } else { secs });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if secs == 0 {
            continue;
        }
        let now = Totals::of(&shared);
        let dt = last.elapsed().as_secs_f64().max(1e-3);
        last = tokio::time::Instant::now();
        tracing::info!(
            "stats: {:.0} packets/s, {:.0} transactions/s, {:.0} events/s; kernel drops {} (+{}), queue drops {} (+{}), active flows {}, open transactions {}",
            now.packets.saturating_sub(prev.packets) as f64 / dt,
            now.transactions.saturating_sub(prev.transactions) as f64 / dt,
            now.events.saturating_sub(prev.events) as f64 / dt,
            now.kernel_drops,
            now.kernel_drops.saturating_sub(prev.kernel_drops),
            now.queue_drops,
            now.queue_drops.saturating_sub(prev.queue_drops),
            now.active_flows,
            now.open_transactions,
        );
        prev = now;
    }
}

#[derive(Default)]
struct Totals {
    packets: u64,
    transactions: u64,
    events: u64,
    kernel_drops: u64,
    queue_drops: u64,
    active_flows: u64,
    open_transactions: u64,
}

impl Totals {
    fn of(shared: &Shared) -> Totals {
        let s = shared.summary();
        let g = shared.gauges();
        Totals {
            packets: s.decode.packets,
            transactions: s.workers.transactions.total,
            events: s.events_written + s.kafka.as_ref().map_or(0, |k| k.delivered),
            kernel_drops: s.interfaces.iter().map(|i| i.kernel_dropped).sum(),
            queue_drops: s.queue_dropped_packets,
            active_flows: g.active_flows,
            open_transactions: g.open_transactions,
        }
    }
}
