//! Object id enumeration (BOLA): one client walking many distinct object ids of one
//! endpoint within a window.

use super::{Burst, Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{secs_ns, Finding, Gate};
use crate::inventory::EndpointKey;
use crate::record::TxRecord;
use apitap_core::stable_hash;
use foldhash::HashSet;
use hashlink::LruCache;
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, Default)]
struct BolaState {
    ids: VecDeque<(i64, u64, u16)>,
    set: HashSet<u64>,
    evidence: VecDeque<String>,
}

/// Object id enumeration per (client, endpoint).
#[derive(Debug)]
pub(crate) struct BolaDetector {
    map: LruCache<u64, BolaState>,
    pub evicted: u64,
}

impl BolaDetector {
    pub(crate) fn new(max_keys: usize) -> BolaDetector {
        BolaDetector {
            map: LruCache::new(max_keys.max(1)),
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Counts a distinct object id; reports when the client reached `threshold`
    /// distinct ids of the endpoint within the window.
    pub(crate) fn count(
        &mut self,
        tx: &TxRecord,
        key: &EndpointKey,
        object: u64,
        threshold: usize,
        window_ns: i64,
        max_evidence: usize,
    ) -> Option<Burst> {
        let ip = match tx.client.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let k = stable_hash(&[
            &ip,
            key.host.as_bytes(),
            key.method.as_bytes(),
            key.template.as_bytes(),
        ]);
        if !self.map.contains_key(&k) {
            if self.map.len() >= self.map.capacity() && self.map.remove_lru().is_some() {
                self.evicted += 1;
            }
            self.map.insert(k, BolaState::default());
        }
        let st = self.map.get_mut(&k)?;
        let horizon = tx.ts_ns.saturating_sub(window_ns);
        while let Some(&(t, id, _)) = st.ids.front() {
            if t >= horizon {
                break;
            }
            st.ids.pop_front();
            st.set.remove(&id);
        }
        if st.set.contains(&object) || st.set.len() >= threshold {
            return None;
        }
        st.set.insert(object);
        st.ids.push_back((tx.ts_ns, object, tx.status.unwrap_or(0)));
        st.evidence.push_back(tx.event_id.clone());
        while st.evidence.len() > max_evidence {
            st.evidence.pop_front();
        }
        if st.set.len() < threshold {
            return None;
        }
        let mut by_status = BTreeMap::new();
        for (_, _, s) in &st.ids {
            let class = if *s == 0 {
                "none"
            } else {
                crate::inventory::status_class(*s)
            };
            *by_status.entry(class.to_string()).or_insert(0) += 1;
        }
        Some(Burst {
            count: st.set.len() as u64,
            start_ns: st.ids.front().map_or(tx.ts_ns, |(t, _, _)| *t),
            end_ns: tx.ts_ns,
            by_status,
            evidence: st.evidence.iter().cloned().collect(),
            // One endpoint: the engine names its sensors.
            sensors: Vec::new(),
        })
    }
}

impl Detector for BolaDetector {
    fn observe(&mut self, cx: &TxContext<'_>, _: &mut Gate, out: &mut Vec<Finding>) {
        let Some(object) = cx.object_key else {
            return;
        };
        let b = &cx.cfg.bola;
        let Some(burst) = self.count(
            cx.tx,
            cx.key,
            object,
            b.distinct_ids,
            secs_ns(b.window_s),
            cx.cfg.max_evidence,
        ) else {
            return;
        };
        let client = cx.tx.client.ip();
        let mut alert = cx.alert(
            Rule::ObjectEnumeration,
            format!(
                "Client {client} requested {} distinct object ids of {} within {} s",
                burst.count, cx.endpoint, b.window_s
            ),
        );
        alert.client = Some(client);
        burst.fill(&mut alert);
        out.push(Finding::new(alert, format!("{client}|{}", cx.scoped)));
    }
}
