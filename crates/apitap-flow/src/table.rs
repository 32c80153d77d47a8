//! Bounded flow map with least-recently-active order.

use apitap_core::{FlowKey, Timestamp};
use hashlink::LinkedHashMap;

struct Entry<V> {
    last_seen: Timestamp,
    value: V,
}

/// Connections by canonical key, ordered from least to most recently active.
///
/// Lookups that count as activity move a flow to the back, so the front is always the
/// most idle flow: idle expiry and eviction both take from the front in O(1). The hasher
/// is randomly seeded (resists hash flooding by crafted 5-tuples); nothing observable
/// depends on it, since every order this table exposes (eviction, idle expiry, `drain`)
/// is the activity order kept by the linked list, so output stays deterministic.
pub struct FlowTable<V> {
    map: LinkedHashMap<FlowKey, Entry<V>, foldhash::fast::RandomState>,
    max_flows: usize,
}

impl<V> FlowTable<V> {
    /// A table holding at most `max_flows` flows (at least 1).
    pub fn new(max_flows: usize) -> Self {
        FlowTable {
            map: LinkedHashMap::with_hasher(foldhash::fast::RandomState::default()),
            max_flows: max_flows.max(1),
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks up a flow as activity at `now`: it becomes the most recently active and its
    /// last-seen time becomes `max(last_seen, now)`.
    pub fn get_mut(&mut self, key: &FlowKey, now: Timestamp) -> Option<&mut V> {
        let entry = self.map.to_back(key)?;
        if now > entry.last_seen {
            entry.last_seen = now;
        }
        Some(&mut entry.value)
    }

    /// Looks up a flow without counting it as activity.
    pub fn peek_mut(&mut self, key: &FlowKey) -> Option<&mut V> {
        self.map.get_mut(key).map(|e| &mut e.value)
    }

    /// Inserts a new flow as the most recently active. When the table is full, the least
    /// recently active flow is removed first and returned. If `key` is already present,
    /// its old value is replaced and returned instead (nothing else is evicted), so the
    /// caller can close it: no flow is ever dropped silently.
    pub fn insert(&mut self, key: FlowKey, now: Timestamp, value: V) -> Option<(FlowKey, V)> {
        let entry = Entry {
            last_seen: now,
            value,
        };
        if let Some(old) = self.map.remove(&key) {
            self.map.insert(key, entry);
            return Some((key, old.value));
        }
        let evicted = if self.map.len() >= self.max_flows {
            self.map.pop_front().map(|(k, e)| (k, e.value))
        } else {
            None
        };
        self.map.insert(key, entry);
        evicted
    }

    /// Removes a flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<V> {
        self.map.remove(key).map(|e| e.value)
    }

    /// A flow and its last activity time, without counting the lookup as activity.
    pub fn peek_with_last_seen(&mut self, key: &FlowKey) -> Option<(Timestamp, &mut V)> {
        self.map.get_mut(key).map(|e| (e.last_seen, &mut e.value))
    }

    /// Removes and returns the least recently active flow if it has been idle for more
    /// than `idle_ns` at `now`; call in a loop.
    pub fn pop_idle(&mut self, now: Timestamp, idle_ns: u64) -> Option<(FlowKey, V)> {
        let (_, front) = self.map.front()?;
        if now.nanos_since(front.last_seen) > idle_ns {
            self.map.pop_front().map(|(k, e)| (k, e.value))
        } else {
            None
        }
    }

    /// Removes every flow and returns them, least recently active first.
    pub fn drain(&mut self) -> Vec<(FlowKey, V)> {
        self.map.drain().map(|(k, e)| (k, e.value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_core::Endpoint;

    fn key(port: u16) -> FlowKey {
        let ip = "10.0.0.1".parse().unwrap();
        FlowKey::from_packet(Endpoint { ip, port }, Endpoint { ip, port: 80 }, 6).0
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn evicts_least_recently_active_when_full() {
        let mut t2 = FlowTable::new(2);
        assert!(t2.insert(key(1), t(0), "a").is_none());
        assert!(t2.insert(key(2), t(1), "b").is_none());
        // Touch 1 so 2 becomes the least recently active.
        assert_eq!(t2.get_mut(&key(1), t(2)).map(|v| *v), Some("a"));
        let evicted = t2.insert(key(3), t(3), "c");
        assert_eq!(evicted, Some((key(2), "b")));
        assert_eq!(t2.len(), 2);
    }

    #[test]
    fn peek_does_not_refresh() {
        let mut t2 = FlowTable::new(2);
        t2.insert(key(1), t(0), 1);
        t2.insert(key(2), t(1), 2);
        assert_eq!(t2.peek_mut(&key(1)).map(|v| *v), Some(1));
        assert_eq!(t2.insert(key(3), t(2), 3), Some((key(1), 1)));
    }

    #[test]
    fn pop_idle_only_takes_idle_flows_in_order() {
        let mut tb = FlowTable::new(10);
        tb.insert(key(1), t(0), 1);
        tb.insert(key(2), t(50), 2);
        tb.insert(key(3), t(90), 3);
        let idle_ns = 30_000_000;
        assert_eq!(tb.pop_idle(t(85), idle_ns), Some((key(1), 1)));
        assert_eq!(tb.pop_idle(t(85), idle_ns), Some((key(2), 2)));
        assert_eq!(tb.pop_idle(t(85), idle_ns), None);
        assert_eq!(
            tb.peek_with_last_seen(&key(3)).map(|(seen, _)| seen),
            Some(t(90))
        );
    }

    #[test]
    fn last_seen_never_goes_back() {
        let mut tb = FlowTable::new(10);
        tb.insert(key(1), t(100), 1);
        tb.get_mut(&key(1), t(50));
        assert_eq!(
            tb.peek_with_last_seen(&key(1)).map(|(seen, _)| seen),
            Some(t(100))
        );
    }

    #[test]
    fn drain_returns_everything_in_lru_order() {
        let mut tb = FlowTable::new(10);
        tb.insert(key(1), t(0), 1);
        tb.insert(key(2), t(0), 2);
        tb.insert(key(3), t(0), 3);
        tb.get_mut(&key(1), t(1));
        let all = tb.drain();
        assert_eq!(all, vec![(key(2), 2), (key(3), 3), (key(1), 1)]);
        assert!(tb.is_empty());
        assert_eq!(tb.len(), 0);
        assert!(tb.drain().is_empty());
    }

    #[test]
    fn eviction_follows_insertion_order_without_touches() {
        let mut tb = FlowTable::new(3);
        for p in 1..=3 {
            assert!(tb.insert(key(p), t(i64::from(p)), p).is_none());
        }
        assert_eq!(tb.insert(key(4), t(4), 4), Some((key(1), 1)));
        assert_eq!(tb.insert(key(5), t(5), 5), Some((key(2), 2)));
        assert_eq!(tb.len(), 3);
        assert_eq!(tb.remove(&key(4)), Some(4));
        assert_eq!(tb.remove(&key(4)), None);
        // Room again: no eviction.
        assert!(tb.insert(key(6), t(6), 6).is_none());
        assert_eq!(tb.drain(), vec![(key(3), 3), (key(5), 5), (key(6), 6)]);
    }

    #[test]
    fn reinsert_returns_replaced_value_and_evicts_nothing() {
        let mut tb = FlowTable::new(2);
        tb.insert(key(1), t(0), "a");
        tb.insert(key(2), t(1), "b");
        assert_eq!(tb.insert(key(1), t(2), "a2"), Some((key(1), "a")));
        assert_eq!(tb.len(), 2);
        assert_eq!(
            tb.peek_with_last_seen(&key(1)).map(|(seen, _)| seen),
            Some(t(2))
        );
        // key 1 is now the most recent: 2 goes first.
        assert_eq!(tb.insert(key(3), t(3), "c"), Some((key(2), "b")));
    }

    #[test]
    fn get_mut_refreshes_last_seen_and_pop_idle_respects_it() {
        let mut tb = FlowTable::new(10);
        tb.insert(key(1), t(0), 1);
        tb.insert(key(2), t(10), 2);
        *tb.get_mut(&key(1), t(20)).unwrap() += 100;
        assert_eq!(
            tb.peek_with_last_seen(&key(1)).map(|(seen, _)| seen),
            Some(t(20))
        );
        let idle_ns = 5_000_000;
        // key 2 (last seen 10 ms) is idle at 16 ms; key 1 (20 ms) is not.
        assert_eq!(tb.pop_idle(t(16), idle_ns), Some((key(2), 2)));
        assert_eq!(tb.pop_idle(t(16), idle_ns), None);
        // Exactly idle_ns is not "longer than".
        assert_eq!(tb.pop_idle(t(25), idle_ns), None);
        assert_eq!(tb.pop_idle(t(26), idle_ns), Some((key(1), 101)));
        assert!(tb.pop_idle(t(1000), idle_ns).is_none());
        assert!(tb.get_mut(&key(1), t(0)).is_none());
    }

    #[test]
    fn zero_capacity_holds_one_flow() {
        let mut tb = FlowTable::new(0);
        assert!(tb.insert(key(1), t(0), 1).is_none());
        assert_eq!(tb.insert(key(2), t(0), 2), Some((key(1), 1)));
        assert_eq!(tb.len(), 1);
    }
}
