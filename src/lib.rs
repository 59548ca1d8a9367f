//! # stt — Seigr Toolset Transmissions
//!
//! Encrypted frames between nodes over UDP and WebSocket.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod crypto;
pub mod frame;
pub mod session;
pub mod stream;
