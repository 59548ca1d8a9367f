//! An in-memory transport: datagrams between transports of one
//! [`MemoryNetwork`] in the same process, with no socket.
//!
//! It exists for tests, and as the worked example of a user-written
//! [`Transport`]: a queue per bound address, and a `mio` pipe as a doorbell
//! so that the reactor's poll wakes when a datagram arrives. Addresses are
//! plain `SocketAddr`s that name inboxes; nothing goes on any network.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::unix::pipe;
use mio::Interest;

use crate::transport::{Transport, TransportCounters, TransportError};

/// Datagrams an inbox holds before new ones are dropped, as a full socket
/// buffer would.
const INBOX_DEPTH: usize = 4096;

#[derive(Debug, Clone)]
struct Inbox {
    queue: Sender<(SocketAddr, Vec<u8>)>,
    doorbell: Arc<pipe::Sender>,
    counters: Arc<TransportCounters>,
}

/// A set of in-memory transports that can reach each other.
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetworkInner>>,
}

#[derive(Debug, Default)]
struct NetworkInner {
    inboxes: HashMap<SocketAddr, Inbox>,
    next_port: u16,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetworkInner> {
        // A panic while holding this lock leaves the map consistent (every
        // operation on it is a single insert, remove or lookup).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds a transport to `addr` (port 0: the next free port) that carries
    /// datagrams of at most `max_datagram_size` bytes.
    pub fn bind(
        &self,
        addr: SocketAddr,
        max_datagram_size: usize,
    ) -> Result<MemoryTransport, TransportError> {
        let mut net = self.lock();
        let mut addr = addr;
        if addr.port() == 0 {
            loop {
                net.next_port = net.next_port.wrapping_add(1).max(1);
                let candidate = SocketAddr::new(addr.ip(), net.next_port);
                if !net.inboxes.contains_key(&candidate) {
                    addr = candidate;
                    break;
                }
            }
        } else if net.inboxes.contains_key(&addr) {
            return Err(TransportError::AddrInUse { addr });
        }
        let (doorbell_tx, doorbell_rx) =
            pipe::new().map_err(|e| TransportError::io("creating the doorbell pipe", e))?;
        let (tx, rx) = crossbeam_channel::bounded(INBOX_DEPTH);
        let counters = TransportCounters::new(addr);
        net.inboxes.insert(
            addr,
            Inbox {
                queue: tx,
                doorbell: Arc::new(doorbell_tx),
                counters: counters.clone(),
            },
        );
        Ok(MemoryTransport {
            network: self.clone(),
            addr,
            max_datagram_size,
            inbox: rx,
            doorbell: doorbell_rx,
            outgoing: Vec::new(),
            counters,
        })
    }

    /// Binds a transport on 127.0.0.1 with a free port and a 1472-byte limit.
    pub fn bind_any(&self) -> Result<MemoryTransport, TransportError> {
        self.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), 1472)
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) -> bool {
        let inbox = match self.lock().inboxes.get(&to) {
            Some(i) => i.clone(),
            // Nobody there: the datagram vanishes, as over UDP.
            None => return false,
        };
        match inbox.queue.try_send((from, datagram)) {
            Ok(()) => {
                // A full pipe already wakes the reader; nothing to add.
                let _ = (&*inbox.doorbell).write(&[1]);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                TransportCounters::add(&inbox.counters.packets_dropped, 1);
                false
            }
        }
    }
}

/// One endpoint of a [`MemoryNetwork`]. See the [module docs](self).
#[derive(Debug)]
pub struct MemoryTransport {
    network: MemoryNetwork,
    addr: SocketAddr,
    max_datagram_size: usize,
    inbox: Receiver<(SocketAddr, Vec<u8>)>,
    doorbell: pipe::Receiver,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    counters: Arc<TransportCounters>,
}

impl Transport for MemoryTransport {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(self.max_datagram_size)
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        registry.register(&mut self.doorbell, token, Interest::READABLE)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.deregister(&mut self.doorbell)
    }

    fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> io::Result<usize> {
        // Empty the doorbell first: a datagram queued after this still rings.
        let mut sink = [0u8; 256];
        loop {
            match self.doorbell.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut n = 0;
        while let Ok((from, mut datagram)) = self.inbox.try_recv() {
            TransportCounters::add(&self.counters.packets_received, 1);
            TransportCounters::add(&self.counters.bytes_received, datagram.len() as u64);
            on_datagram(from, &mut datagram);
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> Result<(), TransportError> {
        if datagram.len() > self.max_datagram_size {
            return Err(TransportError::TooLarge {
                len: datagram.len(),
                max: self.max_datagram_size,
            });
        }
        self.outgoing.push((to, datagram.to_vec()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for (to, datagram) in self.outgoing.drain(..) {
            TransportCounters::add(&self.counters.packets_sent, 1);
            TransportCounters::add(&self.counters.bytes_sent, datagram.len() as u64);
            self.network.deliver(self.addr, to, datagram);
        }
        Ok(())
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.counters.set_stopped();
        self.network.lock().inboxes.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_travel_and_wake_the_poll() {
        let net = MemoryNetwork::new();
        let mut a = net.bind_any().unwrap();
        let mut b = net.bind_any().unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
        let mut poll = mio::Poll::new().unwrap();
        b.register(poll.registry(), mio::Token(7)).unwrap();
        a.send(b.local_addr(), b"ping").unwrap();
        a.flush().unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        let mut got = Vec::new();
        b.recv(&mut |from, d| got.push((from, d.to_vec()))).unwrap();
        assert_eq!(got, vec![(a.local_addr(), b"ping".to_vec())]);
        assert_eq!(a.counters().snapshot().packets_sent, 1);
        assert_eq!(b.counters().snapshot().bytes_received, 4);
    }

    #[test]
    fn oversize_is_refused_and_rebinding_a_used_address_fails() {
        let net = MemoryNetwork::new();
        let mut a = net.bind_any().unwrap();
        assert!(matches!(
            a.send(a.local_addr(), &[0u8; 1473]),
            Err(TransportError::TooLarge {
                len: 1473,
                max: 1472
            })
        ));
        assert!(matches!(
            net.bind(a.local_addr(), 1472),
            Err(TransportError::AddrInUse { .. })
        ));
        let addr = a.local_addr();
        drop(a);
        assert!(net.bind(addr, 1472).is_ok(), "freed on drop");
    }
}
