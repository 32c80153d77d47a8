//! Handshake messages reassembled from the records that carry them (a message may span
//! records, a record may hold several messages), bounded per message.

/// One direction's handshake messages in progress.
#[derive(Debug, Default)]
pub(crate) struct Messages {
    buf: Vec<u8>,
    /// Bytes of an oversized message still to skip.
    skip: usize,
}

/// What one push found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Whole messages: type, 3-byte length, body.
    pub(crate) messages: Vec<Vec<u8>>,
    /// Messages over the bound, skipped.
    pub(crate) too_large: u64,
}

impl Messages {
    /// Appends record payload `data` and takes out every message it completes; messages
    /// longer than `max` are skipped.
    pub(crate) fn push(&mut self, data: &[u8], max: usize) -> Found {
        let mut found = Found::default();
        let skip = self.skip.min(data.len());
        self.skip -= skip;
        self.buf.extend_from_slice(data.get(skip..).unwrap_or(&[]));
        while let Some(&[_, a, b, c]) = self.buf.get(..4) {
            let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if len > max {
                found.too_large += 1;
                let have = self.buf.len() - 4;
                if have >= len {
                    self.buf.drain(..4 + len);
                } else {
                    self.skip = len - have;
                    self.buf.clear();
                }
                continue;
            }
            if self.buf.len() < 4 + len {
                break;
            }
            found.messages.push(self.buf.drain(..4 + len).collect());
        }
        found
    }

    /// Bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Forgets what is in progress (boundaries lost, or memory given back).
    pub(crate) fn clear(&mut self) {
        self.buf = Vec::new();
        self.skip = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_span_records_and_oversized_ones_are_skipped() {
        let mut m = Messages::default();
        let msg = [1u8, 0, 0, 3, 9, 9, 9];
        let big = [2u8, 0, 0, 10];
        let mut stream = msg.to_vec();
        stream.extend_from_slice(&big);
        stream.extend_from_slice(&[0; 10]);
        stream.extend_from_slice(&msg);
        let mut all = Vec::new();
        let mut too_large = 0;
        for piece in stream.chunks(3) {
            let f = m.push(piece, 5);
            all.extend(f.messages);
            too_large += f.too_large;
        }
        assert_eq!(all, vec![msg.to_vec(), msg.to_vec()]);
        assert_eq!(too_large, 1);
        assert_eq!(m.buf.len(), 0);
    }
}
