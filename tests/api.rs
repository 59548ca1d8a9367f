//! The engine-v2 Node API's promises: sends that refuse or give up when a
//! reactor's queue stays full, connects that return once the server holds
//! the session, lifecycle events that survive a full events channel, and
//! every message naming its sender's node id. Loopback, port 0 only.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use stt::{
    on_reactor, on_worker, Events, Handler, Node, NodeConfig, NodeEvent, NodeId, SendError,
    SessionId, UdpConfig,
};

const SHARED: &[u8] = b"api test network shared seed, 32+ bytes";
const WAIT: Duration = Duration::from_secs(10);

/// Commands a reactor's queue holds before senders wait (the figure
/// `Node::send_on`'s docs give).
const COMMAND_QUEUE: usize = 16_384;

fn seed(name: &str) -> Vec<u8> {
    format!("{name:-<40}").into_bytes()
}

fn loopback() -> UdpConfig {
    UdpConfig::bound_to("127.0.0.1:0".parse().unwrap())
}

/// A server on UDP and WebSocket (both on loopback); returns the
/// WebSocket URL too.
fn server(config: NodeConfig) -> (Node, String) {
    let node = Node::start(config).unwrap();
    let ws = node
        .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
        .unwrap();
    (node, format!("ws://{ws}/"))
}

fn server_config(name: &str, reactors: usize) -> NodeConfig {
    NodeConfig::new(&seed(name), SHARED)
        .with_udp(loopback())
        .with_reactors(reactors)
}

fn client(name: &str) -> Node {
    Node::start(
        NodeConfig::client(&seed(name), SHARED)
            .with_udp(loopback())
            .with_reactors(1),
    )
    .unwrap()
}

/// The next message on `events`, within `WAIT`.
fn next_message(events: &Events) -> Option<stt::Message> {
    let deadline = Instant::now() + WAIT;
    while let Ok(e) = events.recv_deadline(deadline) {
        if let NodeEvent::Message(m) = e {
            return Some(m);
        }
    }
    None
}

/// A WebSocket-only node of one reactor whose in-reactor handler, on the
/// message "block", holds that reactor until `release` says so (or 30 s):
/// a reactor busy with something long. Everything the application queues
/// for that reactor meanwhile stays queued. With the peer's node and the
/// busy node's own handle on the session between them.
struct Busy {
    node: Node,
    peer: Node,
    session: stt::Session,
    release: Sender<()>,
}

impl Busy {
    fn start(name: &str, send_timeout: Duration) -> Busy {
        let node = Node::start(
            NodeConfig::websocket_only(&seed(&format!("{name}-busy")), SHARED)
                .with_reactors(1)
                .with_send_timeout(send_timeout),
        )
        .unwrap();
        let (blocked_tx, blocked) = crossbeam_channel::bounded(1);
        let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
        node.set_handler(on_reactor(move |message, _replies| {
            if message.payload == b"block" {
                let _ = blocked_tx.send(());
                // Deliberately against the handler's contract: this reactor
                // stands for one busy with a long turn.
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
            }
        }))
        .unwrap();
        let addr = node
            .start_websocket_server("127.0.0.1:0".parse().unwrap(), Default::default())
            .unwrap();
        let peer = Node::start(
            NodeConfig::websocket_only(&seed(&format!("{name}-peer")), SHARED).with_reactors(1),
        )
        .unwrap();
        let dialled = peer.connect_websocket(&format!("ws://{addr}/")).unwrap();
        // The busy node's own handle on the session the peer opened.
        let session = node
            .session(dialled.id())
            .expect("the accepting side holds it");
        dialled.send(b"block").unwrap();
        blocked.recv_timeout(WAIT).expect("the handler blocks");
        Busy {
            node,
            peer,
            session,
            release,
        }
    }

    /// Queues numbered messages with `try_send` until it refuses; returns
    /// how many it took.
    fn fill(&self) -> usize {
        let mut accepted = 0;
        for i in 0..=COMMAND_QUEUE as u32 {
            match self.session.try_send(&i.to_be_bytes()) {
                Ok(()) => accepted += 1,
                Err(SendError::QueueFull) => return accepted,
                Err(e) => panic!("try_send {i}: {e}"),
            }
        }
        panic!("try_send took {accepted} messages into a queue of {COMMAND_QUEUE}")
    }
}

#[test]
fn try_send_refuses_with_queue_full_while_the_reactor_is_busy() {
    let busy = Busy::start("try-send", Duration::from_secs(30));
    let accepted = busy.fill();
    assert_eq!(
        accepted, COMMAND_QUEUE,
        "the queue takes its documented depth"
    );
    // Refused at once, by the handle and by the node alike, however often.
    for _ in 0..3 {
        let t = Instant::now();
        assert!(matches!(
            busy.session.try_send(b"more"),
            Err(SendError::QueueFull)
        ));
        assert!(matches!(
            busy.node.try_send(busy.session.id(), b"more"),
            Err(SendError::QueueFull)
        ));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    // Once the reactor is free, it drains: every message it took arrives,
    // in order, and nothing it refused.
    busy.release.send(()).unwrap();
    busy.session
        .send_timeout(b"after", WAIT)
        .expect("room again once the reactor drains");
    let events = busy.peer.events();
    for i in 0..accepted as u32 {
        let m = next_message(&events).unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(m.payload, i.to_be_bytes(), "message {i}");
    }
    assert_eq!(next_message(&events).unwrap().payload, b"after");
}

#[test]
fn send_timeout_and_send_give_up_when_the_queue_stays_full() {
    let send_timeout = Duration::from_millis(400);
    let busy = Busy::start("send-timeout", send_timeout);
    busy.fill();
    // send_timeout waits its own timeout, then gives up.
    let wait = Duration::from_millis(250);
    let t = Instant::now();
    let r = busy.session.send_timeout(b"late", wait);
    let took = t.elapsed();
    assert!(matches!(r, Err(SendError::QueueFull)), "{r:?}");
    assert!(took >= wait, "gave up after {took:?}, before {wait:?}");
    assert!(took < wait + Duration::from_secs(2), "{took:?}");
    // send waits NodeConfig::send_timeout, then gives up likewise.
    let t = Instant::now();
    let r = busy.node.send(busy.session.id(), b"late");
    let took = t.elapsed();
    assert!(matches!(r, Err(SendError::QueueFull)), "{r:?}");
    assert!(took >= send_timeout, "gave up after {took:?}");
    assert!(took < send_timeout + Duration::from_secs(2), "{took:?}");
    // Neither was queued: after the queue's own messages comes "after".
    busy.release.send(()).unwrap();
    busy.session.send_timeout(b"after", WAIT).unwrap();
    let events = busy.peer.events();
    let mut got = 0;
    loop {
        let m = next_message(&events).expect("the queue drains");
        if m.payload == b"after" {
            break;
        }
        assert_eq!(m.payload.len(), 4, "only the queue's own messages");
        got += 1;
    }
    assert_eq!(got, COMMAND_QUEUE);
}

#[test]
fn connect_returns_once_the_server_holds_the_session() {
    let (server, ws_url) = server(server_config("connect-server", 2));
    let client = client("connect-client");
    let server_addr = server.udp_local_addr().unwrap();
    let mut opened = Vec::new();
    for i in 0..12 {
        let s = if i % 3 == 2 {
            client.connect_websocket(&ws_url).unwrap()
        } else {
            client.connect_udp(server_addr).unwrap()
        };
        // Listed by the server the moment connect returns: no wait.
        assert!(
            server.sessions().contains(&s.id()),
            "connect {i} ({}) returned before the server listed {}",
            s.info().transport,
            s.id()
        );
        assert!(s.info().initiator && s.is_open());
        assert_eq!(s.peer_node(), server.node_id());
        opened.push(s.id());
    }
    // The server's application hears of each, once, as the accepting side.
    let events = server.events();
    let mut established = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while established.len() < opened.len() {
        match events.recv_deadline(deadline) {
            Ok(NodeEvent::SessionEstablished(info)) => {
                assert!(!info.initiator);
                assert_eq!(info.peer_node, client.node_id());
                assert!(established.insert(info.id), "{} established twice", info.id);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("{} of {} established: {e}", established.len(), opened.len()),
        }
    }
    assert_eq!(established, opened.iter().copied().collect());
}

#[test]
fn the_accepting_side_gets_a_handle_with_node_session() {
    let (server, ws_url) = server(server_config("handle-server", 2));
    let client = client("handle-client");
    let client_events = client.events();
    for s in [
        client
            .connect_udp(server.udp_local_addr().unwrap())
            .unwrap(),
        client.connect_websocket(&ws_url).unwrap(),
    ] {
        let h = server
            .session(s.id())
            .expect("a handle on the accepted session");
        assert_eq!(h.id(), s.id());
        assert_eq!(h.peer_node(), client.node_id());
        assert!(!h.info().initiator && h.is_open());
        assert_eq!(h.info().transport, s.info().transport);
        assert!(h.stats().is_some());
        h.send(b"from the accepting side").unwrap();
        let m = next_message(&client_events).expect("the reply");
        assert_eq!(
            (m.session, m.peer_node, m.payload.as_slice()),
            (s.id(), server.node_id(), &b"from the accepting side"[..])
        );
        // Closing through it closes it on both sides.
        h.close().unwrap();
        let deadline = Instant::now() + WAIT;
        while (s.is_open() || h.is_open()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!h.is_open() && !s.is_open());
        assert!(matches!(h.send(b"x"), Err(SendError::SessionClosed(id)) if id == s.id()));
        assert!(server.session(s.id()).is_none());
    }
    assert!(server.session(SessionId(0xDEAD)).is_none());
}

/// What a node's application heard of its sessions, checked as it comes:
/// each established once, closed once and after it was established, no
/// message after its session's close.
#[derive(Default)]
struct Lifecycle {
    established: HashSet<SessionId>,
    closed: HashSet<SessionId>,
}

impl Lifecycle {
    /// Takes events until `until`, or until `all` have closed.
    fn drain(&mut self, events: &Events, all: &HashSet<SessionId>, until: Instant) {
        while self.closed.len() < all.len() {
            let Ok(e) = events.recv_deadline(until) else {
                return;
            };
            self.take(e);
        }
    }

    fn take(&mut self, e: NodeEvent) {
        match e {
            NodeEvent::SessionEstablished(info) => {
                assert!(
                    self.established.insert(info.id),
                    "{} established twice",
                    info.id
                );
            }
            NodeEvent::SessionClosed { session, .. } => {
                assert!(
                    self.established.contains(&session),
                    "{session} closed first"
                );
                assert!(self.closed.insert(session), "{session} closed twice");
            }
            NodeEvent::Message(m) => {
                assert!(
                    !self.closed.contains(&m.session),
                    "a message after its close"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn session_events_are_never_dropped_when_the_events_channel_is_full() {
    // A channel of one, not drained while six sessions open, carry messages
    // and close: every lifecycle event must still arrive, once, in order,
    // once the application drains it. (UDP only: a node whose application
    // is behind stops reading WebSocket, new connections included.)
    let server = Node::start(server_config("full-server", 1).with_queue_depth(1)).unwrap();
    let addr = server.udp_local_addr().unwrap();
    let clients = [client("full-client-a"), client("full-client-b")];
    let mut sessions = Vec::new();
    for c in &clients {
        for _ in 0..3 {
            sessions.push(c.connect_udp(addr).unwrap());
        }
    }
    for s in &sessions {
        for i in 0..5u8 {
            s.send(&[i]).unwrap();
        }
    }
    for s in &sessions {
        s.close().unwrap();
    }
    // A slow application: it drains only once the server has closed every
    // session, and a moment later.
    let deadline = Instant::now() + WAIT;
    while server.session_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.session_count(), 0);
    std::thread::sleep(Duration::from_millis(500));
    let ids: HashSet<SessionId> = sessions.iter().map(|s| s.id()).collect();
    let events = server.events();
    let mut heard = Lifecycle::default();
    heard.drain(&events, &ids, Instant::now() + WAIT);
    // A moment more: nothing arrives twice.
    heard.drain(&events, &ids, Instant::now() + Duration::from_millis(300));
    assert_eq!(heard.established, ids, "every SessionEstablished arrived");
    assert_eq!(heard.closed, ids, "every SessionClosed arrived");
}

/// Sessions from several nodes over UDP and WebSocket to `server`; each
/// sends `per` messages. Returns who sent on which session.
fn senders(
    server: &Node,
    ws_url: &str,
    name: &str,
    per: u8,
) -> (Vec<Node>, HashMap<SessionId, NodeId>) {
    let nodes = vec![
        client(&format!("{name}-a")),
        client(&format!("{name}-b")),
        client(&format!("{name}-c")),
    ];
    let addr = server.udp_local_addr().unwrap();
    let mut who = HashMap::new();
    let sessions = [
        nodes[0].connect_udp(addr).unwrap(),
        nodes[0].connect_websocket(ws_url).unwrap(),
        nodes[1].connect_websocket(ws_url).unwrap(),
        nodes[2].connect_udp(addr).unwrap(),
        nodes[2].connect_udp(addr).unwrap(),
    ];
    for s in &sessions {
        who.insert(s.id(), s.node().node_id());
        for i in 0..per {
            s.send(&[i]).unwrap();
        }
    }
    (nodes, who)
}

#[test]
fn every_message_carries_its_senders_node_id() {
    let (server, ws_url) = server(server_config("peer-server", 2));
    let (nodes, who) = senders(&server, &ws_url, "peer-client", 20);
    let events = server.events();
    for _ in 0..who.len() * 20 {
        let m = next_message(&events).expect("every message arrives on loopback");
        assert_eq!(Some(&m.peer_node), who.get(&m.session), "{m:?}");
    }
    // And the other way: replies name the server.
    for node in &nodes {
        let events = node.events();
        for (&id, &from) in &who {
            if from == node.node_id() {
                server.send(id, b"reply").unwrap();
                let m = next_message(&events).unwrap();
                assert_eq!((m.session, m.peer_node), (id, server.node_id()));
            }
        }
    }
}

/// A server whose handler (made by `make`, given where to report) reports
/// each message's (session, peer_node) and echoes it: both must name the
/// right nodes.
fn handler_sees_senders<H: Handler>(
    name: &str,
    make: impl FnOnce(Sender<(SessionId, NodeId)>) -> H,
) {
    let (server, ws_url) = server(server_config(name, 2));
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(make(tx)).unwrap();
    let (nodes, who) = senders(&server, &ws_url, &format!("{name}-client"), 10);
    for _ in 0..who.len() * 10 {
        let (session, peer_node) = rx.recv_timeout(WAIT).expect("every message arrives");
        assert_eq!(who.get(&session), Some(&peer_node));
    }
    for node in &nodes {
        let events = node.events();
        let mine = who.values().filter(|&&n| n == node.node_id()).count();
        for _ in 0..mine * 10 {
            let m = next_message(&events).expect("every echo arrives");
            assert_eq!(m.peer_node, server.node_id());
            assert_eq!(who.get(&m.session), Some(&node.node_id()));
        }
    }
}

#[test]
fn handlers_on_workers_and_reactors_see_the_senders_node_id() {
    handler_sees_senders("worker-peer", |tx| {
        on_worker(move |message, replies| {
            let _ = tx.send((message.session, message.peer_node));
            replies.send(message.session, &message.payload).unwrap();
        })
    });
    handler_sees_senders("reactor-peer", |tx| {
        on_reactor(move |message, replies| {
            let _ = tx.send((message.session, message.peer_node));
            replies.send(message.session, &message.payload).unwrap();
        })
    });
}
