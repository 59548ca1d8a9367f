//! Target `cookie`: the address-validation parsers of `stt::crypto::cookie`
//! on arbitrary bytes, as a responder under load sees them from anyone.
//!
//! The first input byte picks the source port and the epoch; the rest is the
//! datagram. Besides "never panics", it checks:
//!
//! - `open_echo` accepts a datagram only if its cookie is the one the key makes
//!   for that source, that session and this epoch or the one before, and it
//!   then returns exactly the bytes after the cookie;
//! - `parse_challenge` reads only a challenge authenticated with the
//!   target's challenge key for its fixed message 1 (a well-formed 61-byte
//!   challenge whose header is the one the key would write);
//! - the genuine echo of a genuine challenge is accepted whatever the fuzz
//!   data, and a one-bit change to its cookie is refused.

use std::net::SocketAddr;

use stt::crypto::cookie::{self, ChallengeKey, CookieKey, COOKIE_LEN};
use stt::frame::{Header, SessionId, HEADER_LEN};

/// The fixed key of this target.
pub fn key() -> CookieKey {
    CookieKey::from_secret(&[0x42; 32])
}

/// The fixed challenge key of this target (a network key from a fixed
/// stretched seed).
pub fn challenge_key() -> ChallengeKey {
    ChallengeKey::new(&stt::crypto::NetworkKey::from_stretched(&[0x43; 32]))
}

/// The message 1 this target's challenges answer.
pub const CHALLENGED_MSG1: &[u8] = b"the message 1 this target's challenges answer";

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
        let head: Option<&[u8; HEADER_LEN]> =
            datagram.get(..HEADER_LEN).and_then(|h| h.try_into().ok());
        if let Some(head) = head {
            let parsed =
                cookie::parse_challenge(&header, head, payload, &challenge_key(), CHALLENGED_MSG1);
            if let Some(c) = parsed {
                // Only a challenge made with the network's key for this
                // message 1 is read: its MAC is right, so it is ours byte
                // for byte once its cookie is put back.
                let again = key.challenge(
                    epoch,
                    header.session_id,
                    peer,
                    &challenge_key(),
                    CHALLENGED_MSG1,
                );
                assert_eq!(datagram.len(), cookie::CHALLENGE_LEN);
                assert_eq!(again[..HEADER_LEN], datagram[..HEADER_LEN]);
                assert_eq!(c.len(), COOKIE_LEN);
            }
        }
    }
    // The genuine exchange always works, whatever message 1 it carries (the
    // handshake checks message 1, not the cookie layer) as long as it names
    // the session.
    let id = SessionId(u64::from(first) << 8 | 0x11);
    let mac = challenge_key();
    let challenge = key.challenge(epoch, id, peer, &mac, CHALLENGED_MSG1);
    let h = Header::decode(&challenge).expect("our own challenge");
    let head: &[u8; HEADER_LEN] = challenge[..HEADER_LEN]
        .try_into()
        .expect("a challenge starts with a header");
    let c = cookie::parse_challenge(&h, head, &challenge[HEADER_LEN..], &mac, CHALLENGED_MSG1)
        .expect("our own challenge");
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
