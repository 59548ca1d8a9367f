//! NewReno (RFC 9002 §7): slow start, congestion avoidance by one datagram per window, halving on loss.
