//! One server on UDP and WebSocket, one client on each, messages both ways,
//! clean stop.
//!
//! Run: `cargo run --release --example dual_transport`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig, WsConfig};

const SHARED: &[u8] = b"dual transport example shared seed!!";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(b"dual transport example server node seed", SHARED)
            .with_udp(loopback.clone()),
    )?;
    let ws_addr = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    let udp_addr = server.udp_local_addr().ok_or("no UDP")?;
    println!("server listening on UDP {udp_addr} and ws://{ws_addr}/");

    // A client on each transport. The WebSocket one needs no UDP socket.
    let udp_client = Node::start(
        NodeConfig::client(b"dual transport example UDP client seed!!", SHARED).with_udp(loopback),
    )?;
    let ws_client = Node::start(NodeConfig::websocket_only(
        b"dual transport example WS client seed!!!",
        SHARED,
    ))?;
    let via_udp = udp_client.connect_udp(udp_addr)?;
    let via_ws = ws_client.connect_websocket(&format!("ws://{ws_addr}/"))?;
    println!(
        "connected via {} and via {}",
        via_udp.info().transport,
        via_ws.info().transport
    );

    via_udp.send(b"Via UDP")?;
    via_ws.send(b"Via WS")?;

    // The server answers each message on the session it came from.
    let events = server.events();
    let mut answered = 0;
    while answered < 2 {
        match events.recv_timeout(Duration::from_secs(5))? {
            NodeEvent::Message(message) => {
                let text = String::from_utf8_lossy(&message.payload);
                println!(
                    "server got {text:?} from node {} at {}",
                    message.peer_node, message.peer_addr
                );
                server.send(message.session, format!("echo: {text}").as_bytes())?;
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
            if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
                println!("{name} got {:?}", String::from_utf8_lossy(&message.payload));
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
