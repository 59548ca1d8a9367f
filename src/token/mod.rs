//! Connect tokens: how clients that must not hold the network's shared seed
//! (game clients, browsers, viewers) open sessions with servers.
//!
//! The operator's backend holds an [`IssuingKey`] (derived from the shared
//! seed with [`IssuingKey::from_shared_seed`], or its own random key that
//! the servers are configured with) and gives each client a short-lived
//! [`ConnectToken`] from an [`Issuer`]. The token names the client
//! (`client_id`), its expiry, the servers it is for (its audience) and a
//! per-token key; it carries a *ticket* sealed for the servers that holds
//! the same facts and up to [`MAX_DATA_LEN`] bytes of application data.
//! The client's handshake uses the token's key instead of the network key;
//! a server configured with [`TokenConfig`] opens the ticket, checks expiry,
//! audience, revocation and reuse, and admits the client under its client
//! id: every message it sends arrives with a [`ClientInfo`].
//!
//! A token holder can only talk to servers: it cannot read another
//! client's ticket, so it can neither accept sessions nor reach another
//! client. The byte layout is `docs/PROTOCOL.md` section 14; what a holder
//! can and cannot do is in `docs/SECURITY.md`.
//!
//! ```
//! use std::time::Duration;
//! use stt::token::{ConnectToken, Issuer, IssuingKey, TokenRequest};
//!
//! let issuer = Issuer::new(IssuingKey::generate()?);
//! let token = issuer.issue(
//!     &TokenRequest::new(7, ["eu-1"]).with_lifetime(Duration::from_secs(300)),
//! )?;
//! let text = token.encode(); // send this to the client (over HTTPS)
//! assert_eq!(ConnectToken::parse(&text)?.client_id(), 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod gate;
mod text;
pub(crate) mod ticket;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::crypto::{NetworkKey, SeedError};

#[cfg(feature = "internals")]
pub use gate::{split_payload, GateResult, TokenAdmission, TokenGate};
#[cfg(not(feature = "internals"))]
pub(crate) use gate::{split_payload, GateResult, TokenAdmission, TokenGate};
pub use gate::{TokenConfig, DEFAULT_MAX_LIFETIME};
pub use text::{ConnectToken, TokenParseError, TOKEN_PREFIX};
pub use ticket::{MAX_AUDIENCE, MAX_DATA_LEN, MAX_TICKET_LEN, MAX_TIME, MIN_TICKET_LEN};

const ISSUER_SALT: &[u8] = b"stt v1 token issuer";
const KEY_ID_LABEL: &[u8] = b"stt v1 token key id";

/// The secret that seals tickets: held by the backend that issues tokens
/// and by every server that accepts them. Its `Debug` form shows only its
/// key id.
#[derive(Clone)]
pub struct IssuingKey {
    secret: Zeroizing<[u8; 32]>,
    id: u32,
}

impl IssuingKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = Zeroizing::new(bytes);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret[..]),
            KEY_ID_LABEL,
        );
        let id = u32::from_be_bytes([
            tag.as_ref()[0],
            tag.as_ref()[1],
            tag.as_ref()[2],
            tag.as_ref()[3],
        ]);
        IssuingKey { secret, id }
    }

    /// A fresh random key from the system CSPRNG.
    pub fn generate() -> Result<Self, IssueError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(&mut bytes[..])
            .map_err(|_| IssueError::NoRandomness)?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The key every member of the network can derive from its shared seed
    /// (`docs/PROTOCOL.md` 14.1): a backend with the shared seed issues
    /// tokens that servers configured with [`TokenConfig::new`] accept.
    /// Costs what deriving the network key costs (Argon2id, once per
    /// process and seed).
    pub fn from_shared_seed(shared_seed: &[u8]) -> Result<Self, SeedError> {
        Ok(Self::from_network(&NetworkKey::from_seed(shared_seed)?))
    }

    pub(crate) fn from_network(network: &NetworkKey) -> Self {
        let derived = crate::crypto::keys::hkdf_32(ISSUER_SALT, network.psk(), b"issuing key");
        Self::from_bytes(*derived)
    }

    /// Reads 64 hex digits (as [`to_hex`](Self::to_hex) writes them).
    pub fn from_hex(hex: &str) -> Result<Self, KeyParseError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(KeyParseError::Length(hex.len()));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyParseError::NotHex);
            bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Self::from_bytes(*bytes))
    }

    /// The key as 64 lowercase hex digits. Secret.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for b in self.secret.iter() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The 32-bit name tickets sealed under it carry, so that a server
    /// holding several keys (rotation) knows which to open them with.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for IssuingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuingKey(id {:08x})", self.id)
    }
}

/// Why [`IssuingKey::from_hex`] refused its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// Not 64 characters.
    #[error("an issuing key is 64 hex digits, not {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("an issuing key is 64 hex digits")]
    NotHex,
}

/// What a token is to say: its client, lifetime, audience and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The application's name for the client (a user or account id).
    pub client_id: u64,
    /// How long from now the token admits new sessions. Default 10 minutes:
    /// a token is needed only to connect (and reconnect); sessions outlive
    /// it.
    pub lifetime: Duration,
    /// The servers it is for: at least one name, at most [`MAX_AUDIENCE`],
    /// each 1 to 255 bytes. A server admits it when one of these equals one
    /// of its own names ([`TokenConfig::audience`]).
    pub audience: Vec<String>,
    /// Application data for the servers (at most [`MAX_DATA_LEN`] bytes):
    /// sealed in the ticket, unreadable by the client, delivered with every
    /// message of its sessions ([`ClientInfo::data`]).
    pub data: Vec<u8>,
}

impl TokenRequest {
    /// A request for `client_id`, valid for the servers named `audience`,
    /// with the default lifetime and no data.
    pub fn new<S: Into<String>>(client_id: u64, audience: impl IntoIterator<Item = S>) -> Self {
        TokenRequest {
            client_id,
            lifetime: Duration::from_secs(600),
            audience: audience.into_iter().map(Into::into).collect(),
            data: Vec::new(),
        }
    }

    /// Sets the lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the application data.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// No audience, or more than [`MAX_AUDIENCE`] names.
    #[error("a token names 1 to {MAX_AUDIENCE} servers, not {0}")]
    AudienceCount(usize),
    /// An audience name is empty or longer than 255 bytes.
    #[error("server names in a token are 1 to 255 bytes, not {0}")]
    AudienceName(usize),
    /// More than [`MAX_DATA_LEN`] bytes of application data.
    #[error("a token carries at most {MAX_DATA_LEN} bytes of application data, not {0}")]
    DataTooLong(usize),
    /// A lifetime under one second.
    #[error("a token lives at least one second")]
    LifetimeTooShort,
    /// A lifetime that ends after the year 9999.
    #[error("a token's expiry must be before the year 10000")]
    LifetimeTooLong,
    /// The ticket would be larger than [`MAX_TICKET_LEN`] bytes (long
    /// names and data together).
    #[error(
        "the ticket would exceed {MAX_TICKET_LEN} bytes: shorten the server names or the data"
    )]
    TooLarge,
    /// The system's random generator failed.
    #[error("the system random generator failed")]
    NoRandomness,
}

/// Makes connect tokens under one [`IssuingKey`]. Cheap to clone; share it
/// between the threads of a backend.
#[derive(Debug, Clone)]
pub struct Issuer {
    key: IssuingKey,
}

impl Issuer {
    /// An issuer with `key`.
    pub fn new(key: IssuingKey) -> Self {
        Issuer { key }
    }

    /// The key it seals with.
    pub fn key(&self) -> &IssuingKey {
        &self.key
    }

    /// A token for `request`, valid from now (this machine's clock).
    pub fn issue(&self, request: &TokenRequest) -> Result<ConnectToken, IssueError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut random = Zeroizing::new([0u8; 48]);
        ring::rand::SystemRandom::new()
            .fill(&mut random[..])
            .map_err(|_| IssueError::NoRandomness)?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&random[..16]);
        let mut client_key = Zeroizing::new([0u8; 32]);
        client_key.copy_from_slice(&random[16..]);
        self.issue_with(request, now, salt, client_key)
    }

    /// [`issue`](Self::issue) with the clock, the ticket's salt and the
    /// client key given: test vectors. The salt must never repeat under one
    /// key and the client key must be secret: use [`issue`](Self::issue).
    #[cfg(any(test, feature = "internals"))]
    pub fn issue_at(
        &self,
        request: &TokenRequest,
        unix_secs: u64,
        salt: [u8; 16],
        client_key: [u8; 32],
    ) -> Result<ConnectToken, IssueError> {
        self.issue_with(request, unix_secs, salt, Zeroizing::new(client_key))
    }

    fn issue_with(
        &self,
        request: &TokenRequest,
        now: u64,
        salt: [u8; 16],
        client_key: Zeroizing<[u8; 32]>,
    ) -> Result<ConnectToken, IssueError> {
        let names = request.audience.len();
        if names == 0 || names > MAX_AUDIENCE {
            return Err(IssueError::AudienceCount(names));
        }
        if let Some(bad) = request
            .audience
            .iter()
            .find(|n| n.is_empty() || n.len() > 255)
        {
            return Err(IssueError::AudienceName(bad.len()));
        }
        if request.data.len() > MAX_DATA_LEN {
            return Err(IssueError::DataTooLong(request.data.len()));
        }
        let lifetime = request.lifetime.as_secs();
        if lifetime == 0 {
            return Err(IssueError::LifetimeTooShort);
        }
        if now.saturating_add(lifetime) > ticket::MAX_TIME {
            return Err(IssueError::LifetimeTooLong);
        }
        let contents = ticket::TicketContents {
            facts: ticket::Facts {
                client_id: request.client_id,
                issued_at: now,
                expires_at: now + lifetime,
                client_key,
                audience: request.audience.clone(),
            },
            data: request.data.clone(),
        };
        let ticket = ticket::seal(&self.key, &salt, &contents).ok_or(IssueError::TooLarge)?;
        Ok(ConnectToken {
            facts: contents.facts,
            ticket,
        })
    }
}

/// Who a token session's peer is: what its ticket said. Delivered with
/// every message of the session ([`Message::client`](crate::Message)) and
/// shown to the authorisation hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The application's name for the client.
    pub client_id: u64,
    /// The token's application data.
    pub data: Vec<u8>,
    /// When the token was issued.
    pub issued_at: SystemTime,
    /// When the token expires (the session does not end then).
    pub expires_at: SystemTime,
}

/// Why a server refused a token it could read (`docs/PROTOCOL.md` 14.6).
/// The client learns it from an authenticated refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRefusal {
    /// It expired by the server's clock (or lives longer than the server's
    /// `max_lifetime`).
    #[error("the token expired")]
    Expired,
    /// It was issued in the future by the server's clock (clocks disagree
    /// by more than a minute).
    #[error("the token is not yet valid (the issuer's and the server's clocks disagree)")]
    NotYetValid,
    /// None of its audience names is one of the server's.
    #[error("the token is not for this server (wrong audience)")]
    WrongAudience,
    /// Its client was revoked after it was issued.
    #[error("the token's client was revoked")]
    Revoked,
    /// A reason this build does not know (a newer server's).
    #[error("the server refused the token (reason {0}, unknown to this build)")]
    Unknown(u8),
}

impl TokenRefusal {
    /// The reason byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            TokenRefusal::Expired => 1,
            TokenRefusal::NotYetValid => 2,
            TokenRefusal::WrongAudience => 3,
            TokenRefusal::Revoked => 4,
            TokenRefusal::Unknown(b) => b,
        }
    }

    /// The refusal a reason byte names (an authenticated refusal ends the
    /// handshake whatever its reason).
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => TokenRefusal::Expired,
            2 => TokenRefusal::NotYetValid,
            3 => TokenRefusal::WrongAudience,
            4 => TokenRefusal::Revoked,
            other => TokenRefusal::Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests;
