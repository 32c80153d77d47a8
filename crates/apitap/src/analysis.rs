//! The analytics stage of the sink thread: feeds every released transaction, in output
//! order, to [`apitap_analytics::Analytics`] and emits its alerts right after the event
//! that completed them. Output order is deterministic, so the alerts are too.

use crate::bridge::{alert_event, attach_findings, carries_endpoint, name_endpoint};
use crate::Config;
use anyhow::{Context, Result};
use apitap_analytics::{
    Alert, Analytics, AnalyticsMode, AnalyticsStats, ApiSpec, InventorySnapshot, TxRecord,
};
use apitap_core::endpoint::endpoint_hash;
use apitap_core::{EncodedEvent, Merge, SortKey};
use std::path::{Path, PathBuf};

/// Reads an OpenAPI 3 document (JSON or YAML).
pub fn load_spec(path: &Path) -> Result<ApiSpec> {
    let text = crate::files::read_capped_text(path, "spec", crate::files::MAX_SPEC_BYTES)?;
    ApiSpec::parse(&text).with_context(|| format!("invalid spec {}", path.display()))
}

/// Reads a saved inventory.
pub fn load_inventory(path: &Path) -> Result<InventorySnapshot> {
    let text =
        crate::files::read_capped_text(path, "inventory", crate::files::MAX_INVENTORY_BYTES)?;
    serde_json::from_str(&text).with_context(|| format!("invalid inventory {}", path.display()))
}

/// Writes `snap` to `path` atomically (temporary file, then rename).
pub fn save_inventory(path: &Path, snap: &InventorySnapshot) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(snap)?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The engine `cfg.analytics` describes, with its spec loaded.
pub fn configured_engine(cfg: &Config) -> Result<Analytics> {
    let a = &cfg.analytics;
    let mut engine = Analytics::new(a.clone())?;
    if !a.spec.path.is_empty() {
        engine = engine.with_spec(load_spec(Path::new(&a.spec.path))?);
    }
    Ok(engine)
}

/// [`configured_engine`] with the saved inventory restored (a missing state file is a
/// first start, not an error).
pub fn engine(cfg: &Config) -> Result<Analytics> {
    let a = &cfg.analytics;
    let mut engine = configured_engine(cfg)?;
    if !a.inventory.state_file.is_empty() {
        let path = Path::new(&a.inventory.state_file);
        if path.exists() {
            engine.restore_inventory(&load_inventory(path)?);
        }
    }
    Ok(engine)
}

/// The analytics as the sink thread runs it.
pub(crate) struct Stage {
    engine: Analytics,
    sensor: String,
    state_file: Option<PathBuf>,
    last_key: SortKey,
    alerts: Vec<Alert>,
    save_interval: Option<std::time::Duration>,
    last_save: std::time::Instant,
    /// Counters of engines replaced by a reload.
    base_stats: AnalyticsStats,
    /// Every alert emitted, kept when collecting (`apitap check`).
    collected: Option<Vec<Alert>>,
    /// Last inventory save error (reported once in the summary).
    pub save_error: Option<String>,
    /// Scratch buffer for the escaped endpoint name.
    scratch: Vec<u8>,
}

/// What the analytics of a finished run leave: the engine (inventory, stats) and, when
/// collected, every alert in output order.
pub struct AnalyticsOutcome {
    /// The engine at the end of the run.
    pub engine: Analytics,
    /// Alerts emitted (empty unless collected).
    pub alerts: Vec<Alert>,
}

impl Stage {
    /// `None` when the analytics are off. `collect` keeps a copy of every alert.
    pub fn new(cfg: &Config, collect: bool) -> Result<Option<Stage>> {
        if !cfg.analytics.enabled {
            return Ok(None);
        }
        let state = &cfg.analytics.inventory.state_file;
        Ok(Some(Stage {
            engine: engine(cfg)?,
            sensor: cfg.output.sensor_name.clone(),
            state_file: (!state.is_empty()).then(|| PathBuf::from(state)),
            last_key: SortKey::default(),
            alerts: Vec::new(),
            save_interval: (cfg.analytics.inventory.save_interval_s > 0)
                .then(|| std::time::Duration::from_secs(cfg.analytics.inventory.save_interval_s)),
            last_save: std::time::Instant::now(),
            base_stats: AnalyticsStats::default(),
            collected: collect.then(Vec::new),
            save_error: None,
            scratch: Vec::new(),
        }))
    }

    /// Runs the analytics on the transaction of `ev` (written next by the caller), names
    /// its endpoint as the inventory does, and returns the alerts it completed, keyed
    /// right after it.
    pub fn observe(&mut self, ev: &mut EncodedEvent, record: &TxRecord) -> Vec<EncodedEvent> {
        self.last_key = ev.key;
        // Edge mode (read from the engine: a SIGHUP reload may switch it): only the
        // raw-byte detectors run, their findings go into the event.
        if self.engine.config().mode == AnalyticsMode::Edge {
            let found = self.engine.edge_findings(record);
            // Keyed by host: a host's transactions share a partition, so the member of
            // the centre that owns it holds all of that host's state.
            ev.endpoint_hash = endpoint_hash(record.host.as_deref().unwrap_or(""), "");
            // An auth failure also goes to the auth failures topic keyed by client: the
            // member that counts a client's failures sees them on every host.
            ev.client_key = record
                .auth_failure()
                .map(|_| endpoint_hash(&record.client.ip().to_string(), ""));
            // Every ECS transaction event ends with its `apitap` object (edge mode needs
            // ECS): this cannot fail, and a centre would miss the findings if it did.
            let attached = attach_findings(ev, record.ts_ns, &found);
            debug_assert!(attached, "edge findings not attached");
            if !attached {
                tracing::warn!("edge findings not attached to event {}", record.event_id);
            }
            return Vec::new();
        }
        if let Some(named) = self.engine.process_into(record, &mut self.alerts) {
            if named.learned {
                name_endpoint(
                    ev,
                    record.host.as_deref(),
                    named.endpoint,
                    &mut self.scratch,
                );
            } else {
                // Same shape rules, same settings: the event already carries the name.
                debug_assert!(
                    carries_endpoint(ev, named.endpoint),
                    "event endpoint {:?} is not the inventory's {:?}",
                    ev.endpoint().map(String::from_utf8_lossy),
                    named.endpoint
                );
            }
        }
        self.drain()
    }

    /// Runs the analytics on the TLS connection of `ev`: encrypted services and the posture
    /// rules; returns the alerts it completed, keyed right after it.
    pub fn observe_tls(
        &mut self,
        ev: &EncodedEvent,
        record: &apitap_analytics::TlsRecord,
    ) -> Vec<EncodedEvent> {
        self.last_key = ev.key;
        self.engine.process_tls(record, &mut self.alerts);
        self.drain()
    }

    /// Runs the HTTP/2 attack indicators on the HTTP/2 connection of `ev`; returns the
    /// alerts it completed, keyed right after it.
    pub fn observe_http2(
        &mut self,
        ev: &EncodedEvent,
        record: &apitap_analytics::Http2Record,
    ) -> Vec<EncodedEvent> {
        self.last_key = ev.key;
        self.engine.process_http2(record, &mut self.alerts);
        self.drain()
    }

    /// End of input: closes the open baseline windows and saves the inventory.
    pub fn finish(&mut self) -> Vec<EncodedEvent> {
        let tail = self.engine.finish();
        self.alerts.extend(tail);
        let out = self.drain();
        self.save();
        out
    }

    /// Live runs: saves the inventory when `inventory.save_interval_s` of wall-clock time
    /// has passed since the last save.
    pub fn save_if_due(&mut self) {
        if self
            .save_interval
            .is_some_and(|every| self.last_save.elapsed() >= every)
        {
            self.save();
        }
    }

    /// Saves the inventory to the state file, if one is set; errors are kept, not fatal.
    pub fn save(&mut self) {
        self.last_save = std::time::Instant::now();
        if let Some(path) = &self.state_file {
            if let Err(e) = save_inventory(path, &self.engine.inventory_snapshot()) {
                tracing::warn!("cannot save the inventory: {e:#}");
                self.save_error = Some(format!("{e:#}"));
            }
        }
    }

    /// Swaps in a reconfigured engine (SIGHUP), keeping the inventory. Baselines,
    /// detector windows and suppression start over; counters continue.
    pub fn replace_engine(&mut self, mut engine: Analytics) {
        engine.restore_inventory(&self.engine.inventory_snapshot());
        self.base_stats = self.stats();
        self.engine = engine;
    }

    /// Counters of the engine, merged over SIGHUP reloads (sizes are the current engine's).
    pub fn stats(&self) -> AnalyticsStats {
        let mut s = self.base_stats.clone();
        s.merge(&self.engine.stats());
        s
    }

    /// The engine and the collected alerts.
    pub fn into_outcome(self) -> AnalyticsOutcome {
        AnalyticsOutcome {
            engine: self.engine,
            alerts: self.collected.unwrap_or_default(),
        }
    }

    fn drain(&mut self) -> Vec<EncodedEvent> {
        let out = self
            .alerts
            .iter()
            .map(|a| alert_event(a, self.last_key, &self.sensor))
            .collect();
        match self.collected.as_mut() {
            Some(c) => c.append(&mut self.alerts),
            None => self.alerts.clear(),
        }
        out
    }
}
