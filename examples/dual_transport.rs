//! One server on UDP and WebSocket, one client on each, messages both ways,
//! clean stop.
//!
//! Run: `cargo run --release --example dual_transport`

use std::time::Duration;

use stt::node::{Node, NodeConfig, NodeEvent};
use stt::transport::udp::UdpConfig;
use stt::transport::ws::WsConfig;

const SHARED: &[u8] = b"dual transport example shared seed!!";

fn node(seed: &[u8]) -> Result<Node, Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    Ok(Node::start(
        NodeConfig::new(seed, SHARED).with_udp(loopback),
    )?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = node(b"dual transport example server node seed")?;
    let ws_addr = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    println!(
        "server listening on UDP {:?} and ws://{ws_addr}",
        server.udp_local_addr()
    );

    let udp_client = node(b"dual transport example UDP client seed!!")?;
    let ws_client = node(b"dual transport example WS client seed!!!")?;
    let via_udp = udp_client.connect_udp(server.udp_local_addr().ok_or("no UDP")?)?;
    let via_ws = ws_client.connect_websocket(&format!("ws://{ws_addr}/"))?;
    println!(
        "connected via {} and via {}",
        via_udp.transport, via_ws.transport
    );

    udp_client.send(via_udp.id, b"Via UDP")?;
    ws_client.send(via_ws.id, b"Via WS")?;

    // The server answers each message on the session it came from.
    let events = server.events();
    let mut answered = 0;
    while answered < 2 {
        match events.recv_timeout(Duration::from_secs(5))? {
            NodeEvent::Message {
                session,
                payload,
                peer,
                ..
            } => {
                println!(
                    "server got {:?} from {peer}",
                    String::from_utf8_lossy(&payload)
                );
                server.send(
                    session,
                    format!("echo: {}", String::from_utf8_lossy(&payload)).as_bytes(),
                )?;
                answered += 1;
            }
            NodeEvent::SessionEstablished(info) => {
                println!("server: new session over {}", info.transport)
            }
            _ => {}
        }
    }
    for (name, client) in [("UDP client", &udp_client), ("WS client", &ws_client)] {
        let events = client.events();
        loop {
            if let NodeEvent::Message { payload, .. } =
                events.recv_timeout(Duration::from_secs(5))?
            {
                println!("{name} got {:?}", String::from_utf8_lossy(&payload));
                break;
            }
        }
    }
    println!("server stats: {}", serde_json::to_string(&server.stats())?);
    udp_client.stop();
    ws_client.stop();
    server.stop();
    Ok(())
}
