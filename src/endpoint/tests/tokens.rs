//! Connect tokens at the endpoint, in virtual time: admission under the
//! client id, expiry, audience, tampering, reuse, revocation, and clients
//! that cannot accept or reach each other.

use super::*;
use crate::token::{ConnectToken, Issuer, IssuingKey, TokenConfig, TokenRefusal, TokenRequest};

/// The issuer every member of `NETWORK` can derive.
fn issuer() -> Issuer {
    Issuer::new(IssuingKey::from_network(
        &NetworkKey::from_seed(&NETWORK).expect("seed"),
    ))
}

fn request(client_id: u64, audience: &str) -> TokenRequest {
    TokenRequest::new(client_id, [audience]).with_data(b"role=player".to_vec())
}

fn token(client_id: u64, audience: &str, net: &Net) -> ConnectToken {
    issue(request(client_id, audience), net.wall())
}

fn issue(request: TokenRequest, at: u64) -> ConnectToken {
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&request.client_id.to_be_bytes());
    salt[8..].copy_from_slice(&at.to_be_bytes());
    issuer()
        .issue_at(&request, at, salt, [request.client_id as u8; 32])
        .expect("issue")
}

impl Net {
    /// The virtual wall clock now.
    fn wall(&self) -> u64 {
        *WALL_START + self.now.saturating_duration_since(self.start).as_secs()
    }

    /// A server of `NETWORK` named "eu-1" accepting tokens.
    fn token_server(&mut self, limits: Limits) -> usize {
        let seed = self.nodes.len() as u8 + 1;
        let tokens = TokenConfig::new(["eu-1"]);
        let config = config_full(seed, Some(&NETWORK), limits, self.start, None, Some(tokens));
        self.add_config(config)
    }

    /// A connect-token client: no shared seed, no tokens accepted.
    fn token_client(&mut self) -> usize {
        let seed = self.nodes.len() as u8 + 1;
        let config = config_full(seed, None, Limits::default(), self.start, None, None);
        self.add_config(config)
    }

    fn established(&mut self, node: usize, id: SessionId) -> bool {
        self.nodes[node]
            .out
            .events
            .iter()
            .any(|e| matches!(e, Seen::Established(s, _) if *s == id))
    }

    fn closed_with(&self, node: usize, id: SessionId) -> Option<CloseReason> {
        self.nodes[node].out.events.iter().find_map(|e| match e {
            Seen::Closed(s, r) if *s == id => Some(r.clone()),
            _ => None,
        })
    }

    /// Whether `node` saw session `id` closed by its peer as replaced.
    fn replaced(&self, node: usize, id: SessionId) -> bool {
        matches!(
            self.closed_with(node, id),
            Some(CloseReason::Peer {
                code: close_code::REPLACED,
                ..
            })
        )
    }

    fn refused_count(&self, node: usize) -> u64 {
        self.stats(node).handshakes_refused.load(Ordering::Relaxed)
    }

    fn sessions(&self, node: usize) -> usize {
        self.stats(node).sessions.load(Ordering::Relaxed)
    }

    fn stats(&self, node: usize) -> &EndpointStats {
        &self.nodes[node].ep.config().stats
    }
}

#[test]
fn a_token_client_is_admitted_under_its_client_id() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let t = token(7, "eu-1", &net);
    let id = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(client, id) && net.established(server, id));
    net.send(client, id, b"hello");
    net.run(Duration::from_millis(50));
    let got = messages(&net.events(server));
    assert_eq!(got.len(), 1);
    assert_eq!(
        net.nodes[server].out.clients,
        vec![(id, 7, b"role=player".to_vec())]
    );
    // The server's answer reaches the client, which sees no token client
    // on its side (it is the one that connected).
    let now = net.now;
    let n = &mut net.nodes[server];
    n.ep.send(now, id, 0, FrameType::Data, b"welcome", &mut n.out)
        .expect("send");
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.events(client)).len(), 1);
    assert!(net.nodes[client].out.clients.is_empty());
}

#[test]
fn expired_and_not_yet_valid_tokens_get_a_refusal_the_client_reports() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let wall = net.wall();
    let old = issue(
        request(7, "eu-1").with_lifetime(Duration::from_secs(60)),
        wall - 61,
    );
    let future = issue(request(8, "eu-1"), wall + 3600);
    let a = net.connect_token(client, server, &old);
    let b = net.connect_token(client, server, &future);
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.closed_with(client, a),
        Some(CloseReason::TokenRefused(TokenRefusal::Expired))
    );
    assert_eq!(
        net.closed_with(client, b),
        Some(CloseReason::TokenRefused(TokenRefusal::NotYetValid))
    );
    assert_eq!(net.refused_count(server), 2);
    assert_eq!(net.sessions(server), 0);
    // A token that was good expires while time passes: its session stays,
    // new sessions with it are refused.
    let short = issue(
        request(9, "eu-1").with_lifetime(Duration::from_secs(30)),
        net.wall(),
    );
    let c = net.connect_token(client, server, &short);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, c));
    net.send(client, c, b"keepalive");
    net.run(Duration::from_secs(31));
    let d = net.connect_token(client, server, &short);
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.closed_with(client, d),
        Some(CloseReason::TokenRefused(TokenRefusal::Expired))
    );
    assert_eq!(
        net.closed_with(server, c),
        None,
        "the live session outlives its token"
    );
}

#[test]
fn a_token_for_another_server_is_refused() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let t = token(7, "us-2", &net);
    let id = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.closed_with(client, id),
        Some(CloseReason::TokenRefused(TokenRefusal::WrongAudience))
    );
}

#[test]
fn tampered_or_foreign_tokens_get_silence() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let good = token(7, "eu-1", &net);
    // Every byte of the ticket matters; a flipped client key fails the
    // Noise check instead; a ticket of another issuer does not open.
    let mut cases = Vec::new();
    for at in [0, 3, 10, 30, good.ticket.len() - 1] {
        let mut t = good.clone();
        t.ticket[at] ^= 0x40;
        cases.push(t);
    }
    let mut wrong_key = good.clone();
    wrong_key.facts.client_key[0] ^= 1;
    cases.push(wrong_key);
    let foreign = Issuer::new(IssuingKey::from_bytes([3; 32]))
        .issue_at(&request(7, "eu-1"), net.wall(), [1; 16], [2; 32])
        .expect("issue");
    cases.push(foreign);
    let ids: Vec<SessionId> = cases
        .iter()
        .map(|t| net.connect_token(client, server, t))
        .collect();
    net.run(Duration::from_secs(11));
    for id in ids {
        assert_eq!(
            net.closed_with(client, id),
            Some(CloseReason::HandshakeTimeout)
        );
    }
    // Nothing was ever sent back, and nothing was kept.
    assert!(net.nodes[server].out.events.is_empty());
    assert_eq!(net.sessions(server), 0);
    assert!(net.nodes[server].dropped() >= cases.len() as u64);
}

#[test]
fn a_new_session_of_a_token_replaces_the_one_before() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let other = net.token_client();
    let t = token(7, "eu-1", &net);
    let first = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, first));
    // The client reconnects (its old session is still alive on the
    // server): the new session replaces the old one at once.
    let second = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, second));
    assert!(net.replaced(client, first));
    // Once the closed one has lingered (9.4), one session is left.
    net.run(Duration::from_secs(5));
    assert_eq!(net.sessions(server), 1);
    // Whoever holds the token (a copy) replaces it too: one session per
    // token, the newest.
    let copied = net.connect_token(other, server, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, copied));
    assert!(net.replaced(client, second));
    net.run(Duration::from_secs(5));
    assert_eq!(net.sessions(server), 1);
    // The replaced sessions' ends do not free the newest's claim: a session
    // closing later leaves the token held by the live one.
    let gate = net.nodes[server]
        .ep
        .config()
        .tokens
        .as_ref()
        .expect("tokens");
    gate.release(&t.ticket[5..21].try_into().expect("salt"), 0, first);
    let fourth = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, fourth));
    assert!(net.replaced(other, copied));
    assert!(net.nodes[server].out.replaced_elsewhere.is_empty());
}

#[test]
fn a_replayed_token_message_1_makes_no_second_session() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let t = token(7, "eu-1", &net);
    let id = net.connect_token(client, server, &t);
    let msg1 = net.flight.values().next().expect("message 1").bytes.clone();
    net.run(Duration::from_millis(200));
    assert!(net.established(server, id));
    let now = net.now;
    let n = &mut net.nodes[client];
    n.ep.close(now, id, 0, "bye", &mut n.out);
    net.run(Duration::from_millis(200));
    // The token is free again, but its message 1 is not.
    let to = net.addr_of(server);
    net.inject(addr(4444), to, msg1);
    let before = net.refused_count(server);
    net.run(Duration::from_millis(200));
    assert_eq!(net.refused_count(server), before + 1);
    assert_eq!(net.sessions(server), 0);
}

#[test]
fn revocation_closes_live_sessions_and_refuses_older_tokens() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    // Issued two minutes ago; the revocation is dated a minute ago (an
    // issuer's clock may run a minute ahead: tokens dated up to a minute
    // after a revocation are refused too).
    let wall = net.wall();
    let t = issue(request(7, "eu-1"), wall - 120);
    let bystander = token(8, "eu-1", &net);
    let id = net.connect_token(client, server, &t);
    let other = net.connect_token(client, server, &bystander);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, id) && net.established(server, other));
    let now = net.now;
    let n = &mut net.nodes[server];
    n.ep.config()
        .tokens
        .as_ref()
        .expect("tokens")
        .revoke(7, wall - 61);
    assert_eq!(n.ep.close_client(now, 7, &mut n.out), 1);
    net.run(Duration::from_millis(200));
    assert!(matches!(
        net.closed_with(client, id),
        Some(CloseReason::Peer {
            code: close_code::REVOKED,
            ..
        })
    ));
    assert_eq!(net.closed_with(client, other), None, "other clients stay");
    // Its token, even once free, is refused; a token issued after the
    // revocation is accepted.
    let again = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.closed_with(client, again),
        Some(CloseReason::TokenRefused(TokenRefusal::Revoked))
    );
    // Dated within that minute: refused too; after it: accepted.
    let soon = issue(request(7, "eu-1"), wall - 30);
    let early = net.connect_token(client, server, &soon);
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.closed_with(client, early),
        Some(CloseReason::TokenRefused(TokenRefusal::Revoked))
    );
    let fresh = token(7, "eu-1", &net);
    let back = net.connect_token(client, server, &fresh);
    net.run(Duration::from_millis(200));
    assert!(net.established(server, back));
}

#[test]
fn clients_neither_accept_sessions_nor_reach_each_other() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let alice = net.token_client();
    let bob = net.token_client();
    let member = net.add(&NETWORK, Limits::default());
    // A token for the server, presented to another client: it cannot read
    // the ticket. A member cannot reach a client either.
    let t = token(7, "eu-1", &net);
    let to_bob = net.connect_token(alice, bob, &t);
    let from_member = net.connect(member, bob);
    net.run(Duration::from_secs(11));
    assert_eq!(
        net.closed_with(alice, to_bob),
        Some(CloseReason::HandshakeTimeout)
    );
    assert_eq!(
        net.closed_with(member, from_member),
        Some(CloseReason::HandshakeTimeout)
    );
    assert!(net.nodes[bob].out.events.is_empty());
    assert!(net.nodes[bob].out.sent.is_empty());
    // And a client cannot dial without a token at all.
    let path = net.nodes[alice]
        .ep
        .path(0, net.addr_of(server))
        .expect("link");
    let now = net.now;
    let n = &mut net.nodes[alice];
    assert_eq!(
        n.ep.connect(now, path, None, None, &mut n.out),
        Err(OpenError::NoCredential)
    );
}

#[test]
fn token_handshakes_pass_the_cookie_exchange_under_load() {
    let mut net = Net::new();
    let server = net.token_server(Limits {
        cookie_threshold: 0,
        ..Limits::default()
    });
    let client = net.token_client();
    let t = token(7, "eu-1", &net);
    let id = net.connect_token(client, server, &t);
    net.run(Duration::from_millis(300));
    assert!(net.established(server, id));
    assert_eq!(
        net.stats(server).cookie_challenges.load(Ordering::Relaxed),
        1
    );
}

#[test]
fn a_copied_message_1_replaces_nothing_a_pending_handshake_does_not_either() {
    let mut net = Net::new();
    let a = net.token_server(Limits::default());
    let b = net.token_server(Limits::default());
    let client = net.token_client();
    let t = token(7, "eu-1", &net);
    let on_b = net.connect_token(client, b, &t);
    net.run(Duration::from_millis(200));
    assert!(net.established(b, on_b));
    // The client now connects to A; an observer copies that message 1 to B.
    let on_a = net.connect_token(client, a, &t);
    let msg1 = net
        .flight
        .values()
        .find(|p| p.to == net.addr_of(a))
        .expect("message 1 to A")
        .bytes
        .clone();
    let to_b = net.addr_of(b);
    net.inject(addr(4444), to_b, msg1);
    net.run(Duration::from_secs(11));
    // B took it as a handshake the copier can never finish: the client's
    // session on B lives on, and so does its new one on A (another node).
    assert!(net.established(a, on_a));
    assert_eq!(net.closed_with(client, on_b), None);
    assert_eq!(net.closed_with(client, on_a), None);
}

#[test]
fn token_handshakes_are_held_to_cookies_and_quotas_like_any() {
    let mut net = Net::new();
    let server = net.token_server(Limits {
        cookie_threshold: 2,
        ..Limits::default()
    });
    let t = token(7, "eu-1", &net);
    // Message 1s that will never finish (their sender vanished after
    // sending): each stays pending; none frees another's place.
    let client = net.token_client();
    for _ in 0..6 {
        net.connect_token(client, server, &t);
    }
    net.down.push(client);
    net.run(Duration::from_millis(100));
    assert_eq!(net.stats(server).pending.load(Ordering::Relaxed), 2);
    assert_eq!(
        net.stats(server).cookie_challenges.load(Ordering::Relaxed),
        4
    );
}

#[test]
fn a_refusal_of_a_reason_this_build_does_not_know_still_ends_the_handshake() {
    let mut net = Net::new();
    let server = net.token_server(Limits::default());
    let client = net.token_client();
    let t = token(7, "eu-1", &net);
    let id = net.connect_token(client, server, &t);
    // The message 1 never reaches the server; a refusal made with the
    // client key (as only a server that read the ticket can) answers it.
    let key = *net.flight.keys().next().expect("message 1");
    let msg1 = net.flight.remove(&key).expect("message 1").bytes;
    let mac = crate::crypto::cookie::ChallengeKey::new(&NetworkKey::from_client_key(&[7; 32]));
    let refusal = crate::crypto::cookie::refusal(id, 5, &mac, &msg1);
    let (from, to) = (net.addr_of(server), net.addr_of(client));
    // A forged one (another key) is dropped first; the handshake goes on.
    let forged_mac =
        crate::crypto::cookie::ChallengeKey::new(&NetworkKey::from_client_key(&[8; 32]));
    let forged = crate::crypto::cookie::refusal(id, 3, &forged_mac, &msg1);
    net.inject(from, to, forged.to_vec());
    net.run(Duration::from_millis(100));
    assert_eq!(net.closed_with(client, id), None);
    net.inject(from, to, refusal.to_vec());
    net.run(Duration::from_millis(100));
    assert_eq!(
        net.closed_with(client, id),
        Some(CloseReason::TokenRefused(TokenRefusal::Unknown(5)))
    );
}
