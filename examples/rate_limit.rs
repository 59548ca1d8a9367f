//! A token-bucket bandwidth limit (bytes per second, burst) on a transport.
//!
//! The client's UDP transport is wrapped in `RateLimited`: 1 MB/s with
//! 64 KB bursts. Sending 2 MB takes about two seconds; nothing is lost —
//! what exceeds the budget waits in a bounded queue and leaves as the bucket
//! refills, without blocking the reactor.
//!
//! Run: `cargo run --release --example rate_limit`

use std::time::{Duration, Instant};

use stt::transport::rate_limit::RateLimited;
use stt::transport::udp;
use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "0718dcb3cdf1ebb2ab1a77ac130b2ce1a262c5ab30f5e6cf3495f1b72ddbbae1";
const SERVER_SEED: &str = "060a393d764fcf8dcfce3ef827afbc281acac78a7af45cc16c60c785b3e945d5";
const CLIENT_SEED: &str = "8ffdca34bac8770511e6243226cd1697f534ed3aa6f3151207ef932e51666084";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED))
            .with_udp(loopback.clone())
            .with_reactors(1),
    )?;
    // The client runs no UDP socket of its own: only the limited one below.
    let client = Node::start(
        NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED))
            .without_udp()
            .with_reactors(1),
    )?;
    let (socket, _) = udp::bind(&loopback)?;
    let limited = RateLimited::new(socket, 1_000_000, 64_000, 4096);
    let via = client.add_transport(Box::new(limited))?;
    let session = client.connect(via, server.udp_local_addr().ok_or("no UDP")?)?;

    let start = Instant::now();
    let chunk = vec![0x55u8; 10_000];
    for _ in 0..200 {
        session.send(&chunk)?;
    }
    let events = server.events();
    let mut bytes = 0usize;
    while bytes < 200 * chunk.len() {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(10))? {
            bytes += message.payload.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{bytes} bytes in {secs:.2} s = {:.2} MB/s (limit 1 MB/s, burst 64 KB)",
        bytes as f64 / secs / 1e6
    );
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
