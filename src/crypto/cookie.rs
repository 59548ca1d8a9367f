//! Stateless address validation: handshake cookies (AUTH frames).
//!
//! A responder under load must not keep state for a message 1 whose source
//! address may be spoofed. Above a configured number of pending handshakes
//! it answers message 1 with a **cookie challenge** instead: an AUTH frame
//! carrying a 16-byte MAC over the sender's address, the session id and a
//! coarse time epoch, keyed by a secret that never leaves the node. Only a
//! sender that can receive at its address learns the cookie; it repeats its
//! message 1 wrapped in a **cookie echo**, and the responder, recomputing
//! the MAC, keeps state only for a cookie it made for that very address,
//! session and recent epoch. The responder stores nothing per challenge.
//!
//! Wire format (see `docs/PROTOCOL.md`, "Address validation"):
//!
//! ```text
//! challenge (responder → initiator), 61 bytes:
//!   header { type AUTH, flags 0, session id of message 1, stream 0, pn 0, len 32 }
//!   cookie [16] || mac [16]
//! echo (initiator → responder), 186 bytes:
//!   header { type AUTH, flags 0, same session id, stream 0, pn 1, len 16 + 141 }
//!   cookie [16] || message 1, whole (its own header included)
//! ```
//!
//! A challenge is less than half the message 1 that provoked it, so
//! answering spoofed traffic amplifies nothing.
//!
//! The MAC is HMAC-SHA-256 truncated to 128 bits over
//! `epoch (u64 BE) || session id (u64 BE) || address (IPv6 or v4-mapped, 16) ||
//! port (u16 BE)`. Epochs last [`COOKIE_EPOCH`]; a cookie of the current or
//! the previous epoch is accepted, so a cookie lives between one and two
//! epochs.
//!
//! Challenges are authenticated: `mac` is HMAC-SHA-256, truncated to 128
//! bits, over `challenge header (29) || cookie (16) || the whole message 1
//! datagram it answers (141)`, keyed by a [`ChallengeKey`] derived from the
//! network key (`HKDF-SHA256(salt "stt v2 cookie challenge", psk, info
//! "challenge mac")`). So only a member that saw this very message 1 can
//! make an initiator echo it; a non-member on the path cannot make it send
//! anything, and a challenge for another message 1 (a replayed one) is
//! ignored.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ring::hmac;
use ring::rand::SecureRandom;

use crate::crypto::keys::{hkdf_32, NetworkKey};
use crate::frame::{Flags, FrameType, Header, SessionId, HEADER_LEN};

const CHALLENGE_SALT: &[u8] = b"stt v2 cookie challenge";

/// Length of a cookie.
pub const COOKIE_LEN: usize = 16;
/// How long one cookie epoch lasts; a cookie is accepted in its epoch and the
/// next one.
pub const COOKIE_EPOCH: Duration = Duration::from_secs(10);
/// Length of a challenge's MAC.
pub const CHALLENGE_MAC_LEN: usize = 16;
/// Length of a whole challenge datagram.
pub const CHALLENGE_LEN: usize = HEADER_LEN + COOKIE_LEN + CHALLENGE_MAC_LEN;
/// Bytes a cookie echo adds to the message 1 it wraps.
#[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
pub const ECHO_OVERHEAD: usize = HEADER_LEN + COOKIE_LEN;
/// Packet number of a challenge AUTH frame.
pub const CHALLENGE_PN: u64 = 0;
/// Packet number of an echo AUTH frame.
pub const ECHO_PN: u64 = 1;
/// Packet number of a connect-token refusal (`docs/PROTOCOL.md` 14.6).
pub const REFUSAL_PN: u64 = 2;
/// Length of a refusal datagram: header, reason byte, MAC.
pub const REFUSAL_LEN: usize = HEADER_LEN + 1 + CHALLENGE_MAC_LEN;

/// Why a cookie echo was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The datagram is not a well-formed AUTH echo.
    #[error("malformed cookie echo: {0}")]
    Malformed(&'static str),
    /// The cookie was not made for this address and session, or has expired.
    #[error("invalid or expired cookie")]
    Invalid,
}

/// The network's key for authenticating cookie challenges (see the module
/// docs); every member derives the same one from the network key.
#[derive(Clone)]
pub struct ChallengeKey {
    key: hmac::Key,
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    /// The challenge key of `network`.
    pub fn new(network: &NetworkKey) -> Self {
        let secret = hkdf_32(CHALLENGE_SALT, network.psk(), b"challenge mac");
        ChallengeKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret[..]),
        }
    }

    /// The MAC of a challenge (`head_and_cookie`: its header and cookie)
    /// answering `msg1` (the whole message 1 datagram).
    fn mac(&self, head_and_cookie: &[u8], msg1: &[u8]) -> [u8; CHALLENGE_MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(head_and_cookie);
        ctx.update(msg1);
        let tag = ctx.sign();
        let mut out = [0u8; CHALLENGE_MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..CHALLENGE_MAC_LEN]);
        out
    }
}

/// The node's cookie secret. Cheap to share by reference across reactors:
/// making and checking a cookie needs no mutation.
pub struct CookieKey {
    key: hmac::Key,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A fresh random secret.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, ring::error::Unspecified> {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..])?;
        Ok(Self::from_secret(&secret))
    }

    /// A key from a given secret (tests and vectors).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        CookieKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The cookie for `peer` and `session` in `epoch` (see [`epoch_of`]).
    pub fn cookie(&self, epoch: u64, session: SessionId, peer: SocketAddr) -> [u8; COOKIE_LEN] {
        let mut input = [0u8; 8 + 8 + 16 + 2];
        input[..8].copy_from_slice(&epoch.to_be_bytes());
        input[8..16].copy_from_slice(&session.0.to_be_bytes());
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        input[16..32].copy_from_slice(&ip.octets());
        input[32..].copy_from_slice(&peer.port().to_be_bytes());
        let tag = hmac::sign(&self.key, &input);
        let mut out = [0u8; COOKIE_LEN];
        out.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        out
    }

    /// Whether `cookie` was made by this key for `peer` and `session` in
    /// `epoch` or the one before. Constant time in the cookie's content.
    pub fn verify(
        &self,
        epoch: u64,
        session: SessionId,
        peer: SocketAddr,
        cookie: &[u8; COOKIE_LEN],
    ) -> bool {
        let now = ct_eq(&self.cookie(epoch, session, peer), cookie);
        let before = epoch
            .checked_sub(1)
            .is_some_and(|e| ct_eq(&self.cookie(e, session, peer), cookie));
        now | before
    }

    /// The challenge datagram answering `msg1` (a whole message 1
    /// datagram) from `peer` for `session`, authenticated with `mac`.
    pub fn challenge(
        &self,
        epoch: u64,
        session: SessionId,
        peer: SocketAddr,
        mac: &ChallengeKey,
        msg1: &[u8],
    ) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        if let Ok(head) = <&mut [u8; HEADER_LEN]>::try_from(head) {
            auth_header(session, CHALLENGE_PN, COOKIE_LEN + CHALLENGE_MAC_LEN).encode(head);
        }
        rest[..COOKIE_LEN].copy_from_slice(&self.cookie(epoch, session, peer));
        let tag = mac.mac(&out[..HEADER_LEN + COOKIE_LEN], msg1);
        out[HEADER_LEN + COOKIE_LEN..].copy_from_slice(&tag);
        out
    }

    /// Checks a cookie echo from `peer` and returns the message 1 it
    /// carries. The message 1 is not checked here beyond naming the same
    /// session: the handshake does that.
    pub fn open_echo<'a>(
        &self,
        epoch: u64,
        peer: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<&'a [u8], CookieError> {
        let (header, cookie, msg1) = parse_echo(datagram)?;
        if !self.verify(epoch, header.session_id, peer, cookie) {
            return Err(CookieError::Invalid);
        }
        Ok(msg1)
    }
}

/// The cookie epoch `elapsed` after a fixed origin (the node's start).
pub fn epoch_of(elapsed: Duration) -> u64 {
    elapsed.as_secs() / COOKIE_EPOCH.as_secs()
}

/// Splits a cookie echo into its header, cookie and wrapped message 1.
pub fn parse_echo(datagram: &[u8]) -> Result<(Header, &[u8; COOKIE_LEN], &[u8]), CookieError> {
    let header = Header::decode(datagram).map_err(|_| CookieError::Malformed("header"))?;
    if header.frame_type != FrameType::Auth
        || header.packet_number != ECHO_PN
        || header.flags != Flags::EMPTY
        || header.stream_id != 0
    {
        return Err(CookieError::Malformed("not a cookie echo"));
    }
    let body = &datagram[HEADER_LEN..];
    if body.len() != header.payload_len as usize || body.len() < COOKIE_LEN + HEADER_LEN {
        return Err(CookieError::Malformed("length"));
    }
    let (cookie, msg1) = body.split_at(COOKIE_LEN);
    let cookie: &[u8; COOKIE_LEN] = cookie
        .try_into()
        .map_err(|_| CookieError::Malformed("length"))?;
    let inner = Header::decode(msg1).map_err(|_| CookieError::Malformed("message 1"))?;
    if inner.session_id != header.session_id
        || inner.frame_type != FrameType::Handshake
        || inner.packet_number != 1
        || inner.payload_len as usize != msg1.len() - HEADER_LEN
    {
        return Err(CookieError::Malformed(
            "the echo must wrap its own message 1",
        ));
    }
    Ok((header, cookie, msg1))
}

/// The cookie a challenge carries, if `header` (encoded: `header_bytes`)
/// and `payload` (the bytes after the header) are one, authenticated by
/// `mac` for `msg1` (the whole message 1 datagram we sent).
pub fn parse_challenge(
    header: &Header,
    header_bytes: &[u8; HEADER_LEN],
    payload: &[u8],
    mac: &ChallengeKey,
    msg1: &[u8],
) -> Option<[u8; COOKIE_LEN]> {
    let well_formed = header.frame_type == FrameType::Auth
        && header.packet_number == CHALLENGE_PN
        && header.flags == Flags::EMPTY
        && header.stream_id == 0
        && header.payload_len as usize == COOKIE_LEN + CHALLENGE_MAC_LEN
        && payload.len() == COOKIE_LEN + CHALLENGE_MAC_LEN;
    if !well_formed {
        return None;
    }
    let (cookie, tag) = payload.split_at(COOKIE_LEN);
    let mut head_and_cookie = [0u8; HEADER_LEN + COOKIE_LEN];
    head_and_cookie[..HEADER_LEN].copy_from_slice(header_bytes);
    head_and_cookie[HEADER_LEN..].copy_from_slice(cookie);
    let expected = mac.mac(&head_and_cookie, msg1);
    let tag: &[u8; CHALLENGE_MAC_LEN] = tag.try_into().ok()?;
    if !ct_eq(&expected, tag) {
        return None;
    }
    cookie.try_into().ok()
}

/// A refusal of the token message 1 `msg1` (the whole datagram) with
/// reason byte `reason`, authenticated by `mac` (keyed by the token's
/// client key): `docs/PROTOCOL.md` 14.6.
pub fn refusal(
    session: SessionId,
    reason: u8,
    mac: &ChallengeKey,
    msg1: &[u8],
) -> [u8; REFUSAL_LEN] {
    let mut head = [0u8; HEADER_LEN + 1];
    let mut header = [0u8; HEADER_LEN];
    auth_header(session, REFUSAL_PN, 1 + CHALLENGE_MAC_LEN).encode(&mut header);
    head[..HEADER_LEN].copy_from_slice(&header);
    head[HEADER_LEN] = reason;
    let mut out = [0u8; REFUSAL_LEN];
    out[..HEADER_LEN + 1].copy_from_slice(&head);
    out[HEADER_LEN + 1..].copy_from_slice(&mac.mac(&head, msg1));
    out
}

/// The reason byte of a refusal, if `header` (encoded: `header_bytes`) and
/// `payload` are one for `msg1` (the whole message 1 we sent),
/// authenticated by `mac`.
pub fn parse_refusal(
    header: &Header,
    header_bytes: &[u8; HEADER_LEN],
    payload: &[u8],
    mac: &ChallengeKey,
    msg1: &[u8],
) -> Option<u8> {
    let well_formed = header.frame_type == FrameType::Auth
        && header.packet_number == REFUSAL_PN
        && header.flags == Flags::EMPTY
        && header.stream_id == 0
        && header.payload_len as usize == 1 + CHALLENGE_MAC_LEN
        && payload.len() == 1 + CHALLENGE_MAC_LEN;
    if !well_formed {
        return None;
    }
    let mut head = [0u8; HEADER_LEN + 1];
    head[..HEADER_LEN].copy_from_slice(header_bytes);
    head[HEADER_LEN] = payload[0];
    let tag: &[u8; CHALLENGE_MAC_LEN] = payload[1..].try_into().ok()?;
    ct_eq(&mac.mac(&head, msg1), tag).then_some(payload[0])
}

/// A cookie echo wrapping `msg1` (a whole handshake message 1 datagram).
pub fn echo(session: SessionId, cookie: &[u8; COOKIE_LEN], msg1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + COOKIE_LEN + msg1.len());
    auth_header(session, ECHO_PN, COOKIE_LEN + msg1.len()).write(&mut out);
    out.extend_from_slice(cookie);
    out.extend_from_slice(msg1);
    out
}

fn auth_header(session: SessionId, pn: u64, len: usize) -> Header {
    Header {
        frame_type: FrameType::Auth,
        flags: Flags::EMPTY,
        session_id: session,
        stream_id: 0,
        packet_number: pn,
        // A cookie plus a message 1: a few hundred bytes.
        payload_len: len as u32,
    }
}

fn ct_eq(a: &[u8; COOKIE_LEN], b: &[u8; COOKIE_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac_key(seed: u8) -> ChallengeKey {
        ChallengeKey::new(&NetworkKey::from_stretched(&[seed; 32]))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn msg1(id: SessionId) -> Vec<u8> {
        let mut m = Vec::new();
        Header {
            frame_type: FrameType::Handshake,
            flags: Flags::EMPTY,
            session_id: id,
            stream_id: 0,
            packet_number: 1,
            payload_len: 4,
        }
        .write(&mut m);
        m.extend_from_slice(b"m1m1");
        m
    }

    #[test]
    fn a_cookie_binds_address_port_session_and_epoch() {
        let key = CookieKey::from_secret(&[7; 32]);
        let a = addr("127.0.0.1:4000");
        let id = SessionId(0x1122_3344_5566_7788);
        let c = key.cookie(5, id, a);
        assert!(key.verify(5, id, a, &c));
        // Accepted in the next epoch, refused after that.
        assert!(key.verify(6, id, a, &c));
        assert!(!key.verify(7, id, a, &c));
        // Not valid before it was made.
        assert!(!key.verify(4, id, a, &c));
        assert!(!key.verify(5, id, addr("127.0.0.1:4001"), &c));
        assert!(!key.verify(5, id, addr("[::1]:4000"), &c));
        assert!(!key.verify(5, SessionId(id.0 ^ 1), a, &c));
        // Another node's key.
        assert!(!CookieKey::from_secret(&[8; 32]).verify(5, id, a, &c));
        // v4 and its mapped v6 form are one address.
        assert!(key.verify(5, id, addr("[::ffff:127.0.0.1]:4000"), &c));
        let mut bent = c;
        bent[15] ^= 1;
        assert!(!key.verify(5, id, a, &bent));
    }

    #[test]
    fn challenge_then_echo_round_trip() {
        let key = CookieKey::from_secret(&[1; 32]);
        let a = addr("[::1]:9");
        let id = SessionId(42);
        let m1 = msg1(id);
        let mac = mac_key(5);
        let ch = key.challenge(3, id, a, &mac, &m1);
        assert_eq!(ch.len(), 61);
        let header = Header::decode(&ch).expect("our own header");
        let hb: &[u8; HEADER_LEN] = ch[..HEADER_LEN].try_into().unwrap();
        let cookie =
            parse_challenge(&header, hb, &ch[HEADER_LEN..], &mac, &m1).expect("a challenge");
        let e = echo(id, &cookie, &m1);
        assert_eq!(key.open_echo(3, a, &e), Ok(&m1[..]));
        assert_eq!(key.open_echo(4, a, &e), Ok(&m1[..]));
        assert_eq!(key.open_echo(5, a, &e), Err(CookieError::Invalid));
        assert_eq!(
            key.open_echo(3, addr("[::1]:10"), &e),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn malformed_echoes_are_typed_errors() {
        let key = CookieKey::from_secret(&[1; 32]);
        let a = addr("127.0.0.1:1");
        let id = SessionId(9);
        let cookie = key.cookie(0, id, a);
        // Wrapping another session's message 1.
        let e = echo(id, &cookie, &msg1(SessionId(10)));
        assert!(matches!(
            key.open_echo(0, a, &e),
            Err(CookieError::Malformed(_))
        ));
        // Truncated at every length.
        let e = echo(id, &cookie, &msg1(id));
        for n in 0..e.len() {
            assert!(key.open_echo(0, a, &e[..n]).is_err());
        }
        // Trailing bytes after the wrapped message 1.
        let mut padded = msg1(id);
        padded.push(0);
        let e = echo(id, &cookie, &padded);
        assert!(matches!(
            key.open_echo(0, a, &e),
            Err(CookieError::Malformed(_))
        ));
        // A challenge is not an echo.
        let ch = key.challenge(0, id, a, &mac_key(5), &msg1(id));
        assert!(key.open_echo(0, a, &ch).is_err());
        // Garbage.
        assert!(key.open_echo(0, a, &[0xAB; 200]).is_err());
    }

    #[test]
    fn only_well_formed_challenges_are_read() {
        let key = CookieKey::from_secret(&[1; 32]);
        let (m1, mac) = (msg1(SessionId(1)), mac_key(5));
        let ch = key.challenge(0, SessionId(1), addr("127.0.0.1:1"), &mac, &m1);
        let hb: &[u8; HEADER_LEN] = ch[..HEADER_LEN].try_into().unwrap();
        let mut h = Header::decode(&ch).expect("our own header");
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN..], &mac, &m1).is_some());
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN + 1..], &mac, &m1).is_none());
        h.packet_number = 1;
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN..], &mac, &m1).is_none());
        // The header must announce the cookie's length (found by the
        // `cookie` fuzz target: a header saying 0 with 16 bytes after it).
        let mut h = Header::decode(&ch).expect("our own header");
        h.payload_len = 0;
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN..], &mac, &m1).is_none());
    }

    #[test]
    fn challenges_are_authenticated() {
        let key = CookieKey::from_secret(&[1; 32]);
        let (m1, mac) = (msg1(SessionId(1)), mac_key(5));
        let ch = key.challenge(0, SessionId(1), addr("127.0.0.1:1"), &mac, &m1);
        let hb: &[u8; HEADER_LEN] = ch[..HEADER_LEN].try_into().unwrap();
        let h = Header::decode(&ch).expect("our own header");
        // Another network's challenge, or one for another message 1.
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN..], &mac_key(6), &m1).is_none());
        assert!(parse_challenge(&h, hb, &ch[HEADER_LEN..], &mac, &msg1(SessionId(2))).is_none());
        // Any bit of cookie or MAC.
        for i in HEADER_LEN..CHALLENGE_LEN {
            let mut bent = ch;
            bent[i] ^= 1;
            assert!(
                parse_challenge(&h, hb, &bent[HEADER_LEN..], &mac, &m1).is_none(),
                "byte {i}"
            );
        }
        // A forger without the network key: cookie and zeros.
        let mut forged = ch;
        forged[HEADER_LEN + COOKIE_LEN..].fill(0);
        assert!(parse_challenge(&h, hb, &forged[HEADER_LEN..], &mac, &m1).is_none());
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch_of(Duration::ZERO), 0);
        assert_eq!(epoch_of(COOKIE_EPOCH - Duration::from_millis(1)), 0);
        assert_eq!(epoch_of(COOKIE_EPOCH), 1);
    }
}
