//! # stt — Seigr Toolset Transmissions
//!
//! Encrypted frames between nodes over UDP and WebSocket.
//!
//! Frames are sealed (authenticated encryption) before a transport sees them:
//!
//! ```text
//! application bytes
//!   -> stream layer   (stream)   splits messages into frames that fit the path's MTU
//!   -> frame + seal   (frame, crypto, session)  header + AEAD ciphertext, per-session keys
//!   -> transport      UDP datagram or WebSocket binary message: opaque bytes
//! ```
//!
//! Most applications use a [`Node`]: it opens sessions over UDP and
//! WebSocket, sends to one session or many, and hands what arrives to an
//! [`Events`] channel or a [`Handler`] (see [`node`]). Its public types are
//! re-exported here.
//!
//! The protocol layers in this crate are **sans-IO**: they own no socket and
//! read no clock. A [`session::Session`] takes datagrams and an `Instant`, and
//! gives back datagrams, a deadline and [`session::Event`]s.
//!
//! - [`frame`]: the wire format; decoding never panics.
//! - [`crypto`]: identities from seeds, the Noise handshake, sealing, key
//!   update, the replay window.
//! - [`session`]: the per-peer state machine.
//! - [`stream`]: fragmentation and reassembly with memory caps.
//!
//! The byte-level specification is `docs/PROTOCOL.md`.
//!
//! # Example: two sessions in memory
//!
//! ```
//! use std::time::Instant;
//! use stt::crypto::{Identity, NetworkKey};
//! use stt::frame::SessionId;
//! use stt::session::{Event, Session, SessionConfig, Transmits};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let network = NetworkKey::from_seed(&[7u8; 32])?;
//! let (alice, bob) = (Identity::from_seed(&[1u8; 32])?, Identity::from_seed(&[2u8; 32])?);
//! let now = Instant::now();
//!
//! let mut client = Session::connect(SessionConfig::default(), &alice, &network, SessionId(1), now)?;
//! let msg1 = client.poll_transmit().expect("handshake message 1");
//! let mut server = Session::accept(SessionConfig::default(), &bob, &network, &msg1, now)?;
//! let mut msg2 = server.poll_transmit().expect("handshake message 2");
//! client.handle_datagram(now, &mut msg2)?;
//! let mut msg3 = client.poll_transmit().expect("handshake message 3");
//! server.handle_datagram(now, &mut msg3)?;
//! assert!(client.is_established() && server.is_established());
//! assert_eq!(server.peer(), Some(alice.node_id()));
//!
//! let mut out = Transmits::new();
//! client.send(now, 0, b"hello", &mut out)?;
//! let mut datagram = out.get(0).expect("one datagram").to_vec();
//! server.handle_datagram(now, &mut datagram)?;
//! let delivered = std::iter::from_fn(|| server.poll_event()).find_map(|e| match e {
//!     Event::Message { payload, .. } => Some(payload),
//!     _ => None,
//! });
//! assert_eq!(delivered.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod counters;
pub mod crypto;
mod endpoint;
pub mod frame;
pub mod node;
mod pool;
mod reactor;
pub mod session;
pub mod stream;
pub mod token;
pub mod transport;
#[cfg(test)]
mod vectors;

pub use crypto::NodeId;
pub use frame::{FrameType, SessionId};
pub use node::{
    on_reactor, on_worker, CloseError, ConnectError, ConnectOptions, Events, Handler, HandlerError,
    ListenError, Message, MoveError, Node, NodeConfig, NodeEvent, NodeStats, Replies, RevokeError,
    RunsOn, SendError, Session, SessionInfo, StartError, WeakNode,
};
pub use session::channel::{self as channel, ChannelConfig, ChannelStats, Delivery, SendPolicy};
pub use token::{ClientInfo, ConnectToken, Issuer, IssuingKey, TokenConfig, TokenRequest};
pub use transport::udp::UdpConfig;
pub use transport::ws::WsConfig;
