//! A transport of your own, plugged into a node.
//!
//! Transports move opaque bytes: frames are sealed before a transport sees
//! them. Anything that can carry datagrams between addresses and wake a
//! `mio::Poll` can carry stt sessions. This example writes `Chaos`, a
//! transport that wraps another one and drops a share of what it sends — the
//! kind of fault injection a test lab wants — and runs two nodes over it on
//! loopback UDP.
//!
//! Run: `cargo run --release --example custom_transport`

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stt::transport::udp;
use stt::transport::{Transport, TransportCounters, TransportError};
use stt::{Node, NodeConfig, NodeEvent, UdpConfig};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "98b944b42043fd66456521c4f59fb1d5de1ff07744285a8c230599b72985e81f";
const SERVER_SEED: &str = "d1f977d4810ed4b02bae4861df8f58b40de9f0d3dc8b59b3260a1f772b51f3b7";
const CLIENT_SEED: &str = "3347b369aa203a8276bbd6a02b3c07773ee329b16413647b518c68b6de5f3224";

/// Wraps a transport and drops one datagram in `every` that it is asked to
/// send.
#[derive(Debug)]
struct Chaos {
    inner: Box<dyn Transport>,
    every: u64,
    seen: u64,
}

impl Transport for Chaos {
    fn kind(&self) -> &'static str {
        "chaos"
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_datagram_size(&self) -> Option<usize> {
        self.inner.max_datagram_size()
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        self.inner.register(registry, token)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.inner.deregister(registry)
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        self.inner.recv(on_datagram)
    }

    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        self.seen += 1;
        if self.seen % self.every == 0 {
            // Lost on the way: counted as dropped, like a full queue would be.
            TransportCounters::add(&self.inner.counters().packets_dropped, 1);
            return Ok(());
        }
        self.inner.send(to, datagram)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn wants_write(&self) -> bool {
        self.inner.wants_write()
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        self.inner.counters()
    }
}

fn chaos_on_loopback() -> Result<Box<dyn Transport>, TransportError> {
    let (inner, _) = udp::bind(&UdpConfig {
        bind_address: "127.0.0.1".parse().expect("literal address"),
        ..UdpConfig::default()
    })?;
    Ok(Box::new(Chaos {
        inner,
        every: 10,
        seen: 0,
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Nodes without their built-in UDP socket: only the custom transport.
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &hex(SHARED_SEED))
            .without_udp()
            .with_reactors(1),
    )?;
    let client = Node::start(
        NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED))
            .without_udp()
            .with_reactors(1),
    )?;
    let server_transport = chaos_on_loopback()?;
    let server_addr = server_transport.local_addr();
    server.add_transport(server_transport)?;
    let via = client.add_transport(chaos_on_loopback()?)?;

    // The handshake retransmits through the losses.
    let session = client.connect(via, server_addr)?;
    println!(
        "session {} over {:?} to {}",
        session.id(),
        session.info().transport,
        session.peer_addr()
    );
    for i in 0..100u32 {
        session.send(format!("message {i}").as_bytes())?;
    }
    let events = server.events();
    let mut got = 0;
    while let Ok(event) = events.recv_timeout(Duration::from_millis(500)) {
        if let NodeEvent::Message(_) = event {
            got += 1;
        }
    }
    println!("{got} of 100 messages arrived through a transport that drops one datagram in ten");
    client.stop();
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
