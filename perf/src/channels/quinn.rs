//! quinn 0.11 as a channel library: one unidirectional stream of
//! length-prefixed messages (a u32, big-endian, then the message) for the
//! reliable-ordered tests, datagrams (`send_datagram`) for the unreliable
//! one. The endpoints of [`crate::quic`]: self-signed certificate, rustls on
//! ring, initial MTU 1472, 4 MiB datagram buffers, otherwise quinn's
//! defaults (Cubic; stream flow-control windows 1.25 MB per stream).
//! Client and server tasks on one tokio runtime with a worker per core.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::{timeout, timeout_at};

use super::{
    stamped, BoxError, Net, Outcome, Receiver, Test, Unreliable, BIG, GRACE, QUIET, SMALL,
};
use crate::common::Tally;
use crate::quic::{self, QuicPair};

pub fn run(test: &Test, net: &mut Net) -> Result<Outcome, BoxError> {
    let rt = quic::runtime()?;
    rt.block_on(async {
        let pair = quic::connect_via(|server| Ok(net.route(server)?)).await?;
        let outcome = match *test {
            Test::Bulk { bytes, cap } => bulk(&pair, bytes, cap).await,
            Test::Latency { rate, duration } => latency(&pair, rate, duration).await,
            Test::Unreliable { duration } => unreliable(&pair, duration).await,
        };
        pair.close().await;
        outcome
    })
}

/// A length-prefixed frame around `message`.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + message.len());
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f
}

/// Reads frames of `size`-byte messages from the first unidirectional
/// stream the server accepts into `receiver`, until `want` messages or
/// `deadline`.
async fn receive(
    pair: &QuicPair,
    size: usize,
    want: u64,
    deadline: Instant,
) -> Result<Receiver, BoxError> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut receiver = Receiver::new();
    let Ok(stream) = timeout_at(deadline, pair.server.accept_uni()).await else {
        return Ok(receiver);
    };
    let mut stream = stream?;
    let mut buf = vec![0u8; 4 + size];
    while receiver.delivered < want {
        match timeout_at(deadline, stream.read_exact(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => break,
        }
        let len = u32::from_be_bytes(buf[..4].try_into()?) as usize;
        if len != size {
            return Err(format!("frame of {len} bytes, expected {size}").into());
        }
        receiver.message(&buf[4..])?;
    }
    Ok(receiver)
}

async fn bulk(pair: &QuicPair, bytes: u64, cap: Duration) -> Result<Outcome, BoxError> {
    let count = bytes.div_ceil(BIG as u64);
    let t0 = Instant::now();
    let deadline = t0 + cap;
    let sender = {
        let client = pair.client.clone();
        tokio::spawn(async move {
            let mut stream = client.open_uni().await?;
            for seq in 0..count {
                let f = frame(&stamped(BIG, seq));
                let at = tokio::time::Instant::from_std(deadline);
                match timeout_at(at, stream.write_all(&f)).await {
                    Ok(r) => r?,
                    Err(_) => break,
                }
            }
            let _ = stream.finish();
            // Keep the stream (and its unsent data) until the receiver is
            // done: dropping it would not reset it, but be explicit.
            Ok::<_, BoxError>(stream)
        })
    };
    let receiver = receive(pair, BIG, count, deadline).await?;
    drop(sender.await??);
    Ok(Outcome::Bulk(receiver.bulk(count * BIG as u64, t0, cap)))
}

async fn latency(pair: &QuicPair, rate: u32, duration: Duration) -> Result<Outcome, BoxError> {
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let t0 = Instant::now();
    let sender = {
        let client = pair.client.clone();
        tokio::spawn(async move {
            let mut stream = client.open_uni().await?;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            for seq in 0..total {
                tick.tick().await;
                stream.write_all(&frame(&stamped(SMALL, seq))).await?;
            }
            let _ = stream.finish();
            Ok::<_, BoxError>(stream)
        })
    };
    let receiver = receive(pair, SMALL, total, t0 + duration + GRACE).await?;
    drop(sender.await??);
    Ok(Outcome::Latency(receiver.latency(total)))
}

async fn unreliable(pair: &QuicPair, duration: Duration) -> Result<Outcome, BoxError> {
    let server = pair.server.clone();
    let end = Instant::now() + duration;
    let receiver = tokio::spawn(async move {
        let mut tally = Tally::new();
        let stop = tokio::time::Instant::from_std(end + GRACE);
        loop {
            let wait = timeout(QUIET, server.read_datagram());
            match timeout_at(stop, wait).await {
                Ok(Ok(Ok(d))) if d.len() == BIG => tally.hit(),
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(_))) => break,
                Ok(Err(_)) if Instant::now() > end => break,
                Ok(Err(_)) => {}
                // What quinn still buffers at the sender then is lost.
                Err(_) => break,
            }
        }
        tally
    });
    let payload = Bytes::from(vec![0xABu8; BIG]);
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut first_refusal = None;
    while Instant::now() < end {
        for _ in 0..64 {
            // Never waits: when the send buffer is full, quinn drops the
            // oldest datagram not yet sent (counted as lost, not refused).
            match pair.client.send_datagram(payload.clone()) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused += 1;
                    first_refusal.get_or_insert(e);
                }
            }
        }
        tokio::task::yield_now().await;
    }
    let tally = receiver.await?;
    if let Some(e) = first_refusal {
        eprintln!("  quinn: send_datagram refused {refused} datagrams, the first with: {e}");
    }
    Ok(Outcome::Unreliable(Unreliable {
        accepted,
        refused,
        delivered: tally.count,
        rate: tally.rate(),
    }))
}
