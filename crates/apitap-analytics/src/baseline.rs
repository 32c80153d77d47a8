//! Per-endpoint baselines on packet time.
//!
//! Each endpoint has a current bucket (`baseline.bucket_s`, one minute by default) counting
//! requests, 4xx, 5xx, latency and response bytes. A global bucket clock advances with the
//! packet time of the transactions; when it moves on, every endpoint's bucket closes (empty
//! buckets count as rate 0). A closed bucket is compared with EWMA mean and variance of the
//! earlier buckets (once the endpoint is past `learning_period_s` and `min_buckets`), then
//! folded into them. Bounded by `inventory.max_endpoints` (least recently used forgotten).

use std::collections::BTreeMap;
use std::net::IpAddr;

use hashlink::LruCache;
use serde_json::json;

use crate::alert::{Alert, Rule};
use crate::config::BaselineConfig;
use crate::emit::Finding;
use crate::inventory::EndpointKey;
use crate::record::TxRecord;

/// Exponentially weighted mean and variance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ewma {
    /// Mean.
    pub mean: f64,
    /// Variance.
    pub var: f64,
    /// Updates.
    pub n: u64,
}

impl Ewma {
    /// Folds in `x` with weight `alpha`.
    pub fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n += 1;
    }

    /// Standard deviation.
    pub fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    n: u64,
    e4: u64,
    e5: u64,
    dur_sum_ns: u128,
    dur_n: u64,
    resp_bytes: u64,
    client: Option<IpAddr>,
    many_clients: bool,
    evidence: Vec<String>,
    error_evidence: Vec<String>,
}

#[derive(Clone, Debug)]
struct EndpointBaseline {
    first_ns: i64,
    bucket: i64,
    buckets_done: u64,
    cur: Bucket,
    rate: Ewma,
    r4: Ewma,
    r5: Ewma,
    latency_ms: Ewma,
    size: Ewma,
}

/// All endpoint baselines.
#[derive(Debug)]
pub struct Baselines {
    cfg: BaselineConfig,
    learning_ns: i64,
    max_evidence: usize,
    map: LruCache<EndpointKey, EndpointBaseline>,
    clock: Option<i64>,
    /// Baselines forgotten because the table was full.
    pub evicted: u64,
}

impl Baselines {
    /// Empty baselines.
    pub fn new(
        cfg: &BaselineConfig,
        learning_s: u64,
        max_endpoints: usize,
        max_evidence: usize,
    ) -> Baselines {
        Baselines {
            cfg: cfg.clone(),
            learning_ns: i64::try_from(learning_s.saturating_mul(1_000_000_000))
                .unwrap_or(i64::MAX),
            max_evidence,
            map: LruCache::new(max_endpoints.max(1)),
            clock: None,
            evicted: 0,
        }
    }

    fn bucket_ns(&self) -> i64 {
        i64::try_from(self.cfg.bucket_s.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }

    /// Endpoints tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No endpoint tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Advances the bucket clock to `ts_ns` (closing buckets), then counts the transaction.
    pub(crate) fn observe(&mut self, key: &EndpointKey, tx: &TxRecord, out: &mut Vec<Finding>) {
        let idx = tx.ts_ns.div_euclid(self.bucket_ns());
        self.advance_to(idx, out);
        let idx = self.clock.unwrap_or(idx);
        let cap = self.map.capacity();
        if !self.map.contains_key(key) {
            if self.map.len() >= cap && self.map.remove_lru().is_some() {
                self.evicted += 1;
            }
            self.map.insert(
                key.clone(),
                EndpointBaseline {
                    first_ns: tx.ts_ns,
                    bucket: idx,
                    buckets_done: 0,
                    cur: Bucket::default(),
                    rate: Ewma::default(),
                    r4: Ewma::default(),
                    r5: Ewma::default(),
                    latency_ms: Ewma::default(),
                    size: Ewma::default(),
                },
            );
        }
        let max_ev = self.max_evidence;
        let Some(b) = self.map.get_mut(key) else {
            return;
        };
        let c = &mut b.cur;
        c.n += 1;
        let ip = tx.client.ip();
        match c.client {
            None => c.client = Some(ip),
            Some(x) if x != ip => c.many_clients = true,
            _ => {}
        }
        let error = match tx.status {
            Some(400..=499) => {
                c.e4 += 1;
                true
            }
            Some(500..=599) => {
                c.e5 += 1;
                true
            }
            _ => false,
        };
        if let Some(d) = tx.duration_ns {
            c.dur_sum_ns += u128::from(d);
            c.dur_n += 1;
        }
        c.resp_bytes = c.resp_bytes.saturating_add(tx.response_body_bytes);
        if c.evidence.len() < max_ev {
            c.evidence.push(tx.event_id.clone());
        }
        if error && c.error_evidence.len() < max_ev {
            c.error_evidence.push(tx.event_id.clone());
        }
    }

    /// Moves the clock to bucket `idx`, closing every endpoint's older bucket.
    pub(crate) fn advance_to(&mut self, idx: i64, out: &mut Vec<Finding>) {
        match self.clock {
            Some(c) if idx <= c => return,
            None => {
                self.clock = Some(idx);
                return;
            }
            _ => {}
        }
        self.clock = Some(idx);
        let bucket_ns = self.bucket_ns();
        let cfg = &self.cfg;
        let learning_ns = self.learning_ns;
        for (key, b) in self.map.iter_mut() {
            close(cfg, bucket_ns, learning_ns, key, b, idx, out);
        }
    }

    /// Closes every open bucket (end of input).
    pub(crate) fn finish(&mut self, out: &mut Vec<Finding>) {
        if let Some(c) = self.clock {
            self.advance_to(c + 1, out);
        }
    }
}

fn close(
    cfg: &BaselineConfig,
    bucket_ns: i64,
    learning_ns: i64,
    key: &EndpointKey,
    b: &mut EndpointBaseline,
    idx: i64,
    out: &mut Vec<Finding>,
) {
    if b.bucket >= idx {
        return;
    }
    let start = b.bucket.saturating_mul(bucket_ns);
    let end = start.saturating_add(bucket_ns);
    let c = std::mem::take(&mut b.cur);
    let ready = end.saturating_sub(b.first_ns) >= learning_ns
        && b.buckets_done >= u64::from(cfg.min_buckets);
    let n = c.n as f64;
    if ready && c.n > 0 {
        let mut emit = |rule: Rule,
                        count: u64,
                        observed: f64,
                        base: &Ewma,
                        unit: &str,
                        evidence: &[String],
                        msg: String| {
            let mut details = BTreeMap::new();
            details.insert("observed".to_string(), json!(round3(observed)));
            details.insert("baseline_mean".to_string(), json!(round3(base.mean)));
            details.insert("baseline_stddev".to_string(), json!(round3(base.sd())));
            details.insert("unit".to_string(), json!(unit));
            details.insert("bucket_s".to_string(), json!(cfg.bucket_s));
            let mut counts = BTreeMap::new();
            counts.insert("requests".to_string(), c.n);
            counts.insert("4xx".to_string(), c.e4);
            counts.insert("5xx".to_string(), c.e5);
            out.push(Finding {
                keys: vec![key.scoped()],
                alert: Alert {
                    rule,
                    ts_ns: end,
                    severity: rule.default_severity(),
                    id: String::new(),
                    client: if c.many_clients { None } else { c.client },
                    server: None,
                    host: (!key.host.is_empty()).then(|| key.host.clone()),
                    endpoint: Some(key.endpoint()),
                    window_start_ns: start,
                    window_end_ns: end,
                    count,
                    counts,
                    details,
                    evidence: evidence.to_vec(),
                    message: msg,
                    sensors: Vec::new(),
                },
            });
        };
        let ep = key.endpoint();
        if c.n >= cfg.rate_min_requests
            && n >= cfg.rate_factor * b.rate.mean
            && n > b.rate.mean + cfg.sigma * b.rate.sd()
        {
            emit(
                Rule::RateSpike,
                c.n,
                n,
                &b.rate,
                "requests_per_bucket",
                &c.evidence,
                format!(
                    "Request rate spike on {ep}: {} requests in {} s (baseline {:.1})",
                    c.n, cfg.bucket_s, b.rate.mean
                ),
            );
        }
        for (rule, errors, base, class) in [
            (Rule::ServerErrorBurst, c.e5, &b.r5, "5xx"),
            (Rule::ClientErrorBurst, c.e4, &b.r4, "4xx"),
        ] {
            let ratio = errors as f64 / n;
            if errors >= cfg.error_min_errors
                && base.n > 0
                && ratio >= base.mean + (cfg.sigma * base.sd()).max(cfg.error_min_ratio_delta)
            {
                emit(
                    rule,
                    errors,
                    ratio,
                    base,
                    "error_ratio",
                    &c.error_evidence,
                    format!(
                        "{class} burst on {ep}: {errors} of {} requests ({:.0}%, baseline {:.0}%)",
                        c.n,
                        ratio * 100.0,
                        base.mean * 100.0
                    ),
                );
            }
        }
        if c.dur_n >= cfg.latency_min_requests && b.latency_ms.n > 0 {
            let m = c.dur_sum_ns as f64 / c.dur_n as f64 / 1e6;
            let base = &b.latency_ms;
            if m >= cfg.latency_min_ms as f64
                && m >= cfg.latency_factor * base.mean
                && m > base.mean + cfg.sigma * base.sd()
            {
                emit(
                    Rule::LatencySpike,
                    c.dur_n,
                    m,
                    base,
                    "mean_latency_ms",
                    &c.evidence,
                    format!(
                        "Latency spike on {ep}: mean {m:.0} ms over {} requests (baseline {:.0} ms)",
                        c.dur_n, base.mean
                    ),
                );
            }
        }
        if b.size.n > 0 {
            let m = c.resp_bytes as f64 / n;
            let base = &b.size;
            if m >= cfg.size_min_bytes as f64
                && m >= cfg.size_factor * base.mean
                && m > base.mean + cfg.sigma * base.sd()
            {
                emit(
                    Rule::ResponseSizeJump,
                    c.n,
                    m,
                    base,
                    "mean_response_bytes",
                    &c.evidence,
                    format!(
                        "Response size jump on {ep}: mean {m:.0} bytes over {} responses (baseline {:.0})",
                        c.n, base.mean
                    ),
                );
            }
        }
    }
    let alpha = cfg.ewma_alpha;
    b.rate.update(n, alpha);
    if c.n > 0 {
        b.r4.update(c.e4 as f64 / n, alpha);
        b.r5.update(c.e5 as f64 / n, alpha);
        b.size.update(c.resp_bytes as f64 / n, alpha);
    }
    if c.dur_n > 0 {
        b.latency_ms
            .update(c.dur_sum_ns as f64 / c.dur_n as f64 / 1e6, alpha);
    }
    let gap = u64::try_from(idx - b.bucket - 1).unwrap_or(0);
    for _ in 0..gap.min(cfg.max_gap_buckets) {
        b.rate.update(0.0, alpha);
    }
    b.buckets_done = b.buckets_done.saturating_add(1 + gap);
    b.bucket = idx;
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for _ in 0..200 {
            e.update(10.0, 0.1);
        }
        assert!((e.mean - 10.0).abs() < 1e-9);
        assert!(e.sd() < 1e-9);
        let mut e = Ewma::default();
        for i in 0..2000 {
            e.update(if i % 2 == 0 { 8.0 } else { 12.0 }, 0.1);
        }
        assert!((e.mean - 10.0).abs() < 0.5, "{e:?}");
        assert!(e.sd() > 1.0 && e.sd() < 3.0, "{e:?}");
    }
}
