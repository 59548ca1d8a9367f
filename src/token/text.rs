//! [`ConnectToken`]: the public part of a connect token, what a client
//! holds, and its text form `stt1.<base64url>` (`docs/PROTOCOL.md` 14.3).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::ticket::{Facts, MAX_TICKET_LEN, MAX_TIME, MIN_TICKET_LEN};

/// Token format version (byte 0 of the binary form).
const TOKEN_VERSION: u8 = 1;
/// What the text form starts with.
pub const TOKEN_PREFIX: &str = "stt1.";

/// A connect token, as a client holds it: who it is, until when, for which
/// servers, the key its handshakes use, and the ticket only servers can
/// read. Made by an [`Issuer`](super::Issuer); sent to the client as text
/// ([`encode`](Self::encode), [`parse`](Self::parse)).
///
/// It is a bearer credential until it expires: whoever holds it can
/// connect as its client. Its `Debug` form hides the key and the ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectToken {
    pub(crate) facts: Facts,
    pub(crate) ticket: Vec<u8>,
}

/// Why a token's text could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenParseError {
    /// It does not start with `stt1.`.
    #[error("a connect token starts with \"stt1.\"")]
    Prefix,
    /// Not unpadded base64url after the prefix.
    #[error("a connect token is base64url after \"stt1.\" (character {at} is not)")]
    Base64 {
        /// Offset of the offending character after the prefix.
        at: usize,
    },
    /// Its bytes are not a token of this version.
    #[error("not a connect token of version 1 (malformed {0})")]
    Malformed(&'static str),
}

/// `t` seconds after the epoch (at most [`MAX_TIME`], which every token
/// read or issued respects; beyond, the latest time representable).
pub(crate) fn secs(t: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(t.min(MAX_TIME)))
        .unwrap_or(UNIX_EPOCH)
}

impl ConnectToken {
    /// The application's name for the client.
    pub fn client_id(&self) -> u64 {
        self.facts.client_id
    }

    /// When it was issued.
    pub fn issued_at(&self) -> SystemTime {
        secs(self.facts.issued_at)
    }

    /// When it stops admitting new sessions (sessions already open stay).
    pub fn expires_at(&self) -> SystemTime {
        secs(self.facts.expires_at)
    }

    /// The servers it is valid for (their names, as each server is
    /// configured with).
    pub fn audience(&self) -> &[String] {
        &self.facts.audience
    }

    /// Whether it has expired by this machine's clock.
    pub fn is_expired(&self) -> bool {
        SystemTime::now() >= self.expires_at()
    }

    /// The ticket: the private part, sealed for the servers.
    pub fn ticket(&self) -> &[u8] {
        &self.ticket
    }

    pub(crate) fn client_key(&self) -> &[u8; 32] {
        &self.facts.client_key
    }

    /// The binary form (14.3).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64 + 2 + self.ticket.len() + 64));
        out.push(TOKEN_VERSION);
        self.facts.put(&mut out);
        out.extend_from_slice(&(self.ticket.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.ticket);
        out
    }

    /// The text form, `stt1.` and unpadded base64url: what a backend sends
    /// its client. Secret: it admits whoever holds it.
    pub fn encode(&self) -> Zeroizing<String> {
        let bytes = self.to_bytes();
        let mut out = Zeroizing::new(String::with_capacity(
            TOKEN_PREFIX.len() + bytes.len() * 4 / 3 + 4,
        ));
        out.push_str(TOKEN_PREFIX);
        base64url_encode(&bytes, &mut out);
        out
    }

    /// Reads a token from its binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenParseError> {
        use TokenParseError::Malformed;
        let (&version, rest) = bytes.split_first().ok_or(Malformed("length"))?;
        if version != TOKEN_VERSION {
            return Err(Malformed("version"));
        }
        let (facts, rest) = Facts::take(rest).map_err(Malformed)?;
        let len = rest.get(..2).ok_or(Malformed("length"))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let ticket = &rest[2..];
        if ticket.len() != len || !(MIN_TICKET_LEN..=MAX_TICKET_LEN).contains(&len) {
            return Err(Malformed("ticket"));
        }
        Ok(ConnectToken {
            facts,
            ticket: ticket.to_vec(),
        })
    }

    /// Reads a token from its text form (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, TokenParseError> {
        let body = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenParseError::Prefix)?;
        let bytes = base64url_decode(body)?;
        Self::from_bytes(&bytes)
    }
}

impl FromStr for ConnectToken {
    type Err = TokenParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ConnectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectToken")
            .field("client_id", &self.facts.client_id)
            .field("issued_at", &self.facts.issued_at)
            .field("expires_at", &self.facts.expires_at)
            .field("audience", &self.facts.audience)
            .finish_non_exhaustive()
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
}

fn base64url_decode(text: &str) -> Result<Zeroizing<Vec<u8>>, TokenParseError> {
    let value = |at: usize, c: u8| -> Result<u32, TokenParseError> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(TokenParseError::Base64 { at }),
        }
        .into())
    };
    let text = text.as_bytes();
    // A lone trailing character carries fewer than 8 bits.
    if text.len() % 4 == 1 {
        return Err(TokenParseError::Base64 { at: text.len() - 1 });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 3 / 4));
    for (i, chunk) in text.chunks(4).enumerate() {
        let mut n = 0u32;
        for (j, &c) in chunk.iter().enumerate() {
            n |= value(i * 4 + j, c)? << (18 - 6 * j);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
        // Bits beyond the last byte must be zero (one text per token).
        let used = (chunk.len() - 1) * 8;
        if chunk.len() < 4 && n & ((1 << (24 - used)) - 1) != 0 {
            return Err(TokenParseError::Base64 {
                at: i * 4 + chunk.len() - 1,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut text = String::new();
            base64url_encode(&bytes, &mut text);
            assert!(!text.contains('='));
            assert_eq!(
                &base64url_decode(&text).unwrap()[..],
                &bytes[..],
                "len {len}"
            );
        }
        // RFC 4648 test vectors, unpadded and URL-safe.
        let mut text = String::new();
        base64url_encode(b"foobar", &mut text);
        assert_eq!(text, "Zm9vYmFy");
        text.clear();
        base64url_encode(&[0xfb, 0xff], &mut text);
        assert_eq!(text, "-_8");
    }

    #[test]
    fn base64url_refuses_what_it_would_not_write() {
        assert_eq!(
            base64url_decode("Zm9v+A"),
            Err(TokenParseError::Base64 { at: 4 })
        );
        assert_eq!(
            base64url_decode("Zm9="),
            Err(TokenParseError::Base64 { at: 3 })
        );
        assert!(base64url_decode("Z").is_err());
        // "Zh" decodes to 'f' with non-zero spare bits.
        assert!(base64url_decode("Zh").is_err());
        assert_eq!(&base64url_decode("Zg").unwrap()[..], b"f");
    }

    #[test]
    fn parse_refuses_garbage_without_panicking() {
        for text in ["", "stt1.", "stt2.AAAA", "stt1.AAAA", "stt1.!!!!", "hello"] {
            assert!(ConnectToken::parse(text).is_err(), "{text}");
        }
    }
}
