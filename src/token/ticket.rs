//! The ticket: the private part of a connect token, sealed under an issuing
//! key for the servers (`docs/PROTOCOL.md` 14.2). Its plaintext codec, and
//! sealing and opening.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use super::IssuingKey;
use crate::crypto::keys::hkdf_32;

/// Ticket format version (byte 0).
pub(crate) const TICKET_VERSION: u8 = 1;
/// Bytes before the ciphertext: version, key id, salt.
pub(crate) const TICKET_HEAD: usize = 1 + 4 + 16;
/// The AEAD tag.
const TAG_LEN: usize = 16;
/// Fixed plaintext fields: client id, issued at, expires at, client key,
/// audience count, data length.
const FIXED_PLAIN: usize = 8 + 8 + 8 + 32 + 1 + 2;
/// The smallest ticket: one one-byte audience entry, no data.
pub const MIN_TICKET_LEN: usize = TICKET_HEAD + FIXED_PLAIN + 2 + TAG_LEN;
/// The largest ticket a server reads (a token message 1 stays under
/// 1200 bytes with it, and its cookie echo too).
pub const MAX_TICKET_LEN: usize = 1000;
/// Most audience entries a token names.
pub const MAX_AUDIENCE: usize = 8;
/// Most bytes of application data a token carries.
pub const MAX_DATA_LEN: usize = 512;
/// The latest time a token may name, seconds since the Unix epoch: the
/// end of year 9999. Later times are refused as malformed, so that every
/// time a token carries is a `SystemTime` on every platform.
pub const MAX_TIME: u64 = 253_402_300_799;

const TICKET_KEY_INFO: &[u8] = b"stt v1 ticket";

/// What a token and its ticket both say (`docs/PROTOCOL.md` 14.2, 14.3):
/// who the client is, when the token is valid, the key its handshakes use,
/// and the servers it is for. Written and read the same way in both.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub client_id: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub client_key: Zeroizing<[u8; 32]>,
    pub audience: Vec<String>,
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("client_id", &self.client_id)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Facts {
    /// Appends them: the three times, the key, the audience. The caller has
    /// checked the limits.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.client_id.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.client_key[..]);
        put_audience(out, &self.audience);
    }

    /// Reads them at the front of `input`, and the rest after them; what is
    /// malformed (`"length"`, `"audience"`, `"lifetime"`: an expiry not
    /// after the issue or beyond [`MAX_TIME`]).
    pub(crate) fn take(input: &[u8]) -> Result<(Self, &[u8]), &'static str> {
        let fixed = input.get(..56).ok_or("length")?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut client_key = Zeroizing::new([0u8; 32]);
        client_key.copy_from_slice(&fixed[24..56]);
        let (audience, rest) = take_audience(&input[56..]).ok_or("audience")?;
        let facts = Facts {
            client_id: u64_at(0),
            issued_at: u64_at(8),
            expires_at: u64_at(16),
            client_key,
            audience,
        };
        if facts.expires_at <= facts.issued_at || facts.expires_at > MAX_TIME {
            return Err("lifetime");
        }
        Ok((facts, rest))
    }
}

/// What a ticket says: the token's facts and the application data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketContents {
    pub facts: Facts,
    pub data: Vec<u8>,
}

/// Appends the audience as the ticket and the token write it: a count, then
/// length-prefixed entries. The caller has checked the limits.
fn put_audience(out: &mut Vec<u8>, audience: &[String]) {
    out.push(audience.len() as u8);
    for name in audience {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
}

/// Reads an audience list at the front of `input`; the rest after it.
fn take_audience(input: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let (&n, mut rest) = input.split_first()?;
    if n == 0 || usize::from(n) > MAX_AUDIENCE {
        return None;
    }
    let mut names = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&len, after) = rest.split_first()?;
        if len == 0 || after.len() < usize::from(len) {
            return None;
        }
        let (name, after) = after.split_at(usize::from(len));
        names.push(std::str::from_utf8(name).ok()?.to_owned());
        rest = after;
    }
    Some((names, rest))
}

impl TicketContents {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(FIXED_PLAIN + 64 + self.data.len()));
        self.facts.put(&mut out);
        out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    fn decode(plain: &[u8]) -> Option<Self> {
        let (facts, rest) = Facts::take(plain).ok()?;
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let data = rest.get(2..)?;
        if len > MAX_DATA_LEN || data.len() != len {
            return None;
        }
        Some(TicketContents {
            facts,
            data: data.to_vec(),
        })
    }
}

fn ticket_key(issuing: &IssuingKey, salt: &[u8]) -> Option<LessSafeKey> {
    let key = hkdf_32(salt, issuing.secret(), TICKET_KEY_INFO);
    Some(LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &key[..]).ok()?,
    ))
}

/// Seals `contents` under `issuing` with `salt` (16 random bytes, fresh
/// per token). `None` if the ticket would exceed [`MAX_TICKET_LEN`] (the
/// issuer checks the limits first) or the AEAD refused.
pub(crate) fn seal(
    issuing: &IssuingKey,
    salt: &[u8; 16],
    contents: &TicketContents,
) -> Option<Vec<u8>> {
    let plain = contents.encode();
    let len = TICKET_HEAD + plain.len() + TAG_LEN;
    if len > MAX_TICKET_LEN {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.push(TICKET_VERSION);
    out.extend_from_slice(&issuing.key_id().to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(&plain);
    let (head, body) = out.split_at_mut(TICKET_HEAD);
    let tag = ticket_key(issuing, salt)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(&head[..]),
            body,
        )
        .ok()?;
    out.extend_from_slice(tag.as_ref());
    Some(out)
}

/// The key id a ticket names, if it is a ticket of a version this build
/// reads and of an acceptable length.
pub(crate) fn key_id_of(ticket: &[u8]) -> Option<u32> {
    if !(MIN_TICKET_LEN..=MAX_TICKET_LEN).contains(&ticket.len()) || ticket[0] != TICKET_VERSION {
        return None;
    }
    Some(u32::from_be_bytes(ticket[1..5].try_into().ok()?))
}

/// The ticket's salt (its id), for a ticket [`key_id_of`] accepted.
pub(crate) fn salt_of(ticket: &[u8]) -> [u8; 16] {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&ticket[5..TICKET_HEAD]);
    salt
}

/// Opens `ticket` with `issuing` (the key its key id names): its contents,
/// if it authenticates and is well formed.
pub(crate) fn open(issuing: &IssuingKey, ticket: &[u8]) -> Option<TicketContents> {
    key_id_of(ticket)?;
    let (head, body) = ticket.split_at(TICKET_HEAD);
    let mut buf = Zeroizing::new(body.to_vec());
    let plain = ticket_key(issuing, &head[5..])?
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(head),
            &mut buf[..],
        )
        .ok()?;
    TicketContents::decode(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> TicketContents {
        TicketContents {
            facts: Facts {
                client_id: 42,
                issued_at: 1_000,
                expires_at: 1_600,
                client_key: Zeroizing::new([9; 32]),
                audience: vec!["eu-1".into(), "ws://game.example:8081/".into()],
            },
            data: b"role=player".to_vec(),
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let key = IssuingKey::from_bytes([5; 32]);
        let ticket = seal(&key, &[1; 16], &contents()).unwrap();
        assert_eq!(key_id_of(&ticket), Some(key.key_id()));
        assert_eq!(open(&key, &ticket), Some(contents()));
    }

    #[test]
    fn every_flipped_bit_and_other_keys_fail() {
        let key = IssuingKey::from_bytes([5; 32]);
        let ticket = seal(&key, &[1; 16], &contents()).unwrap();
        for i in 0..ticket.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = ticket.clone();
                bad[i] ^= bit;
                assert_eq!(open(&key, &bad), None, "byte {i}");
            }
        }
        assert_eq!(open(&IssuingKey::from_bytes([6; 32]), &ticket), None);
        assert_eq!(open(&key, &ticket[..ticket.len() - 1]), None);
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        let good = contents().encode();
        assert!(TicketContents::decode(&good).is_some());
        for cut in 0..good.len() {
            assert!(TicketContents::decode(&good[..cut]).is_none(), "cut {cut}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(TicketContents::decode(&trailing).is_none());
        let mut backwards = contents();
        backwards.facts.expires_at = backwards.facts.issued_at;
        assert!(TicketContents::decode(&backwards.encode()).is_none());
        let mut no_audience = good.to_vec();
        no_audience[56] = 0;
        assert!(TicketContents::decode(&no_audience).is_none());
    }
}
