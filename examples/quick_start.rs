//! The README's quick start: a server and a client node, one session over
//! UDP, one sealed message.
//!
//! Run: `cargo run --release --example quick_start`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "dd5b6cca8d538381801a36dab97db70a0153c999359f3f77edff42e23303fa0a";
const SERVER_SEED: &str = "7e1117365320dbe012c0fa3403cdb5c9c069bea6c466e7b73356e7917b21177a";
const CLIENT_SEED: &str = "2e8e03192a257cf758545116699535de82a3382aa4b1e38b139f2f39d1032ac8";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every node of a network shares the shared seed; each has its own node
    // seed (the constants above).
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED)).with_udp(loopback.clone()),
    )?;
    let client =
        Node::start(NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED)).with_udp(loopback))?;

    // Noise handshake over UDP; returns a `Session` handle once both sides
    // hold the session.
    let addr = server
        .udp_local_addr()
        .ok_or("the server has no UDP socket")?;
    let session = client.connect_udp(addr)?;
    println!("session {} with node {}", session.id(), session.peer_node());
    session.send(b"hello")?; // sealed; fragmented when over the MTU

    // Every message carries the sender's authenticated node id.
    let events = server.events();
    loop {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
            println!(
                "server got {:?} from node {} at {}",
                String::from_utf8_lossy(&message.payload),
                message.peer_node,
                message.peer_addr
            );
            break;
        }
    }
    println!("{:?}", server.udp_stats()); // bytes/packets sent, received, dropped…
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
