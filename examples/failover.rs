//! Send over UDP, fall back to WebSocket for the same peer when UDP fails.
//!
//! The client keeps two sessions to the server: UDP for speed, WebSocket for
//! when UDP does not get through. Here UDP "fails" because the client closes
//! its UDP session (as an idle timeout would after a firewall starts dropping
//! UDP); `send_with_failover` carries on over WebSocket.
//!
//! Run: `cargo run --release --example failover`

use std::time::Duration;

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::UdpConfig;
use stt::transport::ws::WsConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SHARED: &[u8] = b"failover example network shared seed";
    let udp = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(b"failover example server node seed!!", SHARED).with_udp(udp.clone()),
    )?;
    let ws_addr = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    let client =
        Node::start(NodeConfig::new(b"failover example client node seed!!", SHARED).with_udp(udp))?;

    let fast = client.connect_udp(server.udp_local_addr().ok_or("no UDP")?)?;
    let sure = client.connect_websocket(&format!("ws://{ws_addr}/"))?;

    let used = client.send_with_failover(fast.id, sure.id, b"first: UDP is up")?;
    println!(
        "message 1 went over {}",
        if used == fast.id { "UDP" } else { "WebSocket" }
    );

    client.close_session(fast.id)?;
    std::thread::sleep(Duration::from_millis(100));
    let used = client.send_with_failover(fast.id, sure.id, b"second: UDP is gone")?;
    println!(
        "message 2 went over {}",
        if used == fast.id { "UDP" } else { "WebSocket" }
    );

    let events = server.events();
    let mut got = 0;
    while got < 2 {
        if let NodeEvent::Message { payload, peer, .. } =
            events.recv_timeout(Duration::from_secs(5))?
        {
            println!(
                "server got {:?} from {peer}",
                String::from_utf8_lossy(&payload)
            );
            got += 1;
        }
    }
    Ok(())
}
