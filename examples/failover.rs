//! Send over UDP, fall back to WebSocket for the same peer when UDP fails.
//!
//! Two ways, both shown:
//!
//! 1. **Move the session** (`Session::move_to_websocket`): the same session —
//!    same id, same keys, no new handshake — continues over a WebSocket
//!    connection, and can move back to UDP later. Nothing about the session
//!    is lost in the failover.
//! 2. **Two sessions** (`Node::send_with_failover`): keep a UDP session and a
//!    WebSocket session to the peer; each message goes over UDP while that
//!    session lives, over WebSocket otherwise (when the UDP send fails with
//!    an error for which `SendError::is_path_failure` is true).
//!
//! Run: `cargo run --release --example failover`

use std::time::Duration;

use stt::{Events, Node, NodeConfig, NodeEvent, SessionId, UdpConfig, WsConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "0fd013911a5161aea7d32388e6c3329334ff8ddabcc851227b82cc51a4769da6";
const SERVER_SEED: &str = "aa1941db566ba13cb1c64fe9ad054f5e8098a878cfd94f82d70f01d61a45e4d5";
const CLIENT_SEED: &str = "7dd2498c3eacc6a24d471245c5f7c4478a1098bbccc3efd4dea2423d116875ab";

/// Waits for the next message on `events` and prints it.
fn receive(events: &Events, who: &str) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
            println!(
                "{who} got {:?} on session {}",
                String::from_utf8_lossy(&message.payload),
                message.session
            );
            return Ok(());
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let udp = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server =
        Node::start(NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED)).with_udp(udp.clone()))?;
    let ws_url = format!(
        "ws://{}/",
        server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?
    );
    let udp_addr = server.udp_local_addr().ok_or("no UDP")?;
    let client =
        Node::start(NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED)).with_udp(udp))?;
    let (at_server, at_client) = (server.events(), client.events());

    // 1. One session, two paths.
    let session = client.connect_udp(udp_addr)?;
    session.send(b"over UDP")?;
    receive(&at_server, "server")?;
    // UDP stops getting through (a firewall, a captive portal…): move on.
    session.move_to_websocket(&ws_url)?;
    session.send(b"same session, now over WebSocket")?;
    receive(&at_server, "server")?;
    // Both sides know the session by the same id.
    server.send(session.id(), b"the server answers over the new path")?;
    receive(&at_client, "client")?;
    session.move_to_udp(udp_addr)?;
    session.send(b"back on UDP, still no new handshake")?;
    receive(&at_server, "server")?;

    // 2. Two sessions, per-message failover.
    let sure = client.connect_websocket(&ws_url)?;
    let fast = client.connect_udp(udp_addr)?;
    let over = |used: SessionId| {
        if used == fast.id() {
            "UDP"
        } else {
            "WebSocket"
        }
    };
    let used = client.send_with_failover(fast.id(), sure.id(), b"first: UDP is up")?;
    println!("message went over {}", over(used));
    receive(&at_server, "server")?;
    fast.close()?;
    std::thread::sleep(Duration::from_millis(100));
    let used = client.send_with_failover(fast.id(), sure.id(), b"second: UDP session gone")?;
    println!("message went over {}", over(used));
    receive(&at_server, "server")?;
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
