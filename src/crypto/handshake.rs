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
//! finish (the replayer lacks the ephemeral key). Bounding pending handshakes
//! and stateless cookies under load (`docs/PROTOCOL.md`, "Address
//! validation") cap that cost.
//!
//! ## Messages
//!
//! ```text
//! 1. I -> R   psk, e            payload: version, AEAD capabilities, zero padding (64 B)
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

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::aead::{hardware_aes, AeadPreference, Algorithm};
use crate::crypto::keys::{Identity, NetworkKey, NodeId};

/// The Noise protocol name.
pub const NOISE_PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Handshake protocol version carried in message 1.
pub const HANDSHAKE_VERSION: u8 = 1;
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
/// costs the Diffie-Hellman operations done so far; at most
/// [`MAX_REBUILDS`] are granted per handshake.
pub struct Handshake {
    state: snow::HandshakeState,
    /// Set on the responder from message 1, on the initiator from message 2.
    algorithm: Option<Algorithm>,
    replay: Replay,
    rebuilds_left: u32,
}

/// Rebuilds granted to one handshake after failed reads.
pub const MAX_REBUILDS: u32 = 8;

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
        let ephemeral = fresh_ephemeral()?;
        let mut state = build(identity, network, first_header, true, &ephemeral)?;
        let mut payload = [0u8; MSG1_PAYLOAD_LEN];
        payload[0] = HANDSHAKE_VERSION;
        payload[1] = capabilities(preference);
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
            },
            msg,
        ))
    }

    /// Answers message 1 as responder: checks it (the shared seed, before any
    /// Diffie-Hellman), chooses the AEAD and writes message 2.
    pub fn respond(
        identity: &Identity,
        network: &NetworkKey,
        preference: AeadPreference,
        first_header: &[u8],
        msg1: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        if msg1.len() != MSG1_LEN {
            return Err(HandshakeError::BadLength {
                position: 1,
                got: msg1.len(),
                expected: MSG1_LEN,
            });
        }
        let ephemeral = fresh_ephemeral()?;
        let mut state = build(identity, network, first_header, false, &ephemeral)?;
        let mut payload = [0u8; MSG1_LEN];
        let n = state.read_message(msg1, &mut payload)?;
        let payload = &payload[..n];
        if payload.len() < 2 {
            return Err(HandshakeError::BadLength {
                position: 1,
                got: msg1.len(),
                expected: MSG1_LEN,
            });
        }
        if payload[0] != HANDSHAKE_VERSION {
            return Err(HandshakeError::UnsupportedVersion(payload[0]));
        }
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
            },
            msg,
        ))
    }

    /// Reads a message; after a failure, rebuilds the state as it was before
    /// (see the type's docs) so that the genuine message can still be read.
    fn read(&mut self, msg: &[u8], payload: &mut [u8]) -> Result<usize, HandshakeError> {
        match self.state.read_message(msg, payload) {
            Ok(n) => Ok(n),
            Err(e) => {
                if self.rebuilds_left > 0 {
                    self.rebuilds_left -= 1;
                    self.state = self.replay.rebuild(self.state.is_initiator())?;
                }
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
        if msg2.len() != MSG2_LEN {
            return Err(HandshakeError::BadLength {
                position: 2,
                got: msg2.len(),
                expected: MSG2_LEN,
            });
        }
        let mut payload = [0u8; MSG2_LEN];
        let n = self.read(msg2, &mut payload)?;
        let id = *payload[..n].first().ok_or(HandshakeError::BadLength {
            position: 2,
            got: msg2.len(),
            expected: MSG2_LEN,
        })?;
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
        if msg3.len() != MSG3_LEN {
            return Err(HandshakeError::BadLength {
                position: 3,
                got: msg3.len(),
                expected: MSG3_LEN,
            });
        }
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

fn build(
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

/// Checks that a message 1 authenticates under the network's PSK, without
/// building a handshake: the cheap test a node runs before it answers a
/// message 1 at all (a cookie challenge under load), so that non-members
/// still get silence.
///
/// It follows the Noise processing of `-> psk, e` and the payload's
/// `DecryptAndHash` (Noise spec 5.1–5.3, with BLAKE2s and ChaChaPoly) by
/// hand. Everything before the per-message prologue and ephemeral key is
/// computed once per node, so a check costs three BLAKE2s hashes, one HKDF
/// and one 80-byte AEAD open, and no Diffie-Hellman. Tests hold it to snow's
/// answer on genuine and damaged messages.
pub struct Msg1Check {
    /// `h` after hashing the protocol name (before the prologue).
    h0: [u8; 32],
    /// `ck` after `MixKeyAndHash(psk)`.
    ck: [u8; 32],
    /// The second HKDF output of `MixKeyAndHash(psk)`, hashed into `h`.
    temp_h: [u8; 32],
}

impl fmt::Debug for Msg1Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Msg1Check(..)")
    }
}

impl Msg1Check {
    /// Precomputes the PSK-dependent part of the check.
    pub fn new(network: &NetworkKey) -> Self {
        // The name is longer than 32 bytes: h = HASH(name); ck = h.
        let h0 = blake2s(&[NOISE_PATTERN.as_bytes()]);
        let (ck, temp_h, _) = hkdf3(&h0, network.psk());
        Msg1Check { h0, ck, temp_h }
    }

    /// Whether `msg1` (the Noise part of message 1) authenticates with
    /// `first_header` (its frame header, part of the prologue).
    pub fn verify(&self, first_header: &[u8], msg1: &[u8]) -> bool {
        if msg1.len() != MSG1_LEN {
            return false;
        }
        let (re, ciphertext) = msg1.split_at(32);
        // MixHash(prologue); MixHash(temp_h) from the psk token.
        let h = blake2s(&[&self.h0, PROLOGUE_LABEL, first_header]);
        let h = blake2s(&[&h, &self.temp_h]);
        // The e token: MixHash(re), and with a PSK also MixKey(re).
        let h = blake2s(&[&h, re]);
        let (_, k) = hkdf2(&self.ck, re);
        // DecryptAndHash(payload) with n = 0 and ad = h.
        let Ok(key) = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &k) else {
            return false;
        };
        let key = ring::aead::LessSafeKey::new(key);
        let mut buf = [0u8; MSG1_LEN - 32];
        buf.copy_from_slice(ciphertext);
        key.open_in_place(
            ring::aead::Nonce::assume_unique_for_key([0u8; 12]),
            ring::aead::Aad::from(&h),
            &mut buf,
        )
        .is_ok()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32]).unwrap()
    }

    fn net(seed: u8) -> NetworkKey {
        NetworkKey::from_seed(&[seed; 32]).unwrap()
    }

    fn run(
        i_net: &NetworkKey,
        r_net: &NetworkKey,
        i_pref: AeadPreference,
        r_pref: AeadPreference,
    ) -> Result<(HandshakeOutcome, HandshakeOutcome), HandshakeError> {
        let (a, b) = (node(1), node(2));
        let hdr = [7u8; 29];
        let (mut hi, m1) = Handshake::initiate(&a, i_net, i_pref, &hdr)?;
        assert_eq!(m1.len(), MSG1_LEN);
        let (mut hr, m2) = Handshake::respond(&b, r_net, r_pref, &hdr, &m1)?;
        assert_eq!(m2.len(), MSG2_LEN);
        let (m3, oi) = hi.finish_initiator(&m2)?;
        assert_eq!(m3.len(), MSG3_LEN);
        let or = hr.finish_responder(&m3)?;
        Ok((oi, or))
    }

    #[test]
    fn msg1_check_agrees_with_the_handshake() {
        let check = Msg1Check::new(&net(5));
        for round in 0..4u8 {
            let hdr = [round; 29];
            let (_, m1) =
                Handshake::initiate(&node(1), &net(5), AeadPreference::Auto, &hdr).unwrap();
            assert!(check.verify(&hdr, &m1), "a genuine message 1");
            assert!(Handshake::respond(&node(2), &net(5), AeadPreference::Auto, &hdr, &m1).is_ok());
            // Another network's message 1.
            let (_, other) =
                Handshake::initiate(&node(1), &net(6), AeadPreference::Auto, &hdr).unwrap();
            assert!(!check.verify(&hdr, &other));
            // Any bit of the message or of its header (the prologue).
            for i in 0..m1.len() {
                let mut bent = m1.clone();
                bent[i] ^= 1 << (i % 8);
                assert!(!check.verify(&hdr, &bent), "byte {i} of message 1");
                let snow = Handshake::respond(&node(2), &net(5), AeadPreference::Auto, &hdr, &bent);
                assert!(snow.is_err(), "snow agrees on byte {i}");
            }
            for i in 0..hdr.len() {
                let mut bent = hdr;
                bent[i] ^= 0x80;
                assert!(!check.verify(&bent, &m1), "byte {i} of the header");
            }
            assert!(!check.verify(&hdr, &m1[..MSG1_LEN - 1]));
            assert!(!check.verify(&hdr, &[0u8; MSG1_LEN]));
        }
    }

    #[test]
    fn full_handshake_agrees_on_keys_and_identities() {
        let (i, r) = run(&net(5), &net(5), AeadPreference::Auto, AeadPreference::Auto).unwrap();
        assert_eq!(*i.send_secret, *r.recv_secret);
        assert_eq!(*i.recv_secret, *r.send_secret);
        assert_ne!(*i.send_secret, *i.recv_secret);
        assert_eq!(i.peer, node(2).node_id());
        assert_eq!(r.peer, node(1).node_id());
        assert_eq!(i.algorithm, r.algorithm);
        let expected = if hardware_aes() {
            Algorithm::Aes256Gcm
        } else {
            Algorithm::ChaCha20Poly1305
        };
        assert_eq!(i.algorithm, expected);
    }

    #[test]
    fn wrong_shared_seed_is_refused_at_message_one() {
        let (a, b) = (node(1), node(2));
        let hdr = [0u8; 29];
        let (_, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
        let e = Handshake::respond(&b, &net(6), AeadPreference::Auto, &hdr, &m1).unwrap_err();
        assert_eq!(e, HandshakeError::Authentication);
    }

    #[test]
    fn prologue_binds_the_first_header() {
        let (a, b) = (node(1), node(2));
        let (_, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &[0u8; 29]).unwrap();
        let e = Handshake::respond(&b, &net(5), AeadPreference::Auto, &[1u8; 29], &m1).unwrap_err();
        assert_eq!(e, HandshakeError::Authentication);
    }

    #[test]
    fn explicit_preferences() {
        use AeadPreference::*;
        for (ip, rp, want) in [
            (ChaCha20Poly1305, Auto, Algorithm::ChaCha20Poly1305),
            (Aes256Gcm, Auto, Algorithm::Aes256Gcm),
            (Auto, ChaCha20Poly1305, Algorithm::ChaCha20Poly1305),
            (Aes256Gcm, ChaCha20Poly1305, Algorithm::ChaCha20Poly1305),
        ] {
            let (i, r) = run(&net(1), &net(1), ip, rp).unwrap();
            assert_eq!((i.algorithm, r.algorithm), (want, want), "{ip:?} {rp:?}");
        }
    }

    #[test]
    fn first_message_outweighs_the_answer() {
        // Anti-amplification: message 1 >= message 2.
        const { assert!(MSG1_LEN >= MSG2_LEN) };
    }

    #[test]
    fn tampered_messages_fail() {
        let (a, b) = (node(1), node(2));
        let hdr = [0u8; 29];
        for pos in [0usize, 40, MSG1_LEN - 1] {
            let (_, mut m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
            m1[pos] ^= 1;
            assert!(Handshake::respond(&b, &net(5), AeadPreference::Auto, &hdr, &m1).is_err());
        }
        let (mut hi, m1) = Handshake::initiate(&a, &net(5), AeadPreference::Auto, &hdr).unwrap();
        let (mut hr, m2) =
            Handshake::respond(&b, &net(5), AeadPreference::Auto, &hdr, &m1).unwrap();
        let mut bad = m2.clone();
        bad[50] ^= 1;
        assert_eq!(
            hi.finish_initiator(&bad).unwrap_err(),
            HandshakeError::Authentication
        );
        // The forged message did not break the handshake: the genuine one
        // still completes it.
        let (m3, oi) = hi.finish_initiator(&m2).unwrap();
        let mut bad = m3.clone();
        bad[10] ^= 1;
        assert_eq!(
            hr.finish_responder(&bad).unwrap_err(),
            HandshakeError::Authentication
        );
        let or = hr.finish_responder(&m3).unwrap();
        assert_eq!(*oi.send_secret, *or.recv_secret);
        // Finished handshakes take no more messages.
        assert!(hr.finish_responder(&m3).is_err());
        assert!(hi.finish_initiator(&m2).is_err());
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let b = node(2);
        let e = Handshake::respond(&b, &net(5), AeadPreference::Auto, &[0; 29], &[0u8; 10])
            .unwrap_err();
        assert!(matches!(e, HandshakeError::BadLength { position: 1, .. }));
    }
}
