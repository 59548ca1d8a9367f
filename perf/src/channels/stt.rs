//! The slot for stt's channels.
//!
//! **Placeholder**: stt's channel API (reliable-ordered and unreliable
//! channels on a session) is being written; until it lands this returns
//! [`NotWired`] and the harness prints the note instead of a row. To wire
//! it: start a server node on 127.0.0.1:0, dial `net.route(server_addr)?`
//! from a client node, and run the three tests as [`super::quinn`] does
//! (reliable-ordered channel for `Test::Bulk` and `Test::Latency` with
//! [`super::stamped`] messages and a [`super::Receiver`]; unreliable channel
//! for `Test::Unreliable`, counting refusals).

use super::{BoxError, Net, Outcome, Test};

/// stt's channels are not there yet.
#[derive(Debug, thiserror::Error)]
#[error("stt channels not wired yet (perf/src/channels/stt.rs)")]
pub struct NotWired;

pub fn run(_test: &Test, _net: &mut Net) -> Result<Outcome, BoxError> {
    Err(NotWired.into())
}
