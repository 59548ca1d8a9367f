//! The README's quick start: a server and a client node, one session over
//! UDP, one sealed message.
//!
//! Run: `cargo run --release --example quick_start`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every node of a network shares the shared seed; each has its own node
    // seed. Real deployments load both from a secret store.
    let shared = b"my network's shared seed: 32+ bytes";
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(b"server node seed: 32 bytes or more", shared).with_udp(loopback.clone()),
    )?;
    let client = Node::start(
        NodeConfig::client(b"client node seed: 32 bytes or more", shared).with_udp(loopback),
    )?;

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
