//! Pacing: spreads a congestion window over the round trip, in bursts no larger than a GSO batch.
