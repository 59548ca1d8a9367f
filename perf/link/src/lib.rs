//! stt-link: a UDP link emulator that runs in-process (or as the
//! `stt-link` program), for machines without `sch_netem`.
//!
//! A [`Relay`] listens on a UDP address and forwards every datagram from
//! any client to one upstream address, and the replies back, through an
//! emulated link per direction ([`LinkDirection`]): one-way delay, jitter,
//! loss (independent or Gilbert–Elliott bursts), duplication, reordering,
//! and a rate limit with a drop-tail queue. Every random draw comes from a
//! seeded SplitMix64 ([`LinkConfig::seed`]), so a seed replays the same
//! link for the same arrival times.
//!
//! ```no_run
//! use std::time::Duration;
//! use stt_link::{LinkConfig, LinkDirection, Relay};
//!
//! # fn main() -> std::io::Result<()> {
//! let server: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
//! let relay = Relay::start(
//!     LinkConfig::symmetric(LinkDirection {
//!         delay: Duration::from_millis(10), // 20 ms round trip
//!         loss: 0.01,
//!         rate: Some(100_000_000), // 100 Mbit/s
//!         ..LinkDirection::default()
//!     }),
//!     server,
//! )?;
//! // Point the client at relay.local_addr() instead of the server.
//! println!("{}", relay.local_addr());
//! println!("{}", relay.stats());
//! # Ok(())
//! # }
//! ```
//!
//! The link model itself ([`DirectionModel`]) has no sockets and no clock:
//! arrival time and size in, [`Verdict`] out.

#![deny(unsafe_code, missing_docs, missing_debug_implementations)]

mod config;
mod error;
mod model;
pub mod parse;
mod relay;
mod rng;
mod stats;

pub use config::{GilbertElliott, JitterKind, LinkConfig, LinkDirection};
pub use error::{ConfigError, ParseError};
pub use model::{DirectionModel, Verdict};
pub use relay::Relay;
pub use rng::SplitMix64;
pub use stats::{DirectionStats, RelayStats};

/// The largest UDP payload (IPv4): the relay's receive buffers.
pub const MAX_DATAGRAM: usize = 65_535;
