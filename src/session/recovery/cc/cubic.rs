//! CUBIC (RFC 9438): window growth as a cubic function of the time since the last congestion event, with the Reno-friendly region.
