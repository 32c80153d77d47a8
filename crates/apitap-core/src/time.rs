//! Packet time. Every timeout and window in apitap runs on these, never on the wall clock.

use std::fmt;

/// Nanoseconds since the Unix epoch, as read from the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from seconds and nanoseconds.
    pub fn from_parts(secs: i64, nanos: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    /// Builds a timestamp from milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// `self - earlier` in nanoseconds, never negative.
    pub fn nanos_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// This time plus `ms` milliseconds.
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        let add = i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(add))
    }

    /// Writes RFC 3339 UTC with microseconds, e.g. `2024-05-01T12:00:00.123456Z`.
    pub fn write_rfc3339_micros(self, out: &mut String) {
        let secs = self.0.div_euclid(1_000_000_000);
        let micros = self.0.rem_euclid(1_000_000_000) / 1_000;
        let Ok(dt) = ::time::OffsetDateTime::from_unix_timestamp(secs) else {
            out.push_str("1970-01-01T00:00:00.000000Z");
            return;
        };
        let mut buf = itoa::Buffer::new();
        let year = dt.year();
        pad(out, buf.format(year), 4);
        out.push('-');
        pad(out, buf.format(u8::from(dt.month())), 2);
        out.push('-');
        pad(out, buf.format(dt.day()), 2);
        out.push('T');
        pad(out, buf.format(dt.hour()), 2);
        out.push(':');
        pad(out, buf.format(dt.minute()), 2);
        out.push(':');
        pad(out, buf.format(dt.second()), 2);
        out.push('.');
        pad(out, buf.format(micros), 6);
        out.push('Z');
    }
}

fn pad(out: &mut String, digits: &str, width: usize) {
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(32);
        self.write_rfc3339_micros(&mut s);
        f.write_str(&s)
    }
}

/// Where in the capture something happened: the packet's global index and its time.
///
/// The index counts packets in read order (1-based) across all input files, so it is the
/// same whatever the worker count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketRef {
    /// Global packet number, 1-based, in read order.
    pub index: u64,
    /// Capture timestamp of that packet.
    pub ts: Timestamp,
}

/// Total order of output events: a packet index (where the transaction started, or where
/// it completed if that was much later), then the flow, then the transaction's ordinal in
/// the flow. Independent of worker count and thread timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    /// Index of the packet that delivered the first byte of the transaction.
    pub packet: u64,
    /// Index of the first packet of the transaction's flow (unique per flow); 0 until the
    /// flow stage fills it in.
    pub flow: u64,
    /// Transaction number within its flow (0-based).
    pub ordinal: u32,
}

impl SortKey {
    /// A key above every real key.
    pub const MAX: SortKey = SortKey {
        packet: u64::MAX,
        flow: u64::MAX,
        ordinal: u32::MAX,
    };

    /// The lowest key at packet index `packet`.
    pub fn at_packet(packet: u64) -> SortKey {
        SortKey {
            packet,
            flow: 0,
            ordinal: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_micros() {
        let ts = Timestamp::from_parts(1_714_564_800, 123_456_789);
        assert_eq!(ts.to_string(), "2024-05-01T12:00:00.123456Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn negative_and_huge_times_do_not_panic() {
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
        let _ = Timestamp(i64::MAX).to_string();
        let _ = Timestamp(i64::MIN).to_string();
    }

    #[test]
    fn nanos_since_saturates() {
        assert_eq!(Timestamp(5).nanos_since(Timestamp(10)), 0);
        assert_eq!(Timestamp(10).nanos_since(Timestamp(5)), 5);
    }

    #[test]
    fn sort_key_orders_by_packet_then_flow_then_ordinal() {
        let key = |packet, flow, ordinal| SortKey {
            packet,
            flow,
            ordinal,
        };
        let (a, b, c, d) = (key(1, 9, 9), key(2, 1, 5), key(2, 2, 0), key(2, 2, 1));
        assert!(a < b && b < c && c < d && d < SortKey::MAX);
        assert!(SortKey::at_packet(2) < b);
    }
}
