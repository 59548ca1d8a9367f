//! Target `cookie`: the address-validation parsers of `stt::crypto::cookie`
//! on arbitrary bytes, as a responder under load sees them from anyone.
//!
//! The first input byte picks the source port and the epoch; the rest is the
//! datagram. Besides "never panics", it checks:
//!
//! - `open_echo` accepts a datagram only if its cookie is the one the key makes
//!   for that source, that session and this epoch or the one before, and it
//!   then returns exactly the bytes after the cookie;
//! - a datagram that `parse_challenge` reads re-encodes to a challenge with
//!   the same cookie;
//! - the genuine echo of a genuine challenge is accepted whatever the fuzz
//!   data, and a one-bit change to its cookie is refused.

use std::net::SocketAddr;

use stt::crypto::cookie::{self, CookieKey, COOKIE_LEN};
use stt::frame::{Header, SessionId, HEADER_LEN};

/// The fixed key of this target.
pub fn key() -> CookieKey {
    CookieKey::from_secret(&[0x42; 32])
}

/// Runs the parsers on `data`.
pub fn run(data: &[u8]) {
    let Some((&first, datagram)) = data.split_first() else {
        return;
    };
    let key = key();
    let epoch = u64::from(first >> 4);
    let peer = SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(first & 0x0f)));
    if let Ok(msg1) = key.open_echo(epoch, peer, datagram) {
        let header = Header::decode(datagram).expect("an accepted echo has a header");
        let cookie: [u8; COOKIE_LEN] = datagram[HEADER_LEN..HEADER_LEN + COOKIE_LEN]
            .try_into()
            .expect("an accepted echo holds a cookie");
        let genuine = [epoch, epoch.wrapping_sub(1)]
            .iter()
            .any(|&e| key.cookie(e, header.session_id, peer) == cookie);
        assert!(genuine, "accepted a cookie the key did not make");
        assert_eq!(msg1, &datagram[HEADER_LEN + COOKIE_LEN..]);
    }
    if let Ok(header) = Header::decode(datagram) {
        let payload = datagram.get(HEADER_LEN..).unwrap_or_default();
        if let Some(c) = cookie::parse_challenge(&header, payload) {
            let again = key.challenge(epoch, header.session_id, peer);
            assert_eq!(again.len(), HEADER_LEN + COOKIE_LEN);
            assert_eq!(again[..HEADER_LEN], datagram[..HEADER_LEN]);
            assert_eq!(c.len(), COOKIE_LEN);
        }
    }
    // The genuine exchange always works, whatever message 1 it carries (the
    // handshake checks message 1, not the cookie layer) as long as it names
    // the session.
    let id = SessionId(u64::from(first) << 8 | 0x11);
    let challenge = key.challenge(epoch, id, peer);
    let h = Header::decode(&challenge).expect("our own challenge");
    let c = cookie::parse_challenge(&h, &challenge[HEADER_LEN..]).expect("our own challenge");
    let mut msg1 = Header {
        frame_type: stt::frame::FrameType::Handshake,
        flags: stt::frame::Flags::EMPTY,
        session_id: id,
        stream_id: 0,
        packet_number: 1,
        payload_len: datagram.len().min(1024) as u32,
    }
    .to_bytes()
    .to_vec();
    msg1.extend_from_slice(&datagram[..datagram.len().min(1024)]);
    let echo = cookie::echo(id, &c, &msg1);
    assert_eq!(key.open_echo(epoch, peer, &echo), Ok(&msg1[..]));
    let mut bent = echo.clone();
    bent[HEADER_LEN + usize::from(first) % COOKIE_LEN] ^= 1 << (first % 8);
    assert!(key.open_echo(epoch, peer, &bent).is_err());
}
