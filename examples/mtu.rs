//! Jumbo (8972) and restrictive (512) MTU settings, with a message larger
//! than either fragmented by the stream layer and reassembled whole.
//!
//! Run: `cargo run --release --example mtu`

use std::time::Duration;

use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SHARED: &[u8] = b"mtu example network shared seed, 32+";
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
            NodeConfig::new(b"mtu example server node seed, 32+ b", SHARED).with_udp(udp.clone()),
        )?;
        let client = Node::start(
            NodeConfig::client(b"mtu example client node seed, 32+ b", SHARED).with_udp(udp),
        )?;
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
