//! A WebSocket client that rides out a server restart with exponential
//! backoff.
//!
//! The server stops (its CLOSE frames tell the client its session ended) and
//! comes back on the same port a moment later. The client notices the closed
//! session, reconnects with exponential backoff and jitter
//! (`ReconnectPolicy`), runs a fresh handshake and carries on.
//!
//! Run: `cargo run --release --example reconnecting_ws`

use std::net::SocketAddr;
use std::time::Duration;

use stt::transport::ws::ReconnectPolicy;
use stt::{ConnectError, Node, NodeConfig, NodeEvent, Session, WsConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "7ff15ff91701fba8c79a1b1e301a678f7cdd14a27f682911973c9a0f692146a3";
const SERVER_SEED: &str = "8d1b58defffab835c7ef8d1ff2d7a005ebf6d08972a1fc24c9132a7f0c47671e";
const CLIENT_SEED: &str = "3ea22a448a1cba68a7e383fbe472741e283fbc5005a53a16141d117dc2b2a397";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn server(addr: SocketAddr) -> Result<(Node, SocketAddr), Error> {
    let node = Node::start(NodeConfig::websocket_only(
        &hex(SERVER_SEED),
        &hex(SHARED_SEED),
    ))?;
    let bound = node.start_websocket_server(addr, WsConfig::default())?;
    Ok((node, bound))
}

/// Connects, retrying by `policy` while the server is away. Only failures
/// of the connection or the handshake are worth a retry: a malformed URL or
/// a stopped node is not going to get better.
fn connect(client: &Node, url: &str, policy: &ReconnectPolicy) -> Result<Session, Error> {
    let mut attempt = 0;
    loop {
        match client.connect_websocket(url) {
            Ok(session) => return Ok(session),
            Err(
                e @ (ConnectError::Transport(_)
                | ConnectError::Handshake { .. }
                | ConnectError::TimedOut(_)),
            ) => {
                attempt += 1;
                let jitter = (attempt as f64 * 0.618).fract();
                let delay = policy
                    .delay(attempt, jitter)
                    .ok_or(format!("gave up after {attempt} attempts: {e}"))?;
                println!("attempt {attempt} failed ({e}); retrying in {delay:?}");
                std::thread::sleep(delay);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<(), Error> {
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_retries: Some(20),
        ..ReconnectPolicy::default()
    };
    let (first, addr) = server("127.0.0.1:0".parse()?)?;
    let url = format!("ws://{addr}/");
    let client = Node::start(NodeConfig::websocket_only(
        &hex(CLIENT_SEED),
        &hex(SHARED_SEED),
    ))?;
    let session = connect(&client, &url, &policy)?;
    session.send(b"before the restart")?;
    println!("sent on session {}", session.id());

    // The server restarts: it stops, then comes back 500 ms later.
    first.stop();
    drop(first);
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        server(addr)
    });

    // The client sees its session end, and reconnects by the policy.
    let events = client.events();
    loop {
        if let NodeEvent::SessionClosed { session, reason } =
            events.recv_timeout(Duration::from_secs(5))?
        {
            println!("session {session} closed: {reason}");
            break;
        }
    }
    let session = connect(&client, &url, &policy)?;
    let (second, _) = restarted.join().map_err(|_| "server thread panicked")??;
    session.send(b"after the restart")?;
    let events = second.events();
    loop {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
            println!(
                "restarted server got {:?} on session {}",
                String::from_utf8_lossy(&message.payload),
                message.session
            );
            break;
        }
    }
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
