//! Answering from the reactor: an echo server whose handler runs on the
//! reactor thread that received the message (`stt::on_reactor`), and a
//! client that times round trips the same way. Nothing crosses a thread but
//! the datagrams: the lowest-latency way to answer.
//!
//! Run: `cargo run --release --example in_reactor_echo`

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::{on_reactor, Node, NodeConfig, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "f96a2330e48b611ffe5411ae1f4609cac0a09e6b028206aecd3647849d4bc9c4";
const SERVER_SEED: &str = "19161fc9a708ef7bf36d0dda17621a789fb60586f0d2eb89df7db6eb00a17b93";
const CLIENT_SEED: &str = "366de645b3f77d2f35a42abea1910fadf31a8515d789aef7b232a5a7402587f3";

const ROUND_TRIPS: usize = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED)).with_udp(loopback.clone()),
    )?;
    let client =
        Node::start(NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED)).with_udp(loopback))?;

    // The server: echo every message from the reactor. The handler must not
    // block; it sends through `replies`, which the reactor seals as soon as
    // the handler returns.
    server.set_handler(on_reactor(|message, replies| {
        if let Err(e) = replies.send(message.session, &message.payload) {
            eprintln!("echo refused: {e}");
        }
        // The buffer goes back to the node's pool for a later message.
        replies.recycle(message.payload);
    }))?;

    // The client: each echo records its round trip and sends the next ping
    // from the reactor too. The state is touched by this node's reactor
    // only, so its lock is never contended.
    let started = Arc::new(Mutex::new((
        Instant::now(),
        Vec::with_capacity(ROUND_TRIPS),
    )));
    let (done_tx, done) = mpsc::sync_channel(1);
    let state = started.clone();
    client.set_handler(on_reactor(move |message, replies| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let rtt = s.0.elapsed();
        s.1.push(rtt);
        if s.1.len() == ROUND_TRIPS {
            let _ = done_tx.try_send(());
            return;
        }
        s.0 = Instant::now();
        let _ = replies.send(message.session, &message.payload);
        replies.recycle(message.payload);
    }))?;

    let addr = server
        .udp_local_addr()
        .ok_or("the server has no UDP socket")?;
    let session = client.connect_udp(addr)?;
    started.lock().unwrap_or_else(|e| e.into_inner()).0 = Instant::now();
    session.send(b"ping: 64 bytes, sealed, echoed from the server's reactor")?;
    // A lost datagram would stop the ping-pong; on loopback none is lost.
    done.recv_timeout(Duration::from_secs(30))?;

    let mut rtts = std::mem::take(&mut started.lock().unwrap_or_else(|e| e.into_inner()).1);
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    println!(
        "{ROUND_TRIPS} round trips: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(1.0)
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
