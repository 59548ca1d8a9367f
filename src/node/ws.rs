//! The node's transports: the UDP group, WebSocket servers and the
//! dialling WebSocket transport, transports of the application's own, and
//! their statistics.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::reactor::Command;
use crate::transport::ws::{self, WsConfig, WsCounters, WsStats, WsTransport};
use crate::transport::{Transport, TransportStats};

use super::error::{ConnectError, ListenError};
use super::Node;

/// Names a transport of a node, for [`Node::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportId {
    /// The reactor it lives on, or `None` for the UDP group (on all).
    pub(crate) reactor: Option<usize>,
    pub(crate) index: usize,
}

impl TransportId {
    /// The node's UDP transport (one socket per reactor).
    pub const UDP: TransportId = TransportId {
        reactor: None,
        index: 0,
    };
}

/// The node's WebSocket transports.
#[derive(Debug, Default)]
pub(crate) struct WsState {
    servers: Vec<(TransportId, Arc<WsCounters>)>,
    server_addr: Option<SocketAddr>,
    client: Option<(TransportId, Arc<WsCounters>)>,
}

impl Node {
    /// Plugs a transport of the application's own into the node (see
    /// [`Transport`]); it runs on one reactor, which owns the sessions
    /// opened over it. Returns its id for [`connect`](Self::connect).
    pub fn add_transport(&self, transport: Box<dyn Transport>) -> Result<TransportId, ListenError> {
        let reactor = self
            .inner
            .next_reactor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.inner.reactors.len();
        self.add_transport_to(reactor, transport)
    }

    fn add_transport_to(
        &self,
        reactor: usize,
        transport: Box<dyn Transport>,
    ) -> Result<TransportId, ListenError> {
        let index = self
            .inner
            .call(reactor, |reply| Command::AddTransport { transport, reply })
            .map_err(ListenError::from_failure)?;
        Ok(TransportId {
            reactor: Some(reactor),
            index,
        })
    }

    /// Starts accepting WebSocket connections on `addr` (port 0: any free
    /// port), `ws://`, or `wss://` when `config.tls_server` is set. Works on
    /// a running node. Each reactor gets a listener of a `SO_REUSEPORT`
    /// group, so the kernel spreads connections across cores; the
    /// connection caps (`max_connections`, `max_connections_per_ip`) count
    /// the connections of all of them. Returns the bound address.
    pub fn start_websocket_server(
        &self,
        addr: SocketAddr,
        config: WsConfig,
    ) -> Result<SocketAddr, ListenError> {
        let listeners = ws::bind_listener_group(addr, self.inner.reactors.len())?;
        let bound = listeners
            .first()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| crate::transport::TransportError::io("reading the bound address", e))?
            .unwrap_or(addr);
        // One count for all: the caps hold for the node, not per reactor.
        let admission = ws::WsAdmission::new();
        for (reactor, listener) in listeners.into_iter().enumerate() {
            let t = WsTransport::from_listener_shared(
                Some(listener),
                config.clone(),
                admission.clone(),
            )?;
            let counters = t.ws_counters();
            let id = self.add_transport_to(reactor, Box::new(t))?;
            self.ws_lock().servers.push((id, counters));
        }
        self.ws_lock().server_addr = Some(bound);
        tracing::info!(addr = %bound, tls = config.tls_server.is_some(), "WebSocket server started");
        Ok(bound)
    }

    /// The address the WebSocket server listens on, once started.
    pub fn websocket_local_addr(&self) -> Option<SocketAddr> {
        self.ws_lock().server_addr
    }

    /// The node's dialling WebSocket transport, made on first use (each
    /// dial brings its own configuration).
    pub(crate) fn ws_client(&self) -> Result<TransportId, ConnectError> {
        if let Some((id, _)) = &self.ws_lock().client {
            return Ok(*id);
        }
        let t = WsTransport::client(WsConfig::default())
            .map_err(|e| ConnectError::Transport(Arc::new(e)))?;
        let counters = t.ws_counters();
        let id = self.add_transport(Box::new(t)).map_err(|e| match e {
            ListenError::Transport(e) => ConnectError::Transport(e),
            ListenError::TimedOut(d) => ConnectError::TimedOut(d),
            _ => ConnectError::Stopped,
        })?;
        let mut ws = self.ws_lock();
        // Two first dials at once: the first transport made wins; the other
        // stays idle.
        Ok(ws.client.get_or_insert((id, counters)).0)
    }

    /// UDP statistics, summed over the reactors' sockets.
    pub fn udp_stats(&self) -> Option<TransportStats> {
        let (_, counters) = self.inner.udp.as_ref()?;
        let parts: Vec<TransportStats> = counters.iter().map(|c| c.snapshot()).collect();
        TransportStats::sum(&parts)
    }

    /// UDP statistics of each reactor's socket.
    pub fn udp_stats_per_reactor(&self) -> Vec<TransportStats> {
        self.inner
            .udp
            .as_ref()
            .map(|(_, c)| c.iter().map(|c| c.snapshot()).collect())
            .unwrap_or_default()
    }

    /// WebSocket statistics: the transports' traffic (summed over the
    /// server's per-reactor transports and the dialling one) and their
    /// connection counters.
    pub fn websocket_stats(&self) -> Option<(TransportStats, WsStats)> {
        let (ids, counters): (Vec<TransportId>, Vec<Arc<WsCounters>>) = {
            let ws = self.ws_lock();
            ws.servers
                .iter()
                .chain(ws.client.iter())
                .map(|(id, c)| (*id, c.clone()))
                .unzip()
        };
        let traffic: Vec<TransportStats> = ids
            .iter()
            .filter_map(|id| self.transport_stats(*id))
            .collect();
        let total = TransportStats::sum(&traffic)?;
        let mut conns = WsStats::default();
        for c in counters {
            conns.add(&c.snapshot());
        }
        Some((total, conns))
    }

    /// Traffic statistics of one transport (`None` if the node is stopped or
    /// its reactor did not answer within the call timeout).
    pub fn transport_stats(&self, transport: TransportId) -> Option<TransportStats> {
        match transport.reactor {
            None => self.udp_stats(),
            Some(r) => self.inner.ask(r, |reply| Command::TransportStats {
                transport: transport.index,
                reply,
            }),
        }
    }

    fn ws_lock(&self) -> std::sync::MutexGuard<'_, WsState> {
        // Only ever holds plain ids and counters: a panic elsewhere cannot
        // leave it inconsistent.
        self.inner.ws.lock().unwrap_or_else(|e| e.into_inner())
    }
}
