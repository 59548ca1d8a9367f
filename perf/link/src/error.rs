//! Typed errors: a refused configuration, and a value on the command line
//! that does not parse.

use std::time::Duration;

/// A [`LinkConfig`](crate::LinkConfig) that [`Relay::start`](crate::Relay::start) refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{field} must be a probability between 0 and 1, not {value}")]
    Probability {
        /// Which field.
        field: &'static str,
        /// What it was.
        value: f64,
    },
    /// `rate: Some(0)`: a link that never delivers (use `None` for unlimited).
    #[error("rate must be at least 1 bit/s (leave it unset for no limit)")]
    ZeroRate,
    /// A duration of more than an hour.
    #[error("{field} of {value:?} is over the one-hour limit")]
    Duration {
        /// Which field.
        field: &'static str,
        /// What it was.
        value: Duration,
    },
    /// `max_clients: 0`.
    #[error("max_clients must be at least 1")]
    NoClients,
    /// `max_in_flight_bytes` below one datagram.
    #[error("max_in_flight_bytes of {0} cannot hold one datagram of 65535 bytes")]
    InFlightTooSmall(usize),
}

impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// A command-line value that does not parse: see [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing given.
    #[error("empty value")]
    Empty,
    /// The number part is not a non-negative decimal number.
    #[error("{0:?} is not a non-negative number")]
    Number(String),
    /// A unit this parser does not know.
    #[error("unknown unit {unit:?} (expected one of {expected})")]
    Unit {
        /// The unit given.
        unit: String,
        /// The units accepted.
        expected: &'static str,
    },
    /// Too large to represent.
    #[error("{0:?} is too large")]
    Overflow(String),
    /// A burst-loss specification that is not `P,R[,LOSS_BAD[,LOSS_GOOD]]`.
    #[error("burst loss takes P,R[,LOSS_BAD[,LOSS_GOOD]], not {0:?}")]
    BurstLoss(String),
}
