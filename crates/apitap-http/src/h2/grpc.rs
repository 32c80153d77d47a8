//! gRPC message framing inside an HTTP/2 body: each message is a 1-byte compressed flag,
//! a 4-byte big-endian length and the message. Only the prefixes are read; messages are
//! counted and sized, never kept.

use apitap_core::MessageCount;

/// One direction's message framing.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    pub count: MessageCount,
    prefix: [u8; 5],
    have: u8,
    /// Bytes of the current message still to come.
    left: u64,
}

impl Framing {
    /// Feeds body bytes.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        if self.count.framing_lost {
            return;
        }
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = (self.left.min(bytes.len() as u64)) as usize;
                self.left -= n as u64;
                bytes = bytes.get(n..).unwrap_or(&[]);
                continue;
            }
            let need = 5 - usize::from(self.have);
            let n = need.min(bytes.len());
            if let (Some(dst), Some(src)) = (
                self.prefix
                    .get_mut(usize::from(self.have)..usize::from(self.have) + n),
                bytes.get(..n),
            ) {
                dst.copy_from_slice(src);
            }
            self.have += n as u8;
            bytes = bytes.get(n..).unwrap_or(&[]);
            if self.have == 5 {
                self.have = 0;
                let [flag, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]);
                match flag {
                    0 | 1 => {
                        self.count.messages = self.count.messages.saturating_add(1);
                        self.count.bytes = self.count.bytes.saturating_add(u64::from(len));
                        self.count.compressed =
                            self.count.compressed.saturating_add(u32::from(flag));
                    }
                    // grpc-web's trailer frame: not a message.
                    0x80 | 0x81 => {}
                    _ => {
                        self.count.framing_lost = true;
                        return;
                    }
                }
                self.left = u64::from(len);
            }
        }
    }

    /// Bytes of the body were lost: the framing cannot be followed further.
    pub(crate) fn lose(&mut self) {
        self.count.framing_lost = true;
    }

    /// The body ended; a message cut short loses the framing.
    pub(crate) fn end(&mut self) -> MessageCount {
        if self.left > 0 || self.have > 0 {
            self.count.framing_lost = true;
        }
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn messages_are_counted_in_any_split() {
        let mut wire = message(0, b"hello");
        wire.extend(message(1, &[7; 300]));
        wire.extend(message(0, b""));
        for split in 0..wire.len() {
            let mut f = Framing::default();
            f.feed(&wire[..split]);
            f.feed(&wire[split..]);
            let c = f.end();
            assert_eq!(
                c,
                MessageCount {
                    messages: 3,
                    bytes: 305,
                    compressed: 1,
                    framing_lost: false
                },
                "split at {split}"
            );
        }
    }

    #[test]
    fn cut_and_bad_prefixes_lose_the_framing() {
        let mut f = Framing::default();
        f.feed(&message(0, b"hello")[..7]);
        assert!(f.end().framing_lost);
        let mut f = Framing::default();
        f.feed(&[9, 0, 0, 0, 1, 0]);
        assert!(f.end().framing_lost);
        let mut f = Framing::default();
        f.feed(&message(0, b"x"));
        f.lose();
        f.feed(&message(0, b"y"));
        assert_eq!(f.end().messages, 1);
    }
}
