//! The WebSocket transport's configuration: [`WsConfig`] with its commented
//! defaults, the [`ReconnectPolicy`] of dialled connections, and
//! [`WsConfig::validate`], which refuses a configuration that cannot work
//! before any socket is opened.
//!
//! A listening transport applies its `WsConfig` to every accepted
//! connection. A dial made with [`Transport::open_with`] and a `WsConfig`
//! applies that one to its connection and its reconnections (every field but
//! those of accepted connections: `tls_server`, `max_connections`,
//! `max_connections_per_ip`, `auth_timeout`,
//! `max_message_size_unauthenticated`, `allowed_origins` and `http`).
//!
//! [`Transport::open_with`]: crate::transport::Transport::open_with

use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use tungstenite::protocol::WebSocketConfig;

use super::HttpHandler;

/// WebSocket transport configuration. `Default` gives the values below.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest WebSocket message accepted (and sent). Default: the largest
    /// stt frame (a 16 MiB message sealed whole: its header, tag and
    /// payload, [`crate::frame::MAX_PAYLOAD_LEN`] + [`crate::frame::HEADER_LEN`]),
    /// so that every message a session may send fits; larger ones close
    /// the connection with code 1009.
    pub max_message_size: usize,
    /// Send a WebSocket ping after this long without traffic. Default 10 s.
    pub ping_interval: Duration,
    /// Close a connection silent for this long. Default 30 s: three pings
    /// go unanswered first. Must exceed `ping_interval`.
    pub dead_after: Duration,
    /// Close an upgrade (or a TLS handshake) not done in this long.
    /// Default 10 s: generous for a real client, fatal for slow-loris.
    pub handshake_timeout: Duration,
    /// Give up a dial not connected in this long. Default 10 s.
    pub connect_timeout: Duration,
    /// Accepted connections held at once (upgrading or open), across every
    /// transport of one server ([`Node::start_websocket_server`] gives its
    /// per-reactor transports one shared count); beyond, new ones get HTTP
    /// 503. Dialled connections do not count. Default 10,000.
    ///
    /// [`Node::start_websocket_server`]: crate::Node::start_websocket_server
    pub max_connections: usize,
    /// Accepted connections held at once from one address: one IPv4
    /// address, or one IPv6 /64 (what one host or one customer of an ISP
    /// gets); beyond, new ones get HTTP 503. Default 64: room for the
    /// clients behind one NAT, while one host can hold no more than 0.64 %
    /// of the default `max_connections`.
    pub max_connections_per_ip: usize,
    /// Close an accepted connection that has carried no authenticated
    /// session this long after its upgrade (close code 1008, counted in
    /// `closed_unauthenticated`). The engine calls
    /// [`Transport::peer_authenticated`] once a session is established over
    /// the connection, which lifts this deadline. Default 10 s: a member's
    /// handshake over WebSocket takes 1.5 round trips (2.5 with a cookie),
    /// well under a second on any real network, while a connection that
    /// sends junk and answers pings is let go soon. Dialled connections are
    /// trusted from the start.
    ///
    /// [`Transport::peer_authenticated`]: crate::transport::Transport::peer_authenticated
    pub auth_timeout: Duration,
    /// Largest message accepted on an accepted connection before it is
    /// authenticated; larger ones close it with code 1009, and tungstenite
    /// never reserves more than this for such a connection. Default 1 KiB:
    /// the largest handshake datagram is the cookie echo (186 bytes;
    /// message 1 is 141, message 3 is 93), which leaves room for a connect
    /// token. Clamped to `max_message_size`.
    pub max_message_size_unauthenticated: usize,
    /// Origins a browser may upgrade from (e.g. `"https://game.example"`),
    /// compared ASCII case-insensitively; an upgrade whose `Origin` is not
    /// listed gets HTTP 403. Requests without an `Origin` header (programs,
    /// not browsers) are allowed: any program can send whatever `Origin` it
    /// likes, so the list only stops web pages of other sites from using a
    /// visitor's browser, which always sends it. `None` (the default): no
    /// check.
    pub allowed_origins: Option<Vec<String>>,
    /// Bytes tungstenite reads from the socket at once, and the read buffer
    /// every open connection keeps. Default 8 KiB: an idle connection costs
    /// about 10 KiB in all, while a 16 KiB coalesced frame still takes two
    /// reads. Larger messages are read whole into a buffer sized for them.
    pub read_buffer_size: usize,
    /// Bytes queued for one connection before `send` reports backpressure.
    /// Default 8 MiB; never below `max_message_size` + 64 KiB, nor below
    /// the 128 KiB at which a connection starts writing.
    pub write_buffer_limit: usize,
    /// How dialled connections come back after a failure.
    pub reconnect: ReconnectPolicy,
    /// Datagrams held per dialled peer while (re)connecting. Default 1024.
    pub reconnect_queue: usize,
    /// TLS for accepted connections (`wss://` server); `None`: plain `ws://`.
    pub tls_server: Option<Arc<ServerConfig>>,
    /// TLS for dialled `wss://` URLs; `None`: the webpki roots.
    pub tls_client: Option<Arc<ClientConfig>>,
    /// Answers plain HTTP requests (not upgrades) on the listening port,
    /// e.g. [`StaticFiles`](super::StaticFiles) to serve a web page beside
    /// the WebSocket endpoint. `GET` and `HEAD` reach it, other methods get
    /// `405`, a request with a body `400`; the request head has the limits
    /// of an upgrade's (8 KiB, `handshake_timeout`, counted in
    /// `max_connections`), and the connection closes after the response.
    /// The handler runs on the reactor thread: it must be quick. `None`
    /// (the default): every request must be an upgrade, others get `400`.
    pub http: Option<Arc<dyn HttpHandler>>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: crate::frame::MAX_PAYLOAD_LEN as usize + crate::frame::HEADER_LEN,
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 64,
            auth_timeout: Duration::from_secs(10),
            max_message_size_unauthenticated: 1024,
            allowed_origins: None,
            read_buffer_size: 8 * 1024,
            write_buffer_limit: 8 << 20,
            reconnect: ReconnectPolicy::default(),
            reconnect_queue: 1024,
            tls_server: None,
            tls_client: None,
            http: None,
        }
    }
}

impl WsConfig {
    /// Checks that the configuration can work: a non-zero message size and
    /// timers, `dead_after` above `ping_interval`, and a sane
    /// [`ReconnectPolicy`]. The transport checks it when it is made and
    /// when a dial brings a configuration of its own.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        if self.max_message_size == 0 || self.max_message_size_unauthenticated == 0 {
            return Err(WsConfigError::ZeroMessageSize);
        }
        if self.read_buffer_size == 0 {
            return Err(WsConfigError::ZeroReadBuffer);
        }
        for (field, value) in [
            ("ping_interval", self.ping_interval),
            ("dead_after", self.dead_after),
            ("handshake_timeout", self.handshake_timeout),
            ("connect_timeout", self.connect_timeout),
            ("auth_timeout", self.auth_timeout),
        ] {
            if value.is_zero() {
                return Err(WsConfigError::ZeroDuration(field));
            }
        }
        if self.dead_after <= self.ping_interval {
            return Err(WsConfigError::DeadBeforePing {
                dead_after: self.dead_after,
                ping_interval: self.ping_interval,
            });
        }
        self.reconnect.validate()
    }

    /// The message limit of an accepted connection not yet authenticated.
    pub(crate) fn unauthenticated_limit(&self) -> usize {
        self.max_message_size_unauthenticated
            .min(self.max_message_size)
    }

    /// Whether a browser from `origin` may upgrade.
    pub(crate) fn origin_allowed(&self, origin: &[u8]) -> bool {
        match &self.allowed_origins {
            None => true,
            Some(list) => list.iter().any(|o| {
                o.trim_end_matches('/')
                    .as_bytes()
                    .eq_ignore_ascii_case(origin)
            }),
        }
    }

    /// tungstenite's configuration for one connection, whose messages may
    /// be up to `max_message` bytes.
    pub(crate) fn tungstenite(&self, max_message: usize) -> WebSocketConfig {
        let base = WebSocketConfig::default();
        // tungstenite panics unless its write buffer's limit is above the
        // size at which it starts writing: small limits are raised to that.
        let limit = self
            .write_buffer_limit
            .max(self.max_message_size.saturating_add(64 * 1024))
            .max(base.write_buffer_size.saturating_add(1));
        base.max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .max_write_buffer_size(limit)
            .read_buffer_size(self.read_buffer_size)
    }
}

/// How a dialled connection is re-dialled after it fails or drops:
/// exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay. Default 100 ms.
    pub initial_delay: Duration,
    /// Largest delay. Default 5 s.
    pub max_delay: Duration,
    /// Growth per attempt, at least 1. Default 2.
    pub multiplier: f64,
    /// Random spread, as a fraction of the delay in [0, 1] (0.2: ±20 %).
    /// Default 0.2: clients that lost one server do not all come back at
    /// once.
    pub jitter: f64,
    /// Attempts before giving up; `None` retries forever. Default 10.
    pub max_retries: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
            max_retries: Some(10),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect.
    pub fn never() -> Self {
        ReconnectPolicy {
            max_retries: Some(0),
            ..ReconnectPolicy::default()
        }
    }

    /// The delay before attempt `attempt` (1-based); `unit` in [0, 1) picks
    /// the jitter. `None` once the retries are used up. Out-of-range
    /// `multiplier` and `jitter` are clamped; the result never exceeds
    /// what a `Duration` holds.
    pub fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if self.max_retries.is_some_and(|m| attempt > m) {
            return None;
        }
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let spread = jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let secs = (base * (1.0 + spread)).max(0.0);
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }

    fn validate(&self) -> Result<(), WsConfigError> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(WsConfigError::Multiplier(self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(WsConfigError::Jitter(self.jitter));
        }
        Ok(())
    }
}

/// Why a [`WsConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WsConfigError {
    /// `max_message_size` or `max_message_size_unauthenticated` is 0: no
    /// message could pass.
    #[error("max_message_size (or max_message_size_unauthenticated) is 0: no message could pass; the defaults are 16 MiB and 1 KiB")]
    ZeroMessageSize,
    /// `read_buffer_size` is 0.
    #[error("read_buffer_size is 0: give it a positive size; the default is 8 KiB")]
    ZeroReadBuffer,
    /// A timer is zero.
    #[error("{0} is zero: give it a positive duration")]
    ZeroDuration(&'static str),
    /// `dead_after` does not exceed `ping_interval`: a quiet but healthy
    /// peer would be closed before it is pinged.
    #[error("dead_after ({dead_after:?}) must exceed ping_interval ({ping_interval:?}): a quiet peer is pinged before it is declared dead")]
    DeadBeforePing {
        /// The configured `dead_after`.
        dead_after: Duration,
        /// The configured `ping_interval`.
        ping_interval: Duration,
    },
    /// `reconnect.multiplier` is below 1 or not finite.
    #[error("reconnect.multiplier is {0}: use a finite number of at least 1")]
    Multiplier(f64),
    /// `reconnect.jitter` is outside [0, 1].
    #[error("reconnect.jitter is {0}: use a fraction in [0, 1]")]
    Jitter(f64),
    /// `open_with` was given options that are not a `WsConfig`.
    #[error("the options of a WebSocket dial must be a WsConfig")]
    NotWsConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_limits_make_a_config_tungstenite_accepts() {
        for (max_message_size, write_buffer_limit) in
            [(1, 0), (64 << 10, 0), (0, 1), (1 << 20, 8 << 20)]
        {
            let c = WsConfig {
                max_message_size,
                write_buffer_limit,
                ..WsConfig::default()
            }
            .tungstenite(max_message_size);
            // tungstenite asserts this when a connection is made.
            assert!(c.max_write_buffer_size > c.write_buffer_size, "{c:?}");
            assert!(c.max_write_buffer_size >= write_buffer_limit);
        }
    }

    #[test]
    fn the_default_is_valid_and_nonsense_is_refused() {
        assert_eq!(WsConfig::default().validate(), Ok(()));
        let bad = |c: WsConfig| c.validate().unwrap_err();
        let d = WsConfig::default;
        assert_eq!(
            bad(WsConfig {
                max_message_size: 0,
                ..d()
            }),
            WsConfigError::ZeroMessageSize
        );
        assert_eq!(
            bad(WsConfig {
                handshake_timeout: Duration::ZERO,
                ..d()
            }),
            WsConfigError::ZeroDuration("handshake_timeout")
        );
        assert!(matches!(
            bad(WsConfig {
                dead_after: Duration::from_secs(5),
                ..d()
            }),
            WsConfigError::DeadBeforePing { .. }
        ));
        for multiplier in [0.5, f64::NAN, f64::INFINITY] {
            let c = WsConfig {
                reconnect: ReconnectPolicy {
                    multiplier,
                    ..ReconnectPolicy::default()
                },
                ..d()
            };
            assert!(matches!(bad(c), WsConfigError::Multiplier(_)));
        }
        for jitter in [-0.1, 1.5, f64::NAN] {
            let c = WsConfig {
                reconnect: ReconnectPolicy {
                    jitter,
                    ..ReconnectPolicy::default()
                },
                ..d()
            };
            assert!(matches!(bad(c), WsConfigError::Jitter(_)));
        }
    }

    #[test]
    fn delays_grow_cap_spread_and_give_up() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.delay(1, 0.5), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, 0.5), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(10, 0.5), Some(Duration::from_secs(5)));
        let low = p.delay(1, 0.0).unwrap().as_secs_f64();
        let high = p.delay(1, 0.999_999).unwrap().as_secs_f64();
        assert!(
            (low - 0.08).abs() < 1e-9 && (high - 0.12).abs() < 1e-6,
            "{low} {high}"
        );
        assert_eq!(p.delay(11, 0.5), None);
        assert_eq!(ReconnectPolicy::never().delay(1, 0.5), None);
        // Extremes never panic.
        let huge = ReconnectPolicy {
            initial_delay: Duration::MAX,
            max_delay: Duration::MAX,
            jitter: 1.0,
            max_retries: None,
            ..ReconnectPolicy::default()
        };
        assert_eq!(huge.delay(u32::MAX, 1.0), Some(Duration::MAX));
    }
}
