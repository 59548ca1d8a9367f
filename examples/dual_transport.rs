//! One server on UDP and WebSocket, one client on each, messages both ways,
//! clean stop.
//!
//! Run: `cargo run --release --example dual_transport`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig, WsConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "cb935c2f8a106a9edee3a72c627028c23b76f479a980a49621dd5a9af8159a19";
const SERVER_SEED: &str = "d7787e3e880679a644849686e4ee4fdcef549eb0530451611cbc3ee752a2c814";
const UDP_CLIENT_SEED: &str = "1989cbe13c8a656e2bec7c22e8cd5d6c82bcb2db355093d6a6f047e01ab58cbe";
const WS_CLIENT_SEED: &str = "a569d71c191901c345e324ded4481a0e7ad3bbdec1a56a60f1c1d56eb4712374";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED)).with_udp(loopback.clone()),
    )?;
    let ws_addr = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    let udp_addr = server.udp_local_addr().ok_or("no UDP")?;
    println!("server listening on UDP {udp_addr} and ws://{ws_addr}/");

    // A client on each transport. The WebSocket one needs no UDP socket.
    let udp_client = Node::start(
        NodeConfig::client(&hex(UDP_CLIENT_SEED), &hex(SHARED_SEED)).with_udp(loopback),
    )?;
    let ws_client = Node::start(NodeConfig::websocket_only(
        &hex(WS_CLIENT_SEED),
        &hex(SHARED_SEED),
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

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
