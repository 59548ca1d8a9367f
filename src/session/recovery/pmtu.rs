//! Path MTU discovery (DPLPMTUD, RFC 8899): from a safe base size, probes up to what the path carries, and falls back on a black hole.
