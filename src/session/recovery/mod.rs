//! Loss recovery after RFC 9002 for a session's channel packets: the
//! round-trip estimate, congestion control, pacing and path MTU discovery.

pub mod cc;
pub mod pacer;
pub mod pmtu;
pub mod rtt;
