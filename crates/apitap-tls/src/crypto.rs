//! Record protection with keys from the key log: the TLS 1.2 key block (the PRF of RFC
//! 5246 over HMAC-SHA256/384), the TLS 1.3 traffic keys (HKDF-Expand-Label of RFC 8446
//! over HKDF), and AEAD decryption of records: AES-128-GCM, AES-256-GCM and
//! ChaCha20-Poly1305. The primitives are RustCrypto's (aes-gcm, chacha20poly1305, hkdf,
//! hmac, sha2); keys are zeroized when dropped. `Debug` shows no key material.

use crate::keylog::Secret;
use aes_gcm::aead::{AeadInPlace, KeyInit};

const APPLICATION_DATA: u8 = 23;
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};
use tls_parser::{TlsCipherEnc, TlsCipherEncMode, TlsCipherSuite, TlsPRF};
use zeroize::Zeroizing;

/// The AEAD of a suite apitap decrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadKind {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
}

/// The hash of a suite's PRF or HKDF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashKind {
    fn len(self) -> usize {
        match self {
            HashKind::Sha256 => 32,
            HashKind::Sha384 => 48,
        }
    }
}

/// A cipher suite apitap can decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Its AEAD.
    pub aead: AeadKind,
    /// Its PRF (TLS 1.2) or HKDF (TLS 1.3) hash.
    pub hash: HashKind,
}

impl Suite {
    /// The suite with IANA number `id`, if apitap decrypts it (AEAD suites: AES-GCM and
    /// ChaCha20-Poly1305; not CBC, CCM or stream ciphers).
    pub fn from_id(id: u16) -> Option<Suite> {
        let c = TlsCipherSuite::from_id(id)?;
        let aead = match (c.enc, c.enc_mode, c.enc_size) {
            (TlsCipherEnc::Aes, TlsCipherEncMode::Gcm, 128) => AeadKind::Aes128Gcm,
            (TlsCipherEnc::Aes, TlsCipherEncMode::Gcm, 256) => AeadKind::Aes256Gcm,
            (TlsCipherEnc::Chacha20_Poly1305, _, _) => AeadKind::ChaCha20Poly1305,
            _ => return None,
        };
        let hash = match c.prf {
            TlsPRF::Sha256 | TlsPRF::Default => HashKind::Sha256,
            TlsPRF::Sha384 => HashKind::Sha384,
            _ => return None,
        };
        Some(Suite { aead, hash })
    }

    fn key_len(self) -> usize {
        match self.aead {
            AeadKind::Aes128Gcm => 16,
            AeadKind::Aes256Gcm | AeadKind::ChaCha20Poly1305 => 32,
        }
    }
}

/// HMAC of `parts` under `key`.
fn hmac(hash: HashKind, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    macro_rules! run {
        ($d:ty) => {{
            // HMAC takes keys of any length.
            let Ok(mut mac) = <Hmac<$d> as hmac::KeyInit>::new_from_slice(key) else {
                return Zeroizing::new(Vec::new());
            };
            for p in parts {
                mac.update(p);
            }
            Zeroizing::new(mac.finalize().into_bytes().to_vec())
        }};
    }
    match hash {
        HashKind::Sha256 => run!(Sha256),
        HashKind::Sha384 => run!(Sha384),
    }
}

/// The TLS 1.2 PRF (RFC 5246 section 5): P_hash(secret, label + seed), `len` bytes.
pub fn prf12(hash: HashKind, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Secret {
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.len()));
    let mut a = hmac(hash, secret, &[label, seed]);
    while out.len() < len {
        let block = hmac(hash, secret, &[&a, label, seed]);
        out.extend_from_slice(&block);
        a = hmac(hash, secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) of `secret`, with an empty context.
pub fn expand_label(hash: HashKind, secret: &[u8], label: &[u8], len: usize) -> Option<Secret> {
    let mut info = Vec::with_capacity(10 + label.len());
    info.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    info.push(u8::try_from(6 + label.len()).ok()?);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let mut out = Zeroizing::new(vec![0; len]);
    let ok = match hash {
        HashKind::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .is_ok(),
        HashKind::Sha384 => hkdf::Hkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .is_ok(),
    };
    ok.then_some(out)
}

/// A keyed AEAD.
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    fn new(aead: AeadKind, key: &[u8]) -> Option<Cipher> {
        Some(match aead {
            AeadKind::Aes128Gcm => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            AeadKind::Aes256Gcm => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            AeadKind::ChaCha20Poly1305 => {
                Cipher::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?))
            }
        })
    }

    /// Encrypts `buf` in place, appending the tag.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> bool {
        let n = aes_gcm::Nonce::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.encrypt_in_place(n, aad, buf).is_ok(),
            Cipher::Aes256(c) => c.encrypt_in_place(n, aad, buf).is_ok(),
            Cipher::ChaCha(c) => c.encrypt_in_place(n, aad, buf).is_ok(),
        }
    }

    /// Decrypts `buf` (ciphertext and tag) in place; false when authentication fails.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> bool {
        let n = aes_gcm::Nonce::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
            Cipher::Aes256(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
            Cipher::ChaCha(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
        }
    }
}

/// How a version builds nonces and additional data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// TLS 1.2 AES-GCM: 4-byte salt and an explicit 8-byte nonce per record.
    Tls12Explicit,
    /// TLS 1.2 ChaCha20-Poly1305: 12-byte IV XOR the sequence number.
    Tls12Xor,
    /// TLS 1.3: IV XOR the sequence number; the record header is the additional data and
    /// the content type is inside.
    Tls13,
}

/// Why a record did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than nonce and tag.
    TooShort,
    /// The tag did not verify (wrong key, or records were lost before it).
    Authentication,
}

/// One direction's record protection: its key, IV and sequence number.
pub struct RecordKeys {
    suite: Suite,
    framing: Framing,
    cipher: Cipher,
    iv: Zeroizing<[u8; 12]>,
    seq: u64,
    /// TLS 1.3: the current traffic secret, for KeyUpdate.
    secret: Option<Secret>,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

const TAG: usize = 16;

impl RecordKeys {
    /// TLS 1.3 keys from a traffic secret (handshake or application).
    pub fn tls13(suite: Suite, secret: &[u8]) -> Option<RecordKeys> {
        let key = expand_label(suite.hash, secret, b"key", suite.key_len())?;
        let iv = expand_label(suite.hash, secret, b"iv", 12)?;
        Some(RecordKeys {
            suite,
            framing: Framing::Tls13,
            cipher: Cipher::new(suite.aead, &key)?,
            iv: Zeroizing::new(<[u8; 12]>::try_from(iv.as_slice()).ok()?),
            seq: 0,
            secret: Some(Zeroizing::new(secret.to_vec())),
        })
    }

    /// TLS 1.2 keys, client's and server's, from the master secret and both randoms.
    pub fn tls12(
        suite: Suite,
        master: &[u8],
        client_random: &[u8],
        server_random: &[u8],
    ) -> Option<(RecordKeys, RecordKeys)> {
        let (framing, iv_len) = match suite.aead {
            AeadKind::ChaCha20Poly1305 => (Framing::Tls12Xor, 12),
            _ => (Framing::Tls12Explicit, 4),
        };
        let key_len = suite.key_len();
        let mut seed = Vec::with_capacity(64);
        seed.extend_from_slice(server_random);
        seed.extend_from_slice(client_random);
        let block = prf12(
            suite.hash,
            master,
            b"key expansion",
            &seed,
            2 * (key_len + iv_len),
        );
        let part = |i: usize, len: usize| block.get(i..i + len);
        let make = |key: &[u8], iv: &[u8]| -> Option<RecordKeys> {
            let mut full = Zeroizing::new([0u8; 12]);
            full.get_mut(..iv.len())?.copy_from_slice(iv);
            Some(RecordKeys {
                suite,
                framing,
                cipher: Cipher::new(suite.aead, key)?,
                iv: full,
                seq: 0,
                secret: None,
            })
        };
        let client = make(part(0, key_len)?, part(2 * key_len, iv_len)?)?;
        let server = make(part(key_len, key_len)?, part(2 * key_len + iv_len, iv_len)?)?;
        Some((client, server))
    }

    /// TLS 1.3 KeyUpdate: the next traffic secret and its keys; sequence numbers restart.
    pub fn update(&mut self) -> bool {
        let Some(next) = self
            .secret
            .as_ref()
            .and_then(|s| expand_label(self.suite.hash, s, b"traffic upd", self.suite.hash.len()))
        else {
            return false;
        };
        match RecordKeys::tls13(self.suite, &next) {
            Some(keys) => {
                *self = keys;
                true
            }
            None => false,
        }
    }

    /// The plaintext length of a protected record `record_len` bytes long: exact in TLS
    /// 1.2; in TLS 1.3 assuming no padding (the usual case; padding is not visible).
    pub fn plaintext_len(&self, record_len: u64) -> u64 {
        let overhead = match self.framing {
            Framing::Tls12Explicit => 8 + TAG,
            Framing::Tls12Xor => TAG,
            Framing::Tls13 => TAG + 1,
        };
        record_len.saturating_sub(overhead as u64)
    }

    /// A record went by that could not be opened (lost on the wire, or corrupt): its
    /// sequence number is used up.
    pub fn skip(&mut self) {
        self.seq = self.seq.saturating_add(1);
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = *self.iv;
        for (b, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// Decrypts the record with `header` whose body is `body`, in place, with sequence
    /// number `seq`. On success `body` holds the plaintext and the record's content type
    /// is returned (TLS 1.3: the inner one, padding removed).
    fn open_at(&self, seq: u64, header: &[u8; 5], body: &mut Vec<u8>) -> Result<u8, OpenError> {
        let outer_type = header[0];
        let version = [header[1], header[2]];
        match self.framing {
            Framing::Tls13 => {
                if body.len() < TAG + 1 {
                    return Err(OpenError::TooShort);
                }
                if !self.cipher.open(&self.nonce(seq), header, body) {
                    return Err(OpenError::Authentication);
                }
                // Content, then the real type, then zero padding.
                let end = body
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(OpenError::Authentication)?;
                let inner = body[end];
                body.truncate(end);
                Ok(inner)
            }
            Framing::Tls12Explicit | Framing::Tls12Xor => {
                let explicit = if self.framing == Framing::Tls12Explicit {
                    8
                } else {
                    0
                };
                if body.len() < explicit + TAG {
                    return Err(OpenError::TooShort);
                }
                let plain_len = body.len() - explicit - TAG;
                let mut aad = [0u8; 13];
                aad[..8].copy_from_slice(&seq.to_be_bytes());
                aad[8] = outer_type;
                aad[9..11].copy_from_slice(&version);
                aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
                let nonce = if explicit == 8 {
                    let mut n = *self.iv;
                    n[4..].copy_from_slice(&body[..8]);
                    n
                } else {
                    self.nonce(seq)
                };
                body.drain(..explicit);
                if !self.cipher.open(&nonce, &aad, body) {
                    return Err(OpenError::Authentication);
                }
                Ok(outer_type)
            }
        }
    }

    /// Encrypts `plaintext` as the next record of `content_type`, as a sender would: the
    /// inverse of [`RecordKeys::open`], for tests and benchmarks. None only if the AEAD
    /// refuses (it does not for record sizes).
    pub fn seal(&mut self, content_type: u8, plaintext: &[u8]) -> Option<([u8; 5], Vec<u8>)> {
        let seq = self.seq;
        self.seq += 1;
        let mut body = plaintext.to_vec();
        match self.framing {
            Framing::Tls13 => {
                body.push(content_type);
                let len = u16::try_from(body.len() + TAG).ok()?.to_be_bytes();
                let header = [APPLICATION_DATA, 3, 3, len[0], len[1]];
                self.cipher
                    .seal(&self.nonce(seq), &header, &mut body)
                    .then_some((header, body))
            }
            Framing::Tls12Explicit | Framing::Tls12Xor => {
                let explicit = self.framing == Framing::Tls12Explicit;
                let mut aad = [0u8; 13];
                aad[..8].copy_from_slice(&seq.to_be_bytes());
                aad[8] = content_type;
                aad[9..11].copy_from_slice(&[3, 3]);
                aad[11..].copy_from_slice(&u16::try_from(body.len()).ok()?.to_be_bytes());
                let nonce = if explicit {
                    let mut n = *self.iv;
                    n[4..].copy_from_slice(&seq.to_be_bytes());
                    n
                } else {
                    self.nonce(seq)
                };
                if !self.cipher.seal(&nonce, &aad, &mut body) {
                    return None;
                }
                if explicit {
                    body.splice(0..0, seq.to_be_bytes());
                }
                let len = u16::try_from(body.len()).ok()?.to_be_bytes();
                Some(([content_type, 3, 3, len[0], len[1]], body))
            }
        }
    }

    /// Decrypts the next record. After lost records (`seek` > 0) the next `seek` sequence
    /// numbers are tried too: the tag tells which one is right.
    pub fn open(
        &mut self,
        header: &[u8; 5],
        body: &mut Vec<u8>,
        seek: u64,
    ) -> Result<u8, OpenError> {
        if seek == 0 {
            let r = self.open_at(self.seq, header, body);
            if r.is_ok() {
                self.seq += 1;
            }
            return r;
        }
        let mut last = Err(OpenError::Authentication);
        for seq in self.seq..=self.seq.saturating_add(seek) {
            let mut trial = body.clone();
            last = self.open_at(seq, header, &mut trial);
            if last.is_ok() {
                *body = trial;
                self.seq = seq + 1;
                return last;
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// RFC 8448 section 3: the server's handshake traffic keys.
    #[test]
    fn tls13_keys_match_rfc8448() {
        let secret = unhex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        let key = expand_label(HashKind::Sha256, &secret, b"key", 16).unwrap();
        let iv = expand_label(HashKind::Sha256, &secret, b"iv", 12).unwrap();
        assert_eq!(
            *key,
            unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(*iv, unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));
    }

    #[test]
    fn suites() {
        let s = |id| Suite::from_id(id).map(|s| (s.aead, s.hash));
        assert_eq!(s(0x1301), Some((AeadKind::Aes128Gcm, HashKind::Sha256)));
        assert_eq!(s(0x1302), Some((AeadKind::Aes256Gcm, HashKind::Sha384)));
        assert_eq!(
            s(0x1303),
            Some((AeadKind::ChaCha20Poly1305, HashKind::Sha256))
        );
        assert_eq!(s(0xc02f), Some((AeadKind::Aes128Gcm, HashKind::Sha256)));
        assert_eq!(s(0xc030), Some((AeadKind::Aes256Gcm, HashKind::Sha384)));
        assert_eq!(
            s(0xcca8),
            Some((AeadKind::ChaCha20Poly1305, HashKind::Sha256))
        );
        assert_eq!(s(0x009c), Some((AeadKind::Aes128Gcm, HashKind::Sha256)));
        assert_eq!(s(0xc013), None, "CBC");
        assert_eq!(s(0x1304), None, "CCM");
    }

    #[test]
    fn a_sealed_tls13_record_opens_and_a_wrong_sequence_does_not() {
        let suite = Suite::from_id(0x1301).unwrap();
        let secret = [7u8; 32];
        let mut keys = RecordKeys::tls13(suite, &secret).unwrap();
        // Seal as a sender would: plaintext, inner type 23, padding.
        let key = expand_label(suite.hash, &secret, b"key", 16).unwrap();
        let sender = Aes128Gcm::new_from_slice(&key).unwrap();
        let seal = |seq: u64, text: &[u8]| {
            let mut body = text.to_vec();
            body.extend_from_slice(&[23, 0, 0]);
            let len = (body.len() + TAG) as u16;
            let header = [23, 3, 3, (len >> 8) as u8, len as u8];
            let nonce = keys.nonce(seq);
            sender
                .encrypt_in_place(aes_gcm::Nonce::from_slice(&nonce), &header, &mut body)
                .unwrap();
            (header, body)
        };
        let (h0, b0) = seal(0, b"GET / HTTP/1.1\r\n\r\n");
        let (h1, b1) = seal(1, b"lost");
        let (h2, b2) = seal(2, b"after the loss");
        let _ = (h1, b1);
        let mut b = b0.clone();
        assert_eq!(keys.open(&h0, &mut b, 0), Ok(23));
        assert_eq!(b, b"GET / HTTP/1.1\r\n\r\n");
        let mut b = b2.clone();
        assert_eq!(
            keys.open(&h2, &mut b.clone(), 0),
            Err(OpenError::Authentication)
        );
        assert_eq!(keys.open(&h2, &mut b, 4), Ok(23));
        assert_eq!(b, b"after the loss");
        let mut short = vec![1, 2, 3];
        assert_eq!(keys.open(&h0, &mut short, 0), Err(OpenError::TooShort));
    }

    #[test]
    fn every_suite_and_framing_round_trips_and_tampering_is_caught() {
        for id in [0x1301u16, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8, 0x009c] {
            let suite = Suite::from_id(id).unwrap();
            let (mut tx, mut rx) = if id >> 8 == 0x13 {
                let secret = vec![3u8; suite.hash.len()];
                (
                    RecordKeys::tls13(suite, &secret).unwrap(),
                    RecordKeys::tls13(suite, &secret).unwrap(),
                )
            } else {
                let (c, _) = RecordKeys::tls12(suite, &[5; 48], &[1; 32], &[2; 32]).unwrap();
                let (c2, _) = RecordKeys::tls12(suite, &[5; 48], &[1; 32], &[2; 32]).unwrap();
                (c, c2)
            };
            for text in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0u8; 3000][..], b"x"] {
                let (h, mut b) = tx.seal(23, text).unwrap();
                assert_eq!(rx.open(&h, &mut b, 0), Ok(23), "suite {id:04x}");
                assert_eq!(b, text);
            }
            let (h, mut b) = tx.seal(23, b"tampered").unwrap();
            let last = b.len() - 1;
            b[last] ^= 1;
            assert_eq!(rx.open(&h, &mut b, 0), Err(OpenError::Authentication));
        }
    }

    #[test]
    fn key_update_moves_both_sides_to_the_next_secret() {
        let suite = Suite::from_id(0x1303).unwrap();
        let mut tx = RecordKeys::tls13(suite, &[4u8; 32]).unwrap();
        let mut rx = RecordKeys::tls13(suite, &[4u8; 32]).unwrap();
        let (h, mut b) = tx.seal(23, b"before").unwrap();
        assert_eq!(rx.open(&h, &mut b, 0), Ok(23));
        assert!(tx.update() && rx.update());
        let (h, mut b) = tx.seal(23, b"after").unwrap();
        let mut stale = RecordKeys::tls13(suite, &[4u8; 32]).unwrap();
        assert_eq!(
            stale.open(&h, &mut b.clone(), 4),
            Err(OpenError::Authentication)
        );
        assert_eq!(rx.open(&h, &mut b, 0), Ok(23));
        assert_eq!(b, b"after");
    }

    #[test]
    fn debug_shows_no_keys() {
        let keys = RecordKeys::tls13(Suite::from_id(0x1301).unwrap(), &[9u8; 32]).unwrap();
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains("iv") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
