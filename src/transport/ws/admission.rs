//! Admission of accepted connections: the connection count one server
//! shares across its per-reactor transports (node-wide cap) and the count
//! per address (per-address cap). Both are taken once per accept and given
//! back once per close, never per message: a lock is fine here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts of accepted WebSocket connections that the transports of one
/// server share. [`Node::start_websocket_server`] makes one and hands it to
/// each reactor's transport ([`WsTransport::from_listener_shared`]), so that
/// `max_connections` and `max_connections_per_ip` hold for the node, not
/// per reactor. A transport made alone has one of its own.
///
/// [`Node::start_websocket_server`]: crate::Node::start_websocket_server
/// [`WsTransport::from_listener_shared`]: super::WsTransport::from_listener_shared
#[derive(Debug, Default)]
pub struct WsAdmission {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpKey, usize>,
}

/// What the per-address limit counts: an IPv4 address, or an IPv6 /64 (one
/// host, or one customer of an ISP, holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IpKey {
    V4(u32),
    V6(u64),
}

impl IpKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.into()),
                None => IpKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for this address.
    PerIp,
}

impl WsAdmission {
    /// An empty count, to share between the transports of one server.
    pub fn new() -> Arc<Self> {
        Arc::new(WsAdmission::default())
    }

    /// Accepted connections held now, over every transport sharing this.
    pub fn connections(&self) -> usize {
        self.lock().total
    }

    /// Accepted connections held now from `ip`'s address (its /64 for
    /// IPv6).
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&IpKey::of(ip)).copied().unwrap_or(0)
    }

    /// Takes a place for a connection from `ip`, unless a limit is reached;
    /// the [`Ticket`] gives it back when dropped.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Ticket, Refusal> {
        let key = IpKey::of(ip);
        let mut c = self.lock();
        if c.total >= max_total {
            return Err(Refusal::Total);
        }
        let from = c.per_ip.entry(key).or_insert(0);
        if *from >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *from += 1;
        c.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counts: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<WsAdmission>,
    key: IpKey,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_across_sharers_and_places_come_back() {
        let a = WsAdmission::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t1 = a.admit(ip("10.0.0.1"), 3, 2).unwrap();
        let _t2 = a.admit(ip("10.0.0.1"), 3, 2).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1"), 3, 2).unwrap_err(), Refusal::PerIp);
        // An IPv4-mapped IPv6 address is the same address.
        assert_eq!(
            a.admit(ip("::ffff:10.0.0.1"), 3, 2).unwrap_err(),
            Refusal::PerIp
        );
        let _t3 = a.admit(ip("10.0.0.2"), 3, 2).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3"), 3, 2).unwrap_err(), Refusal::Total);
        drop(t1);
        assert_eq!(a.connections(), 2);
        assert_eq!(a.connections_from(ip("10.0.0.1")), 1);
        let _t4 = a.admit(ip("10.0.0.1"), 3, 2).unwrap();
    }

    #[test]
    fn one_ipv6_slash_64_counts_as_one_address() {
        let a = WsAdmission::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _x = a.admit(ip("2001:db8:1:2::1"), 10, 1).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::9"), 10, 1).unwrap_err(),
            Refusal::PerIp
        );
        let _y = a.admit(ip("2001:db8:1:3::1"), 10, 1).unwrap();
    }
}
