//! What connect tokens cost, against what members pay, measured side by side
//! in one run: the whole handshake, the stateless check a server runs on
//! every message 1 before any Diffie-Hellman, and a backend's issuing and a
//! client's parsing of a token.
//!
//! Run with `cargo bench --bench tokens` (under 2 minutes on 2 cores, plus
//! the build). Results and the command used: `perf/RESULTS.md`, section
//! "Connect tokens: handshake cost".
//!
//! | group             | what one iteration is                                       |
//! |-------------------|-------------------------------------------------------------|
//! | `token_handshake` | a whole 3-message handshake between two in-memory sessions: |
//! |                   | a member's (as `protocol`'s `XXpsk0_3_messages`), the same  |
//! |                   | with the server's `Msg1Check::verify` first (as the         |
//! |                   | endpoint admits a member), and a token client's with the    |
//! |                   | server's `TokenGate::check` first (as the endpoint admits   |
//! |                   | a token)                                                    |
//! | `token_msg1`      | the stateless check of one message 1: `Msg1Check::verify`   |
//! |                   | of a member's, `TokenGate::check` of a genuine token's      |
//! |                   | (Admit), of one with a tampered ticket or Noise part        |
//! |                   | (Silent), of an expired or wrong-audience one (Refuse)      |
//! | `token_issue`     | `Issuer::issue`, `ConnectToken::encode` and `parse`         |
//!
//! Tokens are issued at a fixed time (`Issuer::issue_at`) and the gate is
//! given its clock, so every result is the same on every run. The gate's
//! check keeps no state (the endpoint claims the ticket afterwards), so one
//! message 1 is checked again and again; the replay cache and the timestamp
//! window, which the endpoint applies to members and tokens alike, are not
//! timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use stt::crypto::{Identity, Msg1Check, NetworkKey};
use stt::frame::{SessionId, HEADER_LEN};
use stt::session::{Session, SessionConfig};
use stt::token::{
    ConnectToken, GateResult, Issuer, IssuingKey, TokenConfig, TokenGate, TokenRefusal,
    TokenRequest,
};

/// When the benchmark's tokens were issued (seconds since the Unix epoch).
const ISSUED: u64 = 1_750_000_000;
/// Their lifetime.
const LIFETIME: Duration = Duration::from_secs(600);
/// The server's clock while a token is valid.
const VALID_AT: u64 = ISSUED + 10;
/// The server's clock after they expired.
const EXPIRED_AT: u64 = ISSUED + 601;
/// The server's name.
const SERVER_NAME: &str = "eu-1";
/// A typical token's application data.
const DATA: &[u8] = b"role=player;region=eu";

/// The two nodes, the network key, the issuer and the server's gate.
struct Setup {
    client: Identity,
    server: Identity,
    network: NetworkKey,
    issuer: Issuer,
    gate: TokenGate,
}

impl Setup {
    fn new() -> Self {
        let network = NetworkKey::from_seed(&[7; 32]).expect("seed");
        let issuer = Issuer::new(IssuingKey::from_bytes([5; 32]));
        let gate = TokenGate::new(
            &TokenConfig::with_key(issuer.key().clone(), [SERVER_NAME]),
            Some(&network),
        );
        Setup {
            client: Identity::from_seed(&[1; 32]).expect("seed"),
            server: Identity::from_seed(&[2; 32]).expect("seed"),
            network,
            issuer,
            gate,
        }
    }

    /// A token for `audience`, issued at [`ISSUED`].
    fn token(&self, client_id: u64, audience: &str) -> ConnectToken {
        let request = TokenRequest::new(client_id, [audience])
            .with_lifetime(LIFETIME)
            .with_data(DATA);
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&client_id.to_be_bytes());
        self.issuer
            .issue_at(&request, ISSUED, salt, [client_id as u8; 32])
            .expect("issue")
    }

    /// A member's message 1.
    fn member_msg1(&self, now: Instant) -> Vec<u8> {
        let config = SessionConfig::default();
        Session::connect(config, &self.client, &self.network, SessionId(1), now)
            .expect("connect")
            .poll_transmit()
            .expect("message 1")
    }

    /// A token client's message 1 with `token`.
    fn token_msg1(&self, token: &ConnectToken, now: Instant) -> Vec<u8> {
        let config = SessionConfig::default();
        Session::connect_with_token(config, &self.client, token, SessionId(2), now, None)
            .expect("connect")
            .poll_transmit()
            .expect("message 1")
    }

    /// Messages 2 and 3 between `client` and the `server` that accepted
    /// its message 1; both are established when it returns.
    fn finish(mut client: Session, mut server: Session, now: Instant) -> (Session, Session) {
        let mut msg2 = server.poll_transmit().expect("message 2");
        client.handle_datagram(now, &mut msg2).expect("message 2");
        let mut msg3 = client.poll_transmit().expect("message 3");
        server.handle_datagram(now, &mut msg3).expect("message 3");
        assert!(client.is_established() && server.is_established());
        (client, server)
    }

    /// A member's handshake; with `check`, the server first verifies
    /// message 1 as its endpoint does.
    fn member_handshake(
        &self,
        check: Option<&Msg1Check>,
        id: u64,
        now: Instant,
    ) -> (Session, Session) {
        let config = SessionConfig::default();
        let mut client = Session::connect(
            config.clone(),
            &self.client,
            &self.network,
            SessionId(id),
            now,
        )
        .expect("connect");
        let msg1 = client.poll_transmit().expect("message 1");
        if let Some(check) = check {
            assert!(check.verify(&msg1[..HEADER_LEN], &msg1[HEADER_LEN..]));
        }
        let server =
            Session::accept(config, &self.server, &self.network, &msg1, now).expect("accept");
        Self::finish(client, server, now)
    }

    /// A token client's handshake, the server's side as its endpoint runs
    /// it: the gate, then `accept` under the client key the ticket gave.
    fn token_handshake(&self, token: &ConnectToken, id: u64, now: Instant) -> (Session, Session) {
        let config = SessionConfig::default();
        let mut client = Session::connect_with_token(
            config.clone(),
            &self.client,
            token,
            SessionId(id),
            now,
            None,
        )
        .expect("connect");
        let msg1 = client.poll_transmit().expect("message 1");
        let GateResult::Admit(admission) = self.gate.check(&msg1, VALID_AT) else {
            panic!("a genuine token message 1 is admitted");
        };
        let server =
            Session::accept(config, &self.server, &admission.psk, &msg1, now).expect("accept");
        Self::finish(client, server, now)
    }
}

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_handshake");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(50);
    group.throughput(Throughput::Elements(1));
    let setup = Setup::new();
    let token = setup.token(7, SERVER_NAME);
    let check = Msg1Check::new(&setup.network);
    let now = Instant::now();
    let mut id = 0u64;
    group.bench_function("member_3_messages", |b| {
        b.iter(|| {
            id = id.wrapping_add(1);
            setup.member_handshake(None, id, now)
        })
    });
    group.bench_function("member_checked_3_messages", |b| {
        b.iter(|| {
            id = id.wrapping_add(1);
            setup.member_handshake(Some(&check), id, now)
        })
    });
    group.bench_function("token_3_messages", |b| {
        b.iter(|| {
            id = id.wrapping_add(1);
            setup.token_handshake(black_box(&token), id, now)
        })
    });
    group.finish();
}

/// Whether a gate result is the one a benchmark case expects.
type Expected = fn(&GateResult) -> bool;

/// Flips one bit of `datagram` at `at`.
fn flipped(datagram: &[u8], at: usize) -> Vec<u8> {
    let mut out = datagram.to_vec();
    out[at] ^= 0x01;
    out
}

fn bench_msg1(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_msg1");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let setup = Setup::new();
    let now = Instant::now();
    let check = Msg1Check::new(&setup.network);
    let member = setup.member_msg1(now);
    group.bench_function("member_verify", |b| {
        b.iter(|| {
            let m = black_box(&member);
            assert!(check.verify(&m[..HEADER_LEN], &m[HEADER_LEN..]));
        })
    });
    let genuine = setup.token_msg1(&setup.token(7, SERVER_NAME), now);
    // Payload: T (2 bytes), the ticket, the 112-byte Noise message.
    let ticket_len = usize::from(u16::from_be_bytes([
        genuine[HEADER_LEN],
        genuine[HEADER_LEN + 1],
    ]));
    // A byte of the ticket's ciphertext: the key id still names a known key,
    // so the gate derives the ticket key and tries to open it.
    let bad_ticket = flipped(&genuine, HEADER_LEN + 2 + 30);
    // A byte of the Noise message: the ticket opens, message 1 does not.
    let bad_noise = flipped(&genuine, HEADER_LEN + 2 + ticket_len + 40);
    let other_server = setup.token_msg1(&setup.token(8, "us-2"), now);
    let cases: [(&str, &[u8], u64, Expected); 5] = [
        ("gate_admit", &genuine, VALID_AT, |r| {
            matches!(r, GateResult::Admit(_))
        }),
        ("gate_silent_tampered_ticket", &bad_ticket, VALID_AT, |r| {
            matches!(r, GateResult::Silent)
        }),
        ("gate_silent_tampered_noise", &bad_noise, VALID_AT, |r| {
            matches!(r, GateResult::Silent)
        }),
        ("gate_refuse_expired", &genuine, EXPIRED_AT, |r| {
            matches!(r, GateResult::Refuse(TokenRefusal::Expired, _))
        }),
        ("gate_refuse_wrong_audience", &other_server, VALID_AT, |r| {
            matches!(r, GateResult::Refuse(TokenRefusal::WrongAudience, _))
        }),
    ];
    for (name, datagram, unix_secs, expected) in cases {
        assert!(expected(&setup.gate.check(datagram, unix_secs)), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| setup.gate.check(black_box(datagram), unix_secs))
        });
    }
    group.finish();
}

fn bench_issue(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_issue");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let setup = Setup::new();
    let request = TokenRequest::new(7, [SERVER_NAME])
        .with_lifetime(LIFETIME)
        .with_data(DATA);
    group.bench_function("Issuer::issue", |b| {
        b.iter(|| setup.issuer.issue(black_box(&request)).expect("issue"))
    });
    let token = setup.token(7, SERVER_NAME);
    group.bench_function("ConnectToken::encode", |b| {
        b.iter(|| black_box(&token).encode())
    });
    let text = token.encode();
    group.bench_function("ConnectToken::parse", |b| {
        b.iter(|| ConnectToken::parse(black_box(&text)).expect("parse"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_handshake, bench_msg1, bench_issue
}
criterion_main!(benches);
