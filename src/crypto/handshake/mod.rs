//! The Noise handshake: `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`.
//!
//! ## Why this pattern
//!
//! - **XX**: neither node knows the other's static key in advance (nodes only
//!   share the network seed), so both static keys travel inside the handshake,
//!   encrypted, and are authenticated by Diffie-Hellman. Each side ends with
//!   the other's [`NodeId`].
//! - **psk0**: the network key is mixed in *before* the first message, so the
//!   very first message already carries an AEAD tag that only a member can
//!   produce. A responder checks it with one hash and one AEAD open — no
//!   Diffie-Hellman, no state — and drops non-members silently. With `psk3`
//!   (the usual `XXpsk3`) the responder would have to answer an outsider's
//!   first message with its own static key, readable by that outsider: a
//!   peer without the shared seed would learn the responder's identity.
//!   With `psk0` it learns nothing, not even that an stt node listens.
//! - **ChaChaPoly_BLAKE2s**: the handshake runs three messages per session,
//!   so its cipher does not matter for speed; these are WireGuard's choices.
//!   Data frames use the AEAD the handshake agrees on (see below).
//!
//! The cost: the first message can be replayed by an on-path attacker; the
//! responder then spends a Diffie-Hellman on a handshake that can never
//! finish (the replayer lacks the ephemeral key). Three things bound that:
//! message 1 carries the initiator's coarse wall-clock time (seconds since
//! the Unix epoch, authenticated by the PSK tag), which the responder accepts
//! only within [`MSG1_TIME_WINDOW`] of its own clock; a node keeps state for
//! one ephemeral key at most once while its timestamp can still pass
//! ([`Msg1ReplayCache`], consulted through [`Msg1Check::admit_fresh_at`]); and
//! pending handshakes and stateless cookies under load (`docs/PROTOCOL.md`,
//! "Address validation") cap what is left. A captured message 1 therefore
//! opens at most one handshake per node, and only within a minute of its
//! capture; after that it gets silence everywhere, and no longer tells an
//! observer whether an address runs a node of the network.
//!
//! ## Messages
//!
//! ```text
//! 1. I -> R   psk, e            payload: version, AEAD capabilities, timestamp (u64 BE, s), zero padding (64 B)
//! 2. R -> I   e, ee, s, es      payload: chosen AEAD (1 B)
//! 3. I -> R   s, se             payload: empty
//! ```
//!
//! The prologue binds the first frame header (version, session id) into the
//! handshake hash. The first message is padded so that it is at least as
//! large as the second: a responder never sends more than it received to an
//! address it has not validated.
//!
//! After message 3 both sides take the two directional traffic secrets from
//! the Noise split (initiator → responder, responder → initiator).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::aead::{hardware_aes, AeadPreference, Algorithm};
use crate::crypto::cookie::ChallengeKey;
use crate::crypto::keys::{Identity, NetworkKey, NodeId};

mod msg1;

pub(crate) use msg1::open_msg1;
pub use msg1::Msg1Check;
#[cfg(not(any(test, feature = "internals")))]
pub(crate) use msg1::Msg1Info;
#[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
pub use msg1::{Msg1Error, Msg1Info, Msg1ReplayCache};

/// The Noise protocol name.
pub const NOISE_PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Handshake protocol version carried in message 1 (2: with a timestamp
/// and an Argon2id-stretched PSK; version 1 nodes do not interoperate).
pub const HANDSHAKE_VERSION: u8 = 2;
/// How far a message 1's timestamp may be from the responder's clock, either
/// way. Generous for NTP-synchronised hosts, short enough that a captured
/// message 1 is worthless a minute later.
pub const MSG1_TIME_WINDOW: Duration = Duration::from_secs(60);
/// How long a [`Msg1ReplayCache`] remembers an ephemeral key: twice the
/// window, so that a message 1 first seen at the earliest moment its
/// timestamp passes is still remembered at the last (and longer than the
/// default handshake timeout, 10 s).
pub const MSG1_REPLAY_RETENTION: Duration = Duration::from_secs(2 * 60);
/// Ephemeral keys a [`Msg1ReplayCache`] holds by default: 2^18 (about
/// 12 MiB when full), a sustained 2 000 new handshakes a second per node.
pub const MSG1_REPLAY_CAPACITY: usize = 1 << 18;
/// Offset of the timestamp in message 1's payload.
const TIMESTAMP_AT: usize = 2;
/// Length of message 1's payload (version, capabilities, padding).
pub const MSG1_PAYLOAD_LEN: usize = 64;
/// Length of the Noise part of message 1: ephemeral key, payload, tag.
pub const MSG1_LEN: usize = 32 + MSG1_PAYLOAD_LEN + 16;
/// Length of the Noise part of message 2: ephemeral, encrypted static, payload, tag.
pub const MSG2_LEN: usize = 32 + 48 + 1 + 16;
/// Length of the Noise part of message 3: encrypted static, tag.
pub const MSG3_LEN: usize = 48 + 16;

const PROLOGUE_LABEL: &[u8] = b"stt v1 handshake";
const CAP_HW_AES: u8 = 0x01;
const CAP_PREFER_AES: u8 = 0x02;
const CAP_PREFER_CHACHA: u8 = 0x04;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message did not authenticate: the peer holds another shared seed,
    /// or the message was forged or damaged.
    #[error("handshake message failed authentication: the peer is not a member of this network (different shared_seed) or the message was tampered with")]
    Authentication,
    /// The message has the wrong length for its position.
    #[error("handshake message {position} is {got} bytes, expected {expected}")]
    BadLength {
        /// Message position (1, 2 or 3).
        position: u8,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The peer speaks another handshake version.
    #[error("peer speaks handshake version {0}, this build speaks {HANDSHAKE_VERSION}")]
    UnsupportedVersion(u8),
    /// The peer chose an AEAD this build does not know.
    #[error("peer chose unknown AEAD id {0}")]
    UnknownAlgorithm(u8),
    /// A message arrived out of order for this side of the handshake.
    #[error("handshake message {0} is not expected now")]
    UnexpectedMessage(u8),
    /// Message 1's timestamp is further than 60 s (`MSG1_TIME_WINDOW`) from
    /// this node's clock: a replay, or a clock that is off.
    #[error("handshake message 1 is {skew_secs} s away from this node's clock (window ±{} s): replayed, or a clock is wrong", MSG1_TIME_WINDOW.as_secs())]
    StaleTimestamp {
        /// The message's time minus this node's, in seconds.
        skew_secs: i64,
    },
    /// Forged copies of a handshake message used up the rebuilds granted
    /// for now; the handshake is intact and reads the next copy once a
    /// rebuild is granted again (one per 250 ms).
    #[error("too many forged handshake messages for now; the handshake waits for the genuine one")]
    RebuildsExhausted,
    /// The Noise library refused an operation (a bug, or a corrupted state).
    #[error("noise: {0}")]
    Noise(String),
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => HandshakeError::Authentication,
            other => HandshakeError::Noise(other.to_string()),
        }
    }
}

/// What a finished handshake yields.
pub struct HandshakeOutcome {
    /// The AEAD both sides use for data frames.
    pub algorithm: Algorithm,
    /// Traffic secret for what this side sends.
    pub send_secret: Zeroizing<[u8; 32]>,
    /// Traffic secret for what this side receives.
    pub recv_secret: Zeroizing<[u8; 32]>,
    /// The peer's authenticated node id.
    pub peer: NodeId,
}

impl fmt::Debug for HandshakeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeOutcome")
            .field("algorithm", &self.algorithm)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// One side of a handshake in progress.
///
/// ## Surviving forged messages
///
/// snow rolls back only part of its state when a message fails to decrypt
/// (the chaining key and hash, not the cipher key). A message 3 whose last
/// bytes were tampered with fails *after* its static key decrypted and the
/// cipher key moved on, so the genuine message 3 arriving next would fail
/// too: one injected datagram could stall the handshake. So every side
/// keeps what it needs to rebuild its state exactly — its own ephemeral key
/// (drawn here from the system CSPRNG and handed to snow), the prologue and
/// the messages so far — and rebuilds after any failed read. A rebuild
/// costs the Diffie-Hellman operations done so far (three on the
/// responder), so they are rationed: [`MAX_REBUILDS`] at first, one more per
/// [`REBUILD_REFILL`] (see [`refill`](Self::refill)), never more than
/// [`MAX_REBUILDS`] in hand. With none in hand the handshake reads nothing
/// ([`HandshakeError::RebuildsExhausted`]) rather than risk a read it could
/// not undo: forged copies can delay a handshake while they keep coming,
/// never break it, and cost the responder at most
/// `MAX_REBUILDS + handshake_timeout / REBUILD_REFILL` rebuilds (48 with the
/// defaults).
pub struct Handshake {
    state: snow::HandshakeState,
    /// Set on the responder from message 1, on the initiator from message 2.
    algorithm: Option<Algorithm>,
    replay: Replay,
    rebuilds_left: u32,
    refilled_at: Option<Instant>,
}

/// Rebuilds a handshake holds at most (and starts with).
pub const MAX_REBUILDS: u32 = 8;
/// One rebuild more is granted per this much time.
pub const REBUILD_REFILL: Duration = Duration::from_millis(250);

/// Everything needed to bring a handshake back to where it was.
struct Replay {
    identity: Identity,
    network: NetworkKey,
    first_header: Vec<u8>,
    ephemeral: Zeroizing<[u8; 32]>,
    /// Initiator: message 1's payload. Responder: message 1 as received.
    msg1: Vec<u8>,
    /// Responder: message 2's payload.
    msg2_payload: Vec<u8>,
}

impl Replay {
    /// A state that has just sent message 1 (initiator) or message 2
    /// (responder).
    fn rebuild(&self, initiator: bool) -> Result<snow::HandshakeState, HandshakeError> {
        let mut state = build(
            &self.identity,
            &self.network,
            &self.first_header,
            initiator,
            &self.ephemeral,
        )?;
        let mut scratch = [0u8; MSG1_LEN + MSG2_LEN];
        if initiator {
            state.write_message(&self.msg1, &mut scratch)?;
        } else {
            state.read_message(&self.msg1, &mut scratch)?;
            state.write_message(&self.msg2_payload, &mut scratch)?;
        }
        Ok(state)
    }
}

impl Handshake {
    /// Starts a handshake as initiator. `first_header` is the encoded header
    /// of the frame that will carry message 1 (it goes into the prologue).
    /// Returns the handshake and message 1.
    pub fn initiate(
        identity: &Identity,
        network: &NetworkKey,
        preference: AeadPreference,
        first_header: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::initiate_at(identity, network, preference, first_header, unix_now())
    }

    /// [`initiate`](Self::initiate) with the timestamp given (seconds since
    /// the Unix epoch): tests and test vectors.
    pub fn initiate_at(
        identity: &Identity,
        network: &NetworkKey,
        preference: AeadPreference,
        first_header: &[u8],
        unix_secs: u64,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let ephemeral = fresh_ephemeral()?;
        let mut state = build(identity, network, first_header, true, &ephemeral)?;
        let mut payload = [0u8; MSG1_PAYLOAD_LEN];
        payload[0] = HANDSHAKE_VERSION;
        payload[1] = capabilities(preference);
        payload[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&unix_secs.to_be_bytes());
        let mut msg = vec![0u8; MSG1_LEN];
        let n = state.write_message(&payload, &mut msg)?;
        msg.truncate(n);
        let replay = Replay {
            identity: identity.clone(),
            network: network.clone(),
            first_header: first_header.to_vec(),
            ephemeral,
            msg1: payload.to_vec(),
            msg2_payload: Vec::new(),
        };
        Ok((
            Handshake {
                state,
                algorithm: None,
                replay,
                rebuilds_left: MAX_REBUILDS,
                refilled_at: None,
            },
            msg,
        ))
    }

    /// Answers message 1 as responder: checks it (the shared seed, before any
    /// Diffie-Hellman, and its timestamp against this node's clock), chooses
    /// the AEAD and writes message 2.
    pub fn respond(
        identity: &Identity,
        network: &NetworkKey,
        preference: AeadPreference,
        first_header: &[u8],
        msg1: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::respond_at(
            identity,
            network,
            preference,
            first_header,
            msg1,
            unix_now(),
        )
    }

    /// [`respond`](Self::respond) with this node's clock given (seconds since
    /// the Unix epoch).
    pub fn respond_at(
        identity: &Identity,
        network: &NetworkKey,
        preference: AeadPreference,
        first_header: &[u8],
        msg1: &[u8],
        unix_secs: u64,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        check_length(msg1, 1, MSG1_LEN)?;
        let ephemeral = fresh_ephemeral()?;
        let mut state = build(identity, network, first_header, false, &ephemeral)?;
        let mut payload = [0u8; MSG1_LEN];
        let n = state.read_message(msg1, &mut payload)?;
        let payload = &payload[..n];
        if payload.len() < TIMESTAMP_AT + 8 {
            return Err(bad_length(1, msg1.len(), MSG1_LEN));
        }
        if payload[0] != HANDSHAKE_VERSION {
            return Err(HandshakeError::UnsupportedVersion(payload[0]));
        }
        check_timestamp(payload, unix_secs)?;
        let algorithm = choose(payload[1], preference);
        let msg2_payload = [algorithm.to_u8()];
        let mut msg = vec![0u8; MSG2_LEN];
        let n = state.write_message(&msg2_payload, &mut msg)?;
        msg.truncate(n);
        let replay = Replay {
            identity: identity.clone(),
            network: network.clone(),
            first_header: first_header.to_vec(),
            ephemeral,
            msg1: msg1.to_vec(),
            msg2_payload: msg2_payload.to_vec(),
        };
        Ok((
            Handshake {
                state,
                algorithm: Some(algorithm),
                replay,
                rebuilds_left: MAX_REBUILDS,
                refilled_at: None,
            },
            msg,
        ))
    }

    /// The key that authenticates cookie challenges for this handshake's
    /// network (an initiator checks a challenge with it).
    pub fn challenge_key(&self) -> ChallengeKey {
        ChallengeKey::new(&self.replay.network)
    }

    /// Grants the rebuilds earned since the last call: one per
    /// [`REBUILD_REFILL`] elapsed, up to [`MAX_REBUILDS`] in hand. The
    /// session calls it with its clock before each read.
    pub fn refill(&mut self, now: Instant) {
        let Some(at) = self.refilled_at else {
            self.refilled_at = Some(now);
            return;
        };
        let earned = now.saturating_duration_since(at).as_millis() / REBUILD_REFILL.as_millis();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.rebuilds_left = self.rebuilds_left.saturating_add(earned).min(MAX_REBUILDS);
            self.refilled_at = Some(now);
        }
    }

    /// Reads a message; after a failure, rebuilds the state as it was before
    /// (see the type's docs) so that the genuine message can still be read.
    /// Without a rebuild in hand, reads nothing.
    fn read(&mut self, msg: &[u8], payload: &mut [u8]) -> Result<usize, HandshakeError> {
        if self.rebuilds_left == 0 {
            return Err(HandshakeError::RebuildsExhausted);
        }
        match self.state.read_message(msg, payload) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.rebuilds_left -= 1;
                self.state = self.replay.rebuild(self.state.is_initiator())?;
                Err(e.into())
            }
        }
    }

    /// Initiator: reads message 2, writes message 3 and finishes.
    ///
    /// A message 2 that fails leaves the handshake as it was, so a forged
    /// message 2 cannot break an honest handshake: the genuine one can still
    /// be read after it.
    pub fn finish_initiator(
        &mut self,
        msg2: &[u8],
    ) -> Result<(Vec<u8>, HandshakeOutcome), HandshakeError> {
        if !self.state.is_initiator() || self.algorithm.is_some() {
            return Err(HandshakeError::UnexpectedMessage(2));
        }
        check_length(msg2, 2, MSG2_LEN)?;
        let mut payload = [0u8; MSG2_LEN];
        let n = self.read(msg2, &mut payload)?;
        let id = *payload[..n]
            .first()
            .ok_or(bad_length(2, msg2.len(), MSG2_LEN))?;
        let algorithm = Algorithm::from_u8(id).ok_or(HandshakeError::UnknownAlgorithm(id))?;
        // Every build supports both AEADs, so the initiator accepts the
        // responder's choice even where it asked for the other one.
        self.algorithm = Some(algorithm);
        let mut msg = vec![0u8; MSG3_LEN];
        let n = self.state.write_message(&[], &mut msg)?;
        msg.truncate(n);
        let outcome = self.outcome()?;
        Ok((msg, outcome))
    }

    /// Responder: reads message 3 and finishes. As for message 2, a failed
    /// message 3 leaves the handshake usable.
    pub fn finish_responder(&mut self, msg3: &[u8]) -> Result<HandshakeOutcome, HandshakeError> {
        if self.state.is_initiator() || self.state.is_handshake_finished() {
            return Err(HandshakeError::UnexpectedMessage(3));
        }
        check_length(msg3, 3, MSG3_LEN)?;
        let mut payload = [0u8; MSG3_LEN];
        self.read(msg3, &mut payload)?;
        self.outcome()
    }

    fn outcome(&mut self) -> Result<HandshakeOutcome, HandshakeError> {
        if !self.state.is_handshake_finished() {
            return Err(HandshakeError::Noise("handshake not finished".into()));
        }
        let algorithm = self
            .algorithm
            .ok_or_else(|| HandshakeError::Noise("no AEAD agreed".into()))?;
        let remote: [u8; 32] = self
            .state
            .get_remote_static()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| HandshakeError::Noise("no remote static key".into()))?;
        let (i2r, r2i) = self.state.dangerously_get_raw_split();
        let (send, recv) = if self.state.is_initiator() {
            (i2r, r2i)
        } else {
            (r2i, i2r)
        };
        Ok(HandshakeOutcome {
            algorithm,
            send_secret: Zeroizing::new(send),
            recv_secret: Zeroizing::new(recv),
            peer: NodeId::from_public_key(&remote),
        })
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.state.is_initiator())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

pub(crate) fn build(
    identity: &Identity,
    network: &NetworkKey,
    first_header: &[u8],
    initiator: bool,
    ephemeral: &[u8; 32],
) -> Result<snow::HandshakeState, HandshakeError> {
    let params: snow::params::NoiseParams = NOISE_PATTERN
        .parse()
        .map_err(|e: snow::Error| HandshakeError::Noise(e.to_string()))?;
    let mut prologue = Vec::with_capacity(PROLOGUE_LABEL.len() + first_header.len());
    prologue.extend_from_slice(PROLOGUE_LABEL);
    prologue.extend_from_slice(first_header);
    // The ephemeral key comes from us (fresh from the system CSPRNG for each
    // handshake) rather than from snow, so that a failed read can be undone
    // by rebuilding the state; snow names the setter "for testing only"
    // because a *fixed* key would be fatal, which this is not.
    let builder = snow::Builder::new(params)
        .local_private_key(identity.private_key())?
        .psk(0, network.psk())?
        .prologue(&prologue)?
        .fixed_ephemeral_key_for_testing_only(ephemeral);
    Ok(if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    })
}

/// Seconds since the Unix epoch by the system clock (0 before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `theirs - ours` in seconds, saturating.
fn skew(theirs: u64, ours: u64) -> i64 {
    if theirs >= ours {
        i64::try_from(theirs - ours).unwrap_or(i64::MAX)
    } else {
        i64::try_from(ours - theirs).map_or(i64::MIN, |d| -d)
    }
}

/// Checks message 1's payload timestamp against `unix_secs`.
fn check_timestamp(payload: &[u8], unix_secs: u64) -> Result<(), HandshakeError> {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[TIMESTAMP_AT..TIMESTAMP_AT + 8]);
    let skew_secs = skew(u64::from_be_bytes(ts), unix_secs);
    if skew_secs.unsigned_abs() > MSG1_TIME_WINDOW.as_secs() {
        return Err(HandshakeError::StaleTimestamp { skew_secs });
    }
    Ok(())
}

fn blake2s(parts: &[&[u8]]) -> [u8; 32] {
    blake2s_after(&[], parts)
}

/// BLAKE2s of `first` followed by `parts`.
fn blake2s_after(first: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use blake2::Digest;
    let mut d = blake2::Blake2s256::new();
    d.update(first);
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// HMAC-BLAKE2s (block length 64, as Noise uses it).
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = blake2s_after(&ipad, parts);
    blake2s_after(&opad, &[&inner])
}

/// Noise's HKDF with two outputs.
fn hkdf2(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let temp = hmac(ck, &[ikm]);
    let one = hmac(&temp, &[&[1]]);
    let two = hmac(&temp, &[&one, &[2]]);
    (one, two)
}

/// Noise's HKDF with three outputs.
fn hkdf3(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let temp = hmac(ck, &[ikm]);
    let one = hmac(&temp, &[&[1]]);
    let two = hmac(&temp, &[&one, &[2]]);
    let three = hmac(&temp, &[&two, &[3]]);
    (one, two, three)
}

/// A fresh X25519 private key from the system CSPRNG (X25519 clamps it).
fn fresh_ephemeral() -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    use ring::rand::SecureRandom;
    let mut key = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut key[..])
        .map_err(|_| HandshakeError::Noise("the system random generator failed".into()))?;
    Ok(key)
}

fn capabilities(pref: AeadPreference) -> u8 {
    let hw = if hardware_aes() { CAP_HW_AES } else { 0 };
    hw | match pref {
        AeadPreference::Auto => 0,
        AeadPreference::Aes256Gcm => CAP_PREFER_AES,
        AeadPreference::ChaCha20Poly1305 => CAP_PREFER_CHACHA,
    }
}

/// The responder's choice. An explicit preference beats `Auto`; when both
/// sides are explicit and differ, the responder's wins. Both on `Auto`:
/// AES-256-GCM only if both CPUs have hardware AES.
fn choose(initiator_caps: u8, pref: AeadPreference) -> Algorithm {
    match pref {
        AeadPreference::Aes256Gcm => return Algorithm::Aes256Gcm,
        AeadPreference::ChaCha20Poly1305 => return Algorithm::ChaCha20Poly1305,
        AeadPreference::Auto => {}
    }
    if initiator_caps & CAP_PREFER_AES != 0 {
        Algorithm::Aes256Gcm
    } else if initiator_caps & CAP_PREFER_CHACHA != 0 {
        Algorithm::ChaCha20Poly1305
    } else if initiator_caps & CAP_HW_AES != 0 && hardware_aes() {
        Algorithm::Aes256Gcm
    } else {
        Algorithm::ChaCha20Poly1305
    }
}

/// The error for handshake message `position` of `got` bytes (or whose
/// plaintext is short), `expected` being its length.
fn bad_length(position: u8, got: usize, expected: usize) -> HandshakeError {
    HandshakeError::BadLength {
        position,
        got,
        expected,
    }
}

/// Refuses handshake message `position` unless it is `expected` bytes long.
fn check_length(msg: &[u8], position: u8, expected: usize) -> Result<(), HandshakeError> {
    if msg.len() == expected {
        Ok(())
    } else {
        Err(bad_length(position, msg.len(), expected))
    }
}

#[cfg(test)]
mod tests;
