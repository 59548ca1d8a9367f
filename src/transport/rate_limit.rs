//! A token-bucket bandwidth limit around any transport.
//!
//! [`RateLimited`] wraps a [`Transport`] and lets through at most
//! `bytes_per_second` on average, with bursts of up to `burst` bytes. What
//! exceeds the budget waits in a bounded queue (in order) and leaves as the
//! bucket refills — the reactor wakes for it through
//! [`Transport::poll_timeout`]. Beyond the queue's bound, `send` reports
//! [`TransportError::QueueFull`]: backpressure, not silent loss.
//!
//! As the original STT's `RateLimitedTransport`, but without sleeping: a
//! reactor never blocks.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportCounters, TransportError};

/// A token bucket: `rate` bytes per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(bytes_per_second: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: bytes_per_second.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `bytes` if the bucket holds them.
    pub fn try_take(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        // A datagram larger than the burst may go once the bucket is full,
        // or it would never go at all.
        let need = (bytes as f64).min(self.burst);
        if self.tokens >= need {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// When `bytes` will be available.
    pub fn ready_at(&self, bytes: usize) -> Instant {
        let need = (bytes as f64).min(self.burst) - self.tokens;
        if need <= 0.0 {
            self.last
        } else {
            self.last + Duration::from_secs_f64(need / self.rate)
        }
    }
}

/// A transport with a bandwidth limit. See the [module docs](self).
#[derive(Debug)]
pub struct RateLimited<T> {
    inner: T,
    bucket: TokenBucket,
    waiting: VecDeque<(SocketAddr, Vec<u8>)>,
    max_waiting: usize,
    /// The first waiting datagram's budget is taken already (the inner
    /// transport refused it for now).
    front_paid: bool,
}

impl<T: Transport> RateLimited<T> {
    /// Limits `inner` to `bytes_per_second` with bursts of `burst` bytes;
    /// up to `max_waiting` datagrams wait for the budget.
    pub fn new(inner: T, bytes_per_second: u64, burst: u64, max_waiting: usize) -> Self {
        RateLimited {
            inner,
            bucket: TokenBucket::new(bytes_per_second, burst, Instant::now()),
            waiting: VecDeque::new(),
            max_waiting: max_waiting.max(1),
            front_paid: false,
        }
    }

    /// Releases waiting datagrams the budget now covers.
    fn release(&mut self, now: Instant) {
        while let Some((_, d)) = self.waiting.front() {
            if !self.front_paid && !self.bucket.try_take(d.len(), now) {
                break;
            }
            self.front_paid = false;
            if let Some((to, d)) = self.waiting.pop_front() {
                match self.inner.send(to, &d) {
                    Ok(()) => {}
                    // The inner transport's peer reads slowly: first again
                    // next time, its budget already taken.
                    Err(TransportError::QueueFull(_)) => {
                        self.waiting.push_front((to, d));
                        self.front_paid = true;
                        break;
                    }
                    Err(_) => TransportCounters::add(&self.inner.counters().errors_send, 1),
                }
            }
        }
    }
}

impl<T: Transport> Transport for RateLimited<T> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
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
        if let Some(max) = self.inner.max_datagram_size() {
            if datagram.len() > max {
                return Err(TransportError::TooLarge {
                    len: datagram.len(),
                    max,
                });
            }
        }
        let now = Instant::now();
        if self.waiting.is_empty() && self.bucket.try_take(datagram.len(), now) {
            return self.inner.send(to, datagram);
        }
        if self.waiting.len() >= self.max_waiting {
            TransportCounters::add(&self.inner.counters().packets_dropped, 1);
            return Err(TransportError::QueueFull(self.waiting.len()));
        }
        self.waiting.push_back((to, datagram.to_vec()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.release(Instant::now());
        self.inner.flush()
    }

    fn wants_write(&self) -> bool {
        self.inner.wants_write()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let ours = self
            .waiting
            .front()
            .map(|(_, d)| self.bucket.ready_at(d.len()));
        match (ours, self.inner.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
        let _ = self.inner.flush();
        if self.inner.poll_timeout().is_some_and(|t| t <= now) {
            self.inner.handle_timeout(now);
        }
    }

    fn open(&mut self, target: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        self.inner.open(target, addr)
    }
    fn open_with(
        &mut self,
        target: &str,
        addr: SocketAddr,
        options: Option<&(dyn std::any::Any + Send)>,
    ) -> Result<SocketAddr, TransportError> {
        self.inner.open_with(target, addr, options)
    }
    fn peer_authenticated(&mut self, peer: SocketAddr) {
        self.inner.peer_authenticated(peer)
    }

    fn is_reliable(&self) -> bool {
        self.inner.is_reliable()
    }

    fn counters(&self) -> &Arc<TransportCounters> {
        self.inner.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::MemoryNetwork;

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 500, t0);
        assert!(b.try_take(500, t0));
        assert!(!b.try_take(1, t0));
        assert_eq!(b.ready_at(100), t0 + Duration::from_millis(100));
        assert!(b.try_take(100, t0 + Duration::from_millis(100)));
        // Never more than the burst, however long the pause.
        assert!(b.try_take(500, t0 + Duration::from_secs(60)));
        assert!(!b.try_take(10, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn excess_waits_in_order_and_leaves_as_the_bucket_refills() {
        let net = MemoryNetwork::new();
        let mut rx = net.bind_any().unwrap();
        let to = rx.local_addr();
        // 100 kB/s, bursts of 1 kB.
        let mut tx = RateLimited::new(net.bind_any().unwrap(), 100_000, 1000, 100);
        for i in 0..10u8 {
            tx.send(to, &[i; 500]).unwrap();
        }
        tx.flush().unwrap();
        let mut got = Vec::new();
        rx.recv(&mut |_, d| got.push(d[0])).unwrap();
        assert_eq!(got, vec![0, 1], "the burst goes at once");
        let start = Instant::now();
        while got.len() < 10 {
            let at = tx.poll_timeout().expect("datagrams are waiting");
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            tx.handle_timeout(Instant::now());
            rx.recv(&mut |_, d| got.push(d[0])).unwrap();
        }
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "in order");
        // 4 kB over the burst at 100 kB/s: about 40 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(35),
            "{:?}",
            start.elapsed()
        );
        for _ in 0..100 {
            let _ = tx.send(to, &[0; 500]);
        }
        assert!(matches!(
            tx.send(to, &[0; 500]),
            Err(TransportError::QueueFull(_))
        ));
    }
}
