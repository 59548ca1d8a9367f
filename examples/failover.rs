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
    const SHARED: &[u8] = b"failover example network shared seed";
    let udp = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(b"failover example server node seed!!", SHARED).with_udp(udp.clone()),
    )?;
    let ws_url = format!(
        "ws://{}/",
        server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?
    );
    let udp_addr = server.udp_local_addr().ok_or("no UDP")?;
    let client = Node::start(
        NodeConfig::client(b"failover example client node seed!!", SHARED).with_udp(udp),
    )?;
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
