//! Connect tokens through real nodes on loopback (UDP and WebSocket, port
//! 0): a token client admitted under its client id, with its data on every
//! message and in the authorisation hook; expired and wrong-audience tokens
//! refused with clear errors; reuse refused; revocation closing live
//! sessions; token clients that cannot accept or reach each other.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::session::SessionConfig;
use stt::token::{ConnectToken, Issuer, IssuingKey, TokenConfig, TokenRefusal, TokenRequest};
use stt::{ConnectError, ConnectOptions, Events, Node, NodeConfig, NodeEvent, UdpConfig};

const SHARED: &[u8] = b"token test network shared seed, 32+ bytes";
const WAIT: Duration = Duration::from_secs(10);

fn loopback() -> UdpConfig {
    UdpConfig::bound_to("127.0.0.1:0".parse().unwrap())
}

/// A server named "eu-1" on UDP and WebSocket; its WebSocket URL.
fn server(config: NodeConfig) -> (Node, String) {
    let node = Node::start(config).unwrap();
    let ws = node
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    (node, format!("ws://{ws}/"))
}

fn server_config() -> NodeConfig {
    NodeConfig::new(b"token test server node seed, 32+ bytes!!", SHARED)
        .with_udp(loopback())
        .with_reactors(2)
        .with_tokens(TokenConfig::new(["eu-1"]))
}

fn client() -> Node {
    let mut config = NodeConfig::token_client()
        .with_udp(loopback())
        .with_reactors(1);
    config.session.handshake_timeout = Duration::from_secs(2);
    Node::start(config).unwrap()
}

fn issuer() -> Issuer {
    Issuer::new(IssuingKey::from_shared_seed(SHARED).unwrap())
}

fn token(client_id: u64, audience: &str) -> ConnectToken {
    let request = TokenRequest::new(client_id, [audience]).with_data(b"tier=gold".to_vec());
    // Through its text, as a backend hands it over.
    ConnectToken::parse(&issuer().issue(&request).unwrap().encode()).unwrap()
}

fn with(token: &ConnectToken) -> ConnectOptions {
    ConnectOptions::new().with_token(token.clone())
}

/// `err` is the server's refusal of a token, for `reason`.
fn assert_refused(err: &ConnectError, reason: TokenRefusal) {
    assert!(
        matches!(err, ConnectError::TokenRefused { reason: r, .. } if *r == reason),
        "{err}"
    );
}

fn next_event(events: &Events, what: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = events.recv_deadline(deadline).expect("the event in time");
        if what(&e) {
            return e;
        }
    }
}

#[test]
fn token_clients_are_admitted_under_their_client_id_over_udp_and_websocket() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let config = server_config().with_authorizer(move |candidate| {
        let client = candidate
            .client
            .as_ref()
            .map(|c| (c.client_id, c.data.clone()));
        hook_seen.lock().unwrap().push(client);
        true
    });
    let (server, url) = server(config);
    let udp = server.udp_local_addr().unwrap();
    let c = client();
    let a = c.connect_udp_with(udp, &with(&token(7, "eu-1"))).unwrap();
    let b = c
        .connect_websocket_with(&url, &with(&token(8, "eu-1")))
        .unwrap();
    let events = server.events();
    for (session, id) in [(&a, 7u64), (&b, 8)] {
        session.send(format!("from {id}").as_bytes()).unwrap();
        let NodeEvent::Message(m) = next_event(
            &events,
            |e| matches!(e, NodeEvent::Message(m) if m.session == session.id()),
        ) else {
            unreachable!()
        };
        let client = m.client.expect("a token client");
        assert_eq!(
            (client.client_id, &client.data[..]),
            (id, &b"tier=gold"[..])
        );
        assert_eq!(m.payload, format!("from {id}").as_bytes());
        let info = server.session(session.id()).expect("the server's session");
        assert_eq!(info.info().client.as_ref().map(|c| c.client_id), Some(id));
        // The server answers; the client sees no token client on its side.
        server.send(session.id(), b"welcome").unwrap();
    }
    let client_events = c.events();
    for _ in 0..2 {
        let NodeEvent::Message(m) =
            next_event(&client_events, |e| matches!(e, NodeEvent::Message(_)))
        else {
            unreachable!()
        };
        assert_eq!(m.payload, b"welcome");
        assert!(m.client.is_none());
    }
    let mut hooked = seen.lock().unwrap().clone();
    hooked.sort();
    assert_eq!(
        hooked,
        vec![
            Some((7, b"tier=gold".to_vec())),
            Some((8, b"tier=gold".to_vec()))
        ]
    );
    // Members still get in with the shared seed, beside token clients.
    let member = Node::start(
        NodeConfig::client(b"token test member node seed, 32+ bytes!!", SHARED)
            .with_udp(loopback())
            .with_reactors(1),
    )
    .unwrap();
    let m = member.connect_udp(udp).unwrap();
    assert!(server.session(m.id()).unwrap().info().client.is_none());
    assert_eq!(server.stats().tokens_admitted, 2);
}

#[test]
fn bad_tokens_fail_with_clear_errors() {
    let (server, url) = server(server_config());
    let udp = server.udp_local_addr().unwrap();
    let c = client();
    // Expired by the client's own clock: refused before anything is sent.
    let expired = issuer()
        .issue_at(&TokenRequest::new(1, ["eu-1"]), 1_000_000, [1; 16], [2; 32])
        .unwrap();
    assert!(matches!(
        c.connect_udp_with(udp, &with(&expired)),
        Err(ConnectError::TokenExpired)
    ));
    // For another server: the server says so, authenticated.
    let err = c
        .connect_websocket_with(&url, &with(&token(2, "us-2")))
        .unwrap_err();
    assert_refused(&err, TokenRefusal::WrongAudience);
    assert!(err.to_string().contains("wrong audience"), "{err}");
    assert_eq!(server.stats().tokens_refused, 1);
    // Tampered with, or issued under another key: silence, a timeout.
    let mut bytes = token(3, "eu-1").to_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = ConnectToken::from_bytes(&bytes).unwrap();
    let foreign = Issuer::new(IssuingKey::from_bytes([9; 32]))
        .issue(&TokenRequest::new(4, ["eu-1"]))
        .unwrap();
    for t in [tampered, foreign] {
        let err = c.connect_udp_with(udp, &with(&t)).unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::Handshake { .. } | ConnectError::TimedOut(_)
            ),
            "{err}"
        );
    }
    assert_eq!(server.stats().sessions, 0);
    // A node without a shared seed cannot connect without a token.
    assert!(matches!(
        c.connect_udp(udp),
        Err(ConnectError::NoCredential)
    ));
}

#[test]
fn a_reconnect_with_the_same_token_replaces_the_old_session_across_reactors() {
    let (server, url) = server(server_config());
    let t = token(5, "eu-1");
    let c = client();
    let events = c.events();
    // Session ids pick the reactor: over several reconnects the old and the
    // new session land on different reactors of the server too.
    let mut previous = c.connect_websocket_with(&url, &with(&t)).unwrap();
    for round in 0..6 {
        let next = if round % 2 == 0 {
            c.connect_udp_with(server.udp_local_addr().unwrap(), &with(&t))
        } else {
            c.connect_websocket_with(&url, &with(&t))
        }
        .unwrap();
        let NodeEvent::SessionClosed { reason, .. } = next_event(
            &events,
            |e| matches!(e, NodeEvent::SessionClosed { session, .. } if *session == previous.id()),
        ) else {
            unreachable!()
        };
        assert!(reason.to_string().contains("code 9"), "{reason}");
        next.send(b"still here").unwrap();
        previous = next;
    }
    let deadline = Instant::now() + WAIT;
    while server.stats().sessions != 1 {
        assert!(Instant::now() < deadline, "one session left on the server");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn revocation_closes_live_sessions_at_once() {
    let (server, url) = server(server_config());
    let udp = server.udp_local_addr().unwrap();
    let t = token(6, "eu-1");
    let c = client();
    let over_ws = c.connect_websocket_with(&url, &with(&t)).unwrap();
    let over_udp = c.connect_udp_with(udp, &with(&token(6, "eu-1"))).unwrap();
    let bystander = c.connect_udp_with(udp, &with(&token(60, "eu-1"))).unwrap();
    let started = Instant::now();
    assert_eq!(server.revoke_client(6).unwrap(), 2);
    let events = c.events();
    let mut closed = Vec::new();
    while closed.len() < 2 {
        if let NodeEvent::SessionClosed { session, reason } =
            next_event(&events, |e| matches!(e, NodeEvent::SessionClosed { .. }))
        {
            assert!(reason.to_string().contains("code 8"), "{reason}");
            closed.push(session);
        }
    }
    closed.sort();
    let mut expected = vec![over_ws.id(), over_udp.id()];
    expected.sort();
    assert_eq!(closed, expected);
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
    assert!(
        server.session(bystander.id()).is_some(),
        "other clients stay"
    );
    // Its tokens are refused from now on.
    let err = c.connect_websocket_with(&url, &with(&t)).unwrap_err();
    assert_refused(&err, TokenRefusal::Revoked);
    // So is one issued now: its issue time comes from the backend's clock,
    // which may run a minute ahead (a token issued more than a minute after
    // the revocation is accepted: src/endpoint/tests/tokens.rs).
    let err = c
        .connect_websocket_with(&url, &with(&token(6, "eu-1")))
        .unwrap_err();
    assert_refused(&err, TokenRefusal::Revoked);
    // A node that accepts no tokens has nothing to revoke.
    let plain = Node::start(
        NodeConfig::new(b"token test plain node seed, 32+ bytes!!!", SHARED)
            .with_udp(loopback())
            .with_reactors(1),
    )
    .unwrap();
    assert!(plain.revoke_client(6).is_err());
}

#[test]
fn token_clients_can_neither_accept_nor_reach_each_other() {
    let (server, _) = server(server_config());
    let alice = client();
    let bob = client();
    let bob_addr = bob.udp_local_addr().unwrap();
    // Alice holds a token for the server; Bob cannot read its ticket.
    let err = alice
        .connect_udp_with(bob_addr, &with(&token(10, "eu-1")))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake { .. } | ConnectError::TimedOut(_)
        ),
        "{err}"
    );
    // A member cannot reach a client either: it has no network key.
    let mut member = NodeConfig::client(b"token test member node seed, 32+ bytes!!", SHARED)
        .with_udp(loopback())
        .with_reactors(1);
    member.session = SessionConfig {
        handshake_timeout: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let member = Node::start(member).unwrap();
    assert!(member.connect_udp(bob_addr).is_err());
    assert_eq!(bob.stats().sessions, 0);
    // And a node without a seed cannot be configured to accept.
    let err = Node::start(NodeConfig::new(&[], &[]).with_udp(loopback())).unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
    drop(server);
}
