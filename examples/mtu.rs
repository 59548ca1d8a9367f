//! Jumbo (8972) and restrictive (512) MTU settings, with a message larger
//! than either fragmented by the stream layer and reassembled whole.
//!
//! Run: `cargo run --release --example mtu`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "c3dc1403db340e471733f4230a55885680e56dbbf1eee1e73db5485056e8c0f3";
const SERVER_SEED: &str = "44f53ee4f627d34de1b5d6600665ea6f376b103f9787f71d368ecf97dc642950";
const CLIENT_SEED: &str = "348c58174b6e980db1a8e85f6f769a5602667b8e29b799a51f09e87d2b938faf";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for mtu in [8972usize, 1472, 512] {
        let udp = UdpConfig {
            max_packet_size: mtu,
            // A 200 KB message leaves as one burst of datagrams: the
            // receiver's socket buffer must hold it (the 64 KiB default
            // would overflow at 8972-byte datagrams). The kernel caps this at
            // net.core.rmem_max; `udp_socket_info()` says what it granted.
            receive_buffer_size: 4 << 20,
            send_buffer_size: 4 << 20,
            ..UdpConfig::bound_to("127.0.0.1:0".parse()?)
        };
        let server = Node::start(
            NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED)).with_udp(udp.clone()),
        )?;
        let client =
            Node::start(NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED)).with_udp(udp))?;
        let session = client.connect_udp(server.udp_local_addr().ok_or("no UDP")?)?;
        let before = client.udp_stats().ok_or("no UDP")?;
        session.send(&message)?;
        let events = server.events();
        let got = loop {
            if let NodeEvent::Message(m) = events.recv_timeout(Duration::from_secs(5))? {
                break m.payload;
            }
        };
        let after = client.udp_stats().ok_or("no UDP")?;
        let datagrams = after.packets_sent - before.packets_sent;
        let bytes = after.bytes_sent - before.bytes_sent;
        println!(
            "MTU {mtu:>5}: {} bytes as {datagrams} datagrams of at most {mtu} bytes ({bytes} on the wire), reassembled {}",
            message.len(),
            if got == message { "intact" } else { "CORRUPT" }
        );
        assert!(got == message);
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
