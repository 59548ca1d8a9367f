//! A server's token gate (`TokenGate::check`,
//! `docs/PROTOCOL.md` 14.5) on the token message 1s anyone can send it.
//!
//! One fixed issuing key, and a gate for server "eu-1" holding it; two
//! tokens sealed under it for 600 s, issued 590 s before their genuine
//! message 1s are stamped (made once per process, by the real clock):
//! client 7 for "eu-1" (and another name) with application data, client 8
//! for "us-2" only.
//!
//! Input: byte 0 picks the base token (bit 0: client 7 or 8) and the mode
//! (bit 1); byte 1 the gate's clock, `STAMPED - 1024 + 8 × byte` (before,
//! during and after the tokens' lifetime; a refusal is owed only while the
//! message 1's stamp is within 60 s of it). Then:
//!
//! - raw mode (bit 1 set): the rest is the datagram. Anything but silence
//!   must come from a datagram carrying one of the two tickets (nobody
//!   else can seal one), and is exactly what that token deserves at that
//!   clock: admitted with its client id, data, times and ticket id, or
//!   refused for the right reason;
//! - flip mode: the base token's genuine message 1 with the rest applied as
//!   3-byte flips (position, big-endian, modulo the length; a byte to XOR);
//!   a 1-byte tail truncates by that many bytes, a 2-byte tail is appended.
//!   Unchanged, it gets what the token deserves at that clock; changed in
//!   any byte or length, it is never admitted, nor refused: every byte is
//!   authenticated (header and ticket in the prologue, the ticket by its
//!   AEAD), so a changed one is silence.
//!
//! The gate keeps no state in `check` (the endpoint claims tickets later),
//! so the inputs are independent.
use std::sync::OnceLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use stt::crypto::Identity;
use stt::frame::{SessionId, HEADER_LEN};
use stt::session::{Session, SessionConfig};
use stt::token::{
    split_payload, ConnectToken, GateResult, Issuer, IssuingKey, TokenConfig, TokenGate,
    TokenRefusal, TokenRequest,
};

/// How long before their message 1s the tokens were issued, seconds.
const AGE: u64 = 590;
/// Their lifetime, seconds.
const LIFETIME: u64 = 600;
/// The gate's name.
const SERVER: &str = "eu-1";

/// The gate, the two tokens and their genuine message 1s.
struct Fixture {
    gate: TokenGate,
    tokens: [ConnectToken; 2],
    msg1: [Vec<u8>; 2],
    /// The real clock when the message 1s were stamped (seconds).
    stamped: u64,
    /// When the tokens were issued.
    issued: u64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let stamped = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let issued = stamped - AGE;
        let issuer = Issuer::new(IssuingKey::from_bytes([0x51; 32]));
        let gate = TokenGate::new(&TokenConfig::with_key(issuer.key().clone(), [SERVER]), None);
        let issue = |id: u64, audience: &[&str], data: &[u8]| {
            let request = TokenRequest::new(id, audience.iter().copied())
                .with_lifetime(Duration::from_secs(LIFETIME))
                .with_data(data.to_vec());
            issuer
                .issue_at(&request, issued, [id as u8; 16], [id as u8 ^ 0x80; 32])
                .expect("issue")
        };
        let tokens = [
            issue(7, &[SERVER, "ws://game.example:8081/"], b"role=player"),
            issue(8, &["us-2"], b""),
        ];
        let client = Identity::from_seed(&[0x52; 32]).expect("seed");
        let msg1 = tokens.clone().map(|t| {
            let id = SessionId(t.client_id());
            Session::connect_with_token(
                SessionConfig::default(),
                &client,
                &t,
                id,
                Instant::now(),
                None,
            )
            .expect("connect")
            .poll_transmit()
            .expect("message 1")
        });
        Fixture {
            gate,
            tokens,
            msg1,
            stamped,
            issued,
        }
    })
}

/// The harness: see the module docs.
pub fn run(data: &[u8]) {
    let [mode, clock, rest @ ..] = data else {
        return;
    };
    let f = fixture();
    let now = f.stamped - 1024 + 8 * u64::from(*clock);
    let base = usize::from(mode & 1);
    if mode & 2 != 0 {
        let result = f.gate.check(rest, now);
        if matches!(result, GateResult::Silent) {
            return;
        }
        let ticket = rest
            .get(HEADER_LEN..)
            .and_then(split_payload)
            .map(|(_, ticket, _)| ticket)
            .expect("an authentic token message 1 splits");
        let which = f
            .tokens
            .iter()
            .position(|t| t.ticket() == ticket)
            .expect("authentic only with a ticket the issuing key sealed");
        deserved(f, which, now, &result);
        return;
    }
    let genuine = &f.msg1[base];
    let mut datagram = genuine.clone();
    let mut flips = rest.chunks_exact(3);
    for flip in flips.by_ref() {
        let at = usize::from(u16::from_be_bytes([flip[0], flip[1]])) % datagram.len();
        datagram[at] ^= flip[2];
    }
    match *flips.remainder() {
        [cut] => datagram.truncate(datagram.len().saturating_sub(usize::from(cut))),
        [a, b] => datagram.extend_from_slice(&[a, b]),
        _ => {}
    }
    let result = f.gate.check(&datagram, now);
    if datagram == *genuine {
        deserved(f, base, now, &result);
    } else {
        assert!(
            matches!(result, GateResult::Silent),
            "a changed message 1 got {result:?}"
        );
    }
}

/// `result` is what the gate owes the genuine message 1 of token `which`
/// at `now`.
fn deserved(f: &Fixture, which: usize, now: u64, result: &GateResult) {
    let token = &f.tokens[which];
    let expires = f.issued + LIFETIME;
    let refusal = if now >= expires {
        Some(TokenRefusal::Expired)
    } else if f.issued > now + 60 {
        Some(TokenRefusal::NotYetValid)
    } else if !token.audience().iter().any(|a| a == SERVER) {
        Some(TokenRefusal::WrongAudience)
    } else {
        None
    };
    // A refusal goes only to a fresh message 1 (its stamp within 60 s of
    // the gate's clock; a second either way is the fixture's own slack).
    let skew = now.abs_diff(f.stamped);
    match (refusal, result) {
        (Some(_), GateResult::Silent) if skew >= 60 => {}
        (Some(want), GateResult::Refuse(got, _)) if skew <= 61 => assert_eq!(*got, want),
        (None, GateResult::Admit(a)) => {
            assert_eq!(a.client.client_id, token.client_id());
            let data: &[u8] = if token.client_id() == 7 {
                b"role=player"
            } else {
                b""
            };
            assert_eq!(a.client.data, data);
            assert_eq!(
                a.client.issued_at,
                UNIX_EPOCH + Duration::from_secs(f.issued)
            );
            assert_eq!(
                a.client.expires_at,
                UNIX_EPOCH + Duration::from_secs(expires)
            );
            assert_eq!(a.salt[..], token.ticket()[5..21]);
        }
        (want, got) => panic!(
            "client {} at {now}: wanted {want:?}, got {got:?}",
            token.client_id()
        ),
    }
}
