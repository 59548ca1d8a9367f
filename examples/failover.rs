//! Send over UDP, fall back to WebSocket for the same peer when UDP fails.
//!
//! Two ways, both shown:
//!
//! 1. **Move the session** (`move_session_to_websocket`): the same session —
//!    same id, same keys, no new handshake — continues over a WebSocket
//!    connection, and can move back to UDP later. Nothing about the session
//!    is lost in the failover.
//! 2. **Two sessions** (`send_with_failover`): keep a UDP session and a
//!    WebSocket session to the peer; each message goes over UDP while that
//!    session lives, over WebSocket otherwise.
//!
//! Run: `cargo run --release --example failover`

use std::time::Duration;

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::UdpConfig;
use stt::transport::ws::WsConfig;

fn receive(node: &Node, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        if let NodeEvent::Message {
            session,
            payload,
            peer,
            ..
        } = node.events().recv_timeout(Duration::from_secs(5))?
        {
            println!(
                "{what} got {:?} on session {session} from {peer}",
                String::from_utf8_lossy(&payload)
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
    let client =
        Node::start(NodeConfig::new(b"failover example client node seed!!", SHARED).with_udp(udp))?;

    // 1. One session, two paths.
    let session = client.connect_udp(udp_addr)?;
    client.send(session.id, b"over UDP")?;
    receive(&server, "server")?;
    // UDP stops getting through (a firewall, a captive portal…): move on.
    client.move_session_to_websocket(session.id, &ws_url)?;
    client.send(session.id, b"same session, now over WebSocket")?;
    receive(&server, "server")?;
    server.send(session.id, b"the server answers over the new path")?;
    receive(&client, "client")?;
    client.move_session_to_udp(session.id, udp_addr)?;
    client.send(session.id, b"back on UDP, still no new handshake")?;
    receive(&server, "server")?;

    // 2. Two sessions, per-message failover.
    let sure = client.connect_websocket(&ws_url)?;
    let fast = client.connect_udp(udp_addr)?;
    let used = client.send_with_failover(fast.id, sure.id, b"first: UDP is up")?;
    println!(
        "message went over {}",
        if used == fast.id { "UDP" } else { "WebSocket" }
    );
    receive(&server, "server")?;
    client.close_session(fast.id)?;
    std::thread::sleep(Duration::from_millis(100));
    let used = client.send_with_failover(fast.id, sure.id, b"second: UDP session gone")?;
    println!(
        "message went over {}",
        if used == fast.id { "UDP" } else { "WebSocket" }
    );
    receive(&server, "server")?;
    Ok(())
}
