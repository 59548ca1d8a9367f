//! The server side of connect tokens: [`TokenConfig`] (what a node accepts)
//! and the gate a token message 1 passes (`docs/PROTOCOL.md` 14.5): opening
//! its ticket, checking its Noise message 1 under the client key without
//! Diffie-Hellman, its validity, revocations, and one live session per
//! token.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ticket::{self, Facts, MAX_TICKET_LEN, MIN_TICKET_LEN};
use super::{ClientInfo, IssuingKey, TokenRefusal};
use crate::crypto::handshake::{Msg1Info, MSG1_LEN, MSG1_TIME_WINDOW};
use crate::crypto::NetworkKey;
use crate::frame::{SessionId, HEADER_LEN};

/// The longest token lifetime a server accepts by default: 24 hours.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What connect tokens a node accepts (see [`crate::token`]); set with
/// [`NodeConfig::with_tokens`](crate::NodeConfig::with_tokens).
#[derive(Clone)]
pub struct TokenConfig {
    /// This server's names: a token is admitted when one of its audience
    /// entries equals one of these (exact bytes). At least one.
    pub audience: Vec<String>,
    /// Issuing keys whose tickets this node opens (a new one beside the old
    /// while tokens of the old are still alive: rotation).
    pub keys: Vec<IssuingKey>,
    /// Also accept tokens issued under the key derived from this node's
    /// shared seed ([`IssuingKey::from_shared_seed`]). True with
    /// [`new`](Self::new).
    pub shared_seed_key: bool,
    /// Tokens that live longer than this (`expires_at − issued_at`) are
    /// refused as expired, and a revocation is remembered this long.
    /// Default [`DEFAULT_MAX_LIFETIME`].
    pub max_lifetime: Duration,
}

impl TokenConfig {
    /// Accept tokens for the servers named `audience`, issued under the key
    /// derived from the node's shared seed.
    pub fn new<S: Into<String>>(audience: impl IntoIterator<Item = S>) -> Self {
        TokenConfig {
            audience: audience.into_iter().map(Into::into).collect(),
            keys: Vec::new(),
            shared_seed_key: true,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// Accept tokens for `audience` issued under `key` only (a backend
    /// that does not hold the shared seed).
    pub fn with_key<S: Into<String>>(
        key: IssuingKey,
        audience: impl IntoIterator<Item = S>,
    ) -> Self {
        TokenConfig {
            keys: vec![key],
            shared_seed_key: false,
            ..Self::new(audience)
        }
    }

    /// Adds an issuing key (rotation).
    pub fn and_key(mut self, key: IssuingKey) -> Self {
        self.keys.push(key);
        self
    }
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("shared_seed_key", &self.shared_seed_key)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

// `pub` for the `internals` feature (benches, fuzz targets); crate-private
// otherwise.

/// A token message 1 that passed the gate: what the endpoint needs to make
/// the session.
#[derive(Debug)]
pub struct TokenAdmission {
    /// The client key, as the handshake's PSK.
    pub psk: NetworkKey,
    /// What the message 1's payload said (ephemeral key, timestamp).
    pub msg1: Msg1Info,
    /// The ticket's id.
    pub salt: [u8; 16],
    /// Who the client is.
    pub client: Arc<ClientInfo>,
}

/// What became of a token message 1 at the gate.
#[derive(Debug)]
pub enum GateResult {
    /// Not a token message 1 this node can read, or not authentic:
    /// silence.
    Silent,
    /// Authentic, but the token is not valid here: answer with a refusal
    /// (its MAC keyed by the client key).
    Refuse(TokenRefusal, NetworkKey),
    /// Admitted (subject to the usual limits).
    Admit(TokenAdmission),
}

/// A node's token gate: its keys and names, the revoked clients and the
/// tokens in use. Shared by every reactor.
pub struct TokenGate {
    keys: Vec<IssuingKey>,
    audience: HashSet<Vec<u8>>,
    max_lifetime: u64,
    /// Client id → the wall-clock second it was revoked at.
    revoked: Mutex<HashMap<u64, u64>>,
    /// Tickets (by salt) holding a live or pending session here: its shard
    /// and id.
    in_use: Mutex<HashMap<[u8; 16], (usize, SessionId)>>,
    /// Token message 1s refused with a refusal.
    pub refused: AtomicU64,
    /// Token sessions admitted.
    pub admitted: AtomicU64,
}

impl std::fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGate")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Splits a token message 1's payload: the ticket part (`T` and the ticket,
/// which the prologue takes whole), the ticket, and the Noise message.
pub fn split_payload(payload: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?));
    if !(MIN_TICKET_LEN..=MAX_TICKET_LEN).contains(&len) || payload.len() != 2 + len + MSG1_LEN {
        return None;
    }
    let (part, noise) = payload.split_at(2 + len);
    Some((part, &part[2..], noise))
}

impl TokenGate {
    /// The gate for `config`; `network` provides the shared-seed key when
    /// the config asks for it.
    pub fn new(config: &TokenConfig, network: Option<&NetworkKey>) -> Self {
        let mut keys = config.keys.clone();
        if config.shared_seed_key {
            if let Some(n) = network {
                keys.push(IssuingKey::from_network(n));
            }
        }
        TokenGate {
            keys,
            audience: config
                .audience
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            max_lifetime: config.max_lifetime.as_secs(),
            revoked: Mutex::new(HashMap::new()),
            in_use: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
        }
    }

    /// Whether this gate can admit anything: a key and a name.
    pub(crate) fn usable(&self) -> bool {
        !self.keys.is_empty() && !self.audience.is_empty()
    }

    /// Checks the token message-1 datagram `datagram` (header and payload)
    /// at wall-clock `unix_secs`: steps 1–6 of `docs/PROTOCOL.md` 14.5.
    pub fn check(&self, datagram: &[u8], unix_secs: u64) -> GateResult {
        let Some((header, payload)) = datagram.split_at_checked(HEADER_LEN) else {
            return GateResult::Silent;
        };
        // A message 1's header, exactly (its length field included); the
        // prologue binds it too.
        let well_formed = crate::frame::Header::decode(header).is_ok_and(|h| {
            h.frame_type == crate::frame::FrameType::Handshake
                && h.packet_number == 1
                && h.flags == crate::frame::Flags::EMPTY
                && h.stream_id == 0
                && h.payload_len as usize == payload.len()
        });
        if !well_formed {
            return GateResult::Silent;
        }
        let Some((part, ticket_bytes, noise)) = split_payload(payload) else {
            return GateResult::Silent;
        };
        let Some(id) = ticket::key_id_of(ticket_bytes) else {
            return GateResult::Silent;
        };
        let Some(contents) = self
            .keys
            .iter()
            .filter(|k| k.key_id() == id)
            .find_map(|k| ticket::open(k, ticket_bytes))
        else {
            return GateResult::Silent;
        };
        let psk = NetworkKey::from_client_key(&contents.facts.client_key);
        let Some(info) = crate::crypto::handshake::open_msg1(&psk, &[header, part], noise) else {
            return GateResult::Silent;
        };
        let salt = ticket::salt_of(ticket_bytes);
        if let Err(reason) = self.valid(&contents.facts, unix_secs) {
            // Only a fresh message 1 gets an answer: a captured one cannot
            // be replayed at will to make this node send refusals.
            let skew = info.timestamp.abs_diff(unix_secs);
            if skew > MSG1_TIME_WINDOW.as_secs() {
                return GateResult::Silent;
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return GateResult::Refuse(reason, psk);
        }
        GateResult::Admit(TokenAdmission {
            psk,
            msg1: info,
            salt,
            client: Arc::new(ClientInfo {
                client_id: contents.facts.client_id,
                issued_at: super::text::secs(contents.facts.issued_at),
                expires_at: super::text::secs(contents.facts.expires_at),
                data: contents.data,
            }),
        })
    }

    fn valid(&self, t: &Facts, now: u64) -> Result<(), TokenRefusal> {
        if now >= t.expires_at || t.expires_at - t.issued_at > self.max_lifetime {
            return Err(TokenRefusal::Expired);
        }
        if t.issued_at > now.saturating_add(MSG1_TIME_WINDOW.as_secs()) {
            return Err(TokenRefusal::NotYetValid);
        }
        if !t
            .audience
            .iter()
            .any(|a| self.audience.contains(a.as_bytes()))
        {
            return Err(TokenRefusal::WrongAudience);
        }
        // `issued_at` is the issuer's clock, which may run up to the window
        // ahead of this node's: a token issued before the revocation may
        // carry a time up to a minute after it.
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let slack = MSG1_TIME_WINDOW.as_secs();
        if revoked
            .get(&t.client_id)
            .is_some_and(|&at| t.issued_at <= at.saturating_add(slack))
        {
            return Err(TokenRefusal::Revoked);
        }
        Ok(())
    }

    /// Records session `id` on shard `shard` as the holder of ticket
    /// `salt`; the session it replaces, if the ticket had one (the client
    /// reconnected: the newest session wins, 14.5).
    pub(crate) fn claim(
        &self,
        salt: [u8; 16],
        shard: usize,
        id: SessionId,
    ) -> Option<(usize, SessionId)> {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        self.in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(salt, (shard, id))
            .filter(|&old| old != (shard, id))
    }

    /// Session `id` of shard `shard` of ticket `salt` ended: the ticket is
    /// free, unless a newer session holds it.
    pub(crate) fn release(&self, salt: &[u8; 16], shard: usize, id: SessionId) {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if in_use.get(salt) == Some(&(shard, id)) {
            in_use.remove(salt);
        }
    }

    /// Refuses tokens of `client_id` issued up to a minute (the clock
    /// window) after `unix_secs`; forgets revocations older than the
    /// longest token lifetime and that minute.
    pub(crate) fn revoke(&self, client_id: u64, unix_secs: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let horizon = unix_secs
            .saturating_sub(self.max_lifetime)
            .saturating_sub(MSG1_TIME_WINDOW.as_secs());
        revoked.retain(|_, &mut at| at >= horizon);
        revoked.insert(client_id, unix_secs);
    }
}
