//! Sealing and opening of data frames, with key update.
//!
//! Each direction of a session has its own 32-byte traffic secret (the two
//! halves of the Noise split). From secret *n* we derive the AEAD key of key
//! generation *n*, and secret *n + 1* for the next generation:
//!
//! ```text
//! key_n        = HKDF-Expand(secret_n, "stt v1 key", 32)
//! secret_(n+1) = HKDF-Expand(secret_n, "stt v1 key update", 32)
//! ```
//!
//! The header's `KEY_PHASE` flag carries the low bit of the generation, as
//! QUIC's key phase does. A sender updates its key when a generation has
//! sealed [`Algorithm::update_interval`] packets or
//! [`Algorithm::update_bytes`] bytes (half the AEAD's confidentiality limit,
//! RFC 9001 §6.6), when the session's timer asks for it, or when the peer
//! does; the receiver keeps the previous key for packets reordered across
//! the update (the session drops it a few round trips later) and precomputes
//! the next one so that an update costs no visible time.
//!
//! ## Limits
//!
//! RFC 9001 §6.6 derives its packet limits from the number of 16-byte
//! blocks one key encrypts, for packets of QUIC's size; our WebSocket frames
//! reach 16 MiB. So a key counts bytes as well as packets: its whole
//! confidentiality budget ([`Algorithm::confidentiality_limit`] packets or
//! [`Algorithm::confidentiality_bytes`] bytes, i.e. the packet limit
//! applied to 16 KiB units) is twice the default update trigger. An update
//! waits for the peer to confirm the previous one (see
//! [`SendKeys::awaiting_confirmation`]); if the confirmation has not come
//! when the whole budget is spent, sealing stops with
//! [`CryptoError::KeyExhausted`] and the session closes, as RFC 9001 §6.6
//! requires, rather than exceed the limit. A user-set interval is clamped to
//! the AEAD's own; it makes updates more frequent, not the budget smaller
//! (a short interval on a lossy path only waits longer for confirmations).
//!
//! The nonce is the 64-bit packet number, big-endian, behind four zero bytes.
//! Packet numbers only grow on a direction, across key generations too, so no
//! nonce is ever used twice under one key; a sender stops at
//! [`MAX_PACKET_NUMBER`]. The receiver checks the [`ReplayWindow`] before
//! spending an open, and records the number only once the frame authenticated.

use std::fmt;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hkdf;
use zeroize::Zeroizing;

use crate::crypto::keys::expand_32;
use crate::crypto::rekey::rekeyed_secret;
use crate::crypto::replay::{ReplayError, ReplayWindow};
use crate::frame::{Flags, Header, HEADER_LEN, MAX_PAYLOAD_LEN, TAG_LEN};

/// Highest packet number a sender will use (2^62 − 1, as QUIC).
pub const MAX_PACKET_NUMBER: u64 = (1 << 62) - 1;

const KEY_LABEL: &[u8] = b"stt v1 key";
const UPDATE_LABEL: &[u8] = b"stt v1 key update";

/// An AEAD algorithm for data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-256-GCM: fastest where the CPU has AES instructions.
    Aes256Gcm,
    /// ChaCha20-Poly1305: fastest without AES instructions, constant-time in
    /// software.
    ChaCha20Poly1305,
}

impl Algorithm {
    /// The wire identifier (handshake message 2).
    pub const fn to_u8(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 1,
            Algorithm::ChaCha20Poly1305 => 2,
        }
    }

    /// The algorithm of a wire identifier.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Algorithm::Aes256Gcm),
            2 => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Packets one key may seal at most: the confidentiality limit of
    /// RFC 9001 §6.6 for AES-GCM (2^23); ChaCha20 has no practical limit
    /// (2^62), we still stop at 2^33 for hygiene.
    pub const fn confidentiality_limit(self) -> u64 {
        match self {
            Algorithm::Aes256Gcm => 1 << 23,
            Algorithm::ChaCha20Poly1305 => 1 << 33,
        }
    }

    /// Bytes (plaintext and tag) one key may seal at most: the packet limit
    /// applied to 16 KiB units (2^37 bytes, 128 GiB, for AES-GCM; 2^47 for
    /// ChaCha20), so that large WebSocket frames count for what they weigh.
    pub const fn confidentiality_bytes(self) -> u64 {
        self.confidentiality_limit() << 14
    }

    /// Packets sealed under one key before the sender updates it: half the
    /// [`confidentiality_limit`](Self::confidentiality_limit), leaving the
    /// other half for the peer to confirm the update (2^22 for AES-GCM,
    /// 2^32 for ChaCha20).
    pub const fn update_interval(self) -> u64 {
        self.confidentiality_limit() / 2
    }

    /// Bytes sealed under one key before the sender updates it: half the
    /// [`confidentiality_bytes`](Self::confidentiality_bytes).
    pub const fn update_bytes(self) -> u64 {
        self.confidentiality_bytes() / 2
    }

    /// Forgery attempts tolerated on a session before it must close: the
    /// integrity limit of RFC 9001 §6.6 (2^52 for AES-GCM, 2^36 for ChaCha20).
    pub const fn integrity_limit(self) -> u64 {
        match self {
            Algorithm::Aes256Gcm => 1 << 52,
            Algorithm::ChaCha20Poly1305 => 1 << 36,
        }
    }

    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Aes256Gcm => "AES-256-GCM",
            Algorithm::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        })
    }
}

/// Which AEAD a node asks for in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AeadPreference {
    /// AES-256-GCM when both peers have hardware AES, ChaCha20-Poly1305
    /// otherwise (the default: the faster one for the CPUs at hand).
    #[default]
    Auto,
    /// Ask for AES-256-GCM.
    Aes256Gcm,
    /// Ask for ChaCha20-Poly1305.
    ChaCha20Poly1305,
}

/// Whether this CPU has AES and carry-less multiply instructions, with which
/// AES-256-GCM is the faster of the two AEADs (without them,
/// ChaCha20-Poly1305 is).
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Why a frame could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The packet number space of this direction is used up; the session must
    /// close and a new one be opened.
    #[error("packet numbers exhausted on this session: open a new session")]
    PacketNumbersExhausted,
    /// The frame would exceed the largest payload a frame may carry.
    #[error("plaintext of {0} bytes does not fit in one frame")]
    TooLarge(usize),
    /// The current key sealed its whole confidentiality budget while the
    /// peer had not confirmed the last update: the session must close
    /// (RFC 9001 §6.6).
    #[error("key exhausted: the confidentiality limit was reached before the peer confirmed the key update; open a new session")]
    KeyExhausted,
    /// The frame failed authentication: wrong key, tampered header or
    /// ciphertext, or forged.
    #[error("frame failed authentication (tampered, forged, or sealed under another key)")]
    Authentication,
    /// The packet number was already received or is too old.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// One key generation: its AEAD key and the secret of the next generation.
struct Generation {
    key: LessSafeKey,
    next_secret: Zeroizing<[u8; 32]>,
    /// The generation's own secret (tests compare key schedules with it).
    #[cfg(test)]
    secret: [u8; 32],
}

impl Generation {
    fn from_secret(alg: Algorithm, secret: &[u8; 32]) -> Self {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
        let key_bytes = expand_32(&prk, KEY_LABEL);
        // Both algorithms take 32-byte keys, so this cannot fail.
        let unbound = UnboundKey::new(alg.ring(), &key_bytes[..])
            .expect("32-byte key matches both AEADs' key length");
        Generation {
            key: LessSafeKey::new(unbound),
            next_secret: expand_32(&prk, UPDATE_LABEL),
            #[cfg(test)]
            secret: *secret,
        }
    }

    fn next(&self, alg: Algorithm) -> Self {
        Generation::from_secret(alg, &self.next_secret)
    }

    /// Replaces the next generation's secret by its rekeyed form (see
    /// [`crate::crypto::rekey`]).
    fn rekey_next(&mut self, mix: &[u8; 32]) {
        self.next_secret = rekeyed_secret(mix, &self.next_secret);
    }
}

fn nonce(pn: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&pn.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The sending half of a session's keys.
pub struct SendKeys {
    alg: Algorithm,
    current: Generation,
    phase: bool,
    next_pn: u64,
    sealed_in_generation: u64,
    bytes_in_generation: u64,
    update_interval: u64,
    update_bytes: u64,
    update_requested: bool,
    /// An update happened that the peer has not yet been seen to follow:
    /// no further update until it has (see [`SendKeys::confirm_update`]).
    awaiting_confirmation: bool,
    /// A rekey is in flight: no update at all until it is released (see
    /// [`SendKeys::set_held`]).
    held: bool,
    generation: u64,
}

impl SendKeys {
    /// Keys for `alg` from the direction's traffic secret.
    pub fn new(alg: Algorithm, secret: &[u8; 32]) -> Self {
        SendKeys {
            alg,
            current: Generation::from_secret(alg, secret),
            phase: false,
            next_pn: 0,
            sealed_in_generation: 0,
            bytes_in_generation: 0,
            update_interval: alg.update_interval(),
            update_bytes: alg.update_bytes(),
            update_requested: false,
            awaiting_confirmation: false,
            held: false,
            generation: 0,
        }
    }

    /// Overrides how many packets one key generation seals before an update
    /// (tests, and users who want updates more often). Clamped to
    /// `1..=`[`Algorithm::update_interval`]. The key's whole budget stays
    /// the AEAD's confidentiality limit (see the module docs).
    pub fn set_update_interval(&mut self, packets: u64) {
        self.update_interval = packets.clamp(1, self.alg.update_interval());
    }

    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    /// Overrides how many bytes one key generation seals before an update.
    /// Clamped to `1..=`[`Algorithm::update_bytes`].
    pub fn set_update_bytes(&mut self, bytes: u64) {
        self.update_bytes = bytes.clamp(1, self.alg.update_bytes());
    }

    /// Spends all but one packet of the current key's budget (tests reach
    /// the AEAD limit with it).
    #[cfg(test)]
    pub(crate) fn spend_budget_for_test(&mut self) {
        self.sealed_in_generation = self.alg.confidentiality_limit() - 1;
    }

    /// Packets the current key has sealed.
    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    pub fn sealed_in_generation(&self) -> u64 {
        self.sealed_in_generation
    }

    /// Updates the key before the next packet (the peer asked for it), or
    /// as soon as the previous update is confirmed.
    pub fn request_update(&mut self) {
        self.update_requested = true;
    }

    /// Whether the last update waits for proof that the peer follows it.
    ///
    /// A receiver can only step one key generation ahead. Were the sender
    /// to update twice while every frame of the generation in between was
    /// lost, the receiver could never catch up, and the session would be
    /// dead. So, as in QUIC, a sender updates again only after the peer has
    /// shown it opened a frame of the current generation: the session sends
    /// a ping right after each update and calls
    /// [`confirm_update`](Self::confirm_update) when its pong returns.
    pub fn awaiting_confirmation(&self) -> bool {
        self.awaiting_confirmation
    }

    /// The peer has opened a frame of the current generation.
    pub fn confirm_update(&mut self) {
        self.awaiting_confirmation = false;
    }

    /// Holds back every update (by volume, by request) while `held`: a
    /// rekey is in flight, and the next generation must be the rekeyed one
    /// and come only when the peer can open it. Sealing goes on under the
    /// current key, within its budget ([`CryptoError::KeyExhausted`] past
    /// it, as for an unconfirmed update).
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// Mixes a rekey's key for this direction into the next generation's
    /// secret (see [`crate::crypto::rekey`]); the next update moves to it.
    pub fn rekey_next(&mut self, mix: &[u8; 32]) {
        self.current.rekey_next(mix);
    }

    /// The current generation's secret (tests).
    #[cfg(test)]
    pub(crate) fn secret_for_test(&self) -> [u8; 32] {
        self.current.secret
    }

    /// The secret the next update would move to (tests).
    #[cfg(test)]
    pub(crate) fn next_secret_for_test(&self) -> [u8; 32] {
        *self.current.next_secret
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Current key generation (0 after the handshake).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The packet number the next sealed frame will carry.
    pub fn next_packet_number(&self) -> u64 {
        self.next_pn
    }

    /// Seals the frame that starts at `out[start]`.
    ///
    /// The caller has reserved [`HEADER_LEN`] bytes at `out[start..]` and
    /// written the plaintext after them; this fills the header from `header`
    /// (packet number, key phase and payload length are set here), encrypts
    /// the plaintext in place and appends the tag. Returns the packet number.
    pub fn seal(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        mut header: Header,
    ) -> Result<u64, CryptoError> {
        let plaintext_len = out.len() - start - HEADER_LEN;
        let payload_len = plaintext_len + TAG_LEN;
        if payload_len > MAX_PAYLOAD_LEN as usize {
            return Err(CryptoError::TooLarge(plaintext_len));
        }
        let pn = self.next_pn;
        if pn > MAX_PACKET_NUMBER {
            return Err(CryptoError::PacketNumbersExhausted);
        }
        let due = self.sealed_in_generation >= self.update_interval
            || self.bytes_in_generation >= self.update_bytes
            || self.update_requested;
        if due && !self.awaiting_confirmation && !self.held {
            self.current = self.current.next(self.alg);
            self.phase = !self.phase;
            self.generation += 1;
            self.sealed_in_generation = 0;
            self.bytes_in_generation = 0;
            self.update_requested = false;
            self.awaiting_confirmation = true;
        }
        // The whole budget of this key: the AEAD's confidentiality limit.
        // Reached only while an update waits for its confirmation.
        if self.sealed_in_generation >= self.alg.confidentiality_limit()
            || self.bytes_in_generation.saturating_add(payload_len as u64)
                > self.alg.confidentiality_bytes()
        {
            return Err(CryptoError::KeyExhausted);
        }
        header.packet_number = pn;
        header.flags = header.flags.with(Flags::KEY_PHASE, self.phase);
        // Checked against MAX_PAYLOAD_LEN above.
        header.payload_len = payload_len as u32;
        let (head, body) = out[start..].split_at_mut(HEADER_LEN);
        let head: &mut [u8; HEADER_LEN] = head
            .try_into()
            .expect("split_at_mut(HEADER_LEN) yields exactly HEADER_LEN bytes");
        header.encode(head);
        let tag = self
            .current
            .key
            .seal_in_place_separate_tag(nonce(pn), Aad::from(&head[..]), body)
            .map_err(|_| CryptoError::TooLarge(plaintext_len))?;
        out.extend_from_slice(tag.as_ref());
        self.next_pn += 1;
        self.sealed_in_generation += 1;
        self.bytes_in_generation += payload_len as u64;
        Ok(pn)
    }
}

impl fmt::Debug for SendKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendKeys")
            .field("alg", &self.alg)
            .field("generation", &self.generation)
            .field("next_pn", &self.next_pn)
            .finish_non_exhaustive()
    }
}

/// The receiving half of a session's keys, with its replay window.
pub struct RecvKeys {
    alg: Algorithm,
    current: Generation,
    next: Generation,
    previous: Option<Generation>,
    phase: bool,
    /// First packet number seen under the current generation.
    generation_start: u64,
    generation: u64,
    replay: ReplayWindow,
    failures: u64,
}

impl RecvKeys {
    /// Keys for `alg` from the direction's traffic secret.
    pub fn new(alg: Algorithm, secret: &[u8; 32]) -> Self {
        let current = Generation::from_secret(alg, secret);
        RecvKeys {
            alg,
            next: current.next(alg),
            current,
            previous: None,
            phase: false,
            generation_start: 0,
            generation: 0,
            replay: ReplayWindow::new(),
            failures: 0,
        }
    }

    /// The algorithm.
    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Key generation of the last frame that moved it forward.
    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Key generation of the last frame that moved it forward: the session
    /// watches it to know when an update arrived.
    pub fn current_generation(&self) -> u64 {
        self.generation
    }

    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    /// Whether the previous generation's key is still kept.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// Mixes a rekey's key for this direction into the next generation (see
    /// [`crate::crypto::rekey`]): the next frame of the other phase must be
    /// sealed under the rekeyed key.
    pub fn rekey_next(&mut self, mix: &[u8; 32]) {
        self.current.rekey_next(mix);
        self.next = self.current.next(self.alg);
    }

    /// The current generation's secret (tests).
    #[cfg(test)]
    pub(crate) fn secret_for_test(&self) -> [u8; 32] {
        self.current.secret
    }

    /// Drops the previous generation's key: frames still sealed under it
    /// fail to open from now on. The session calls it a few round trips
    /// after an update, when nothing honest can still be in flight under it.
    pub fn discard_previous(&mut self) {
        self.previous = None;
    }

    /// The highest packet number received so far.
    pub fn highest(&self) -> Option<u64> {
        self.replay.highest()
    }

    /// Frames that failed authentication so far.
    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether forgery attempts passed the algorithm's integrity limit.
    pub fn integrity_limit_reached(&self) -> bool {
        self.failures >= self.alg.integrity_limit()
    }

    /// Checks replay, then opens a sealed payload in place.
    ///
    /// `header_bytes` is the frame's encoded header (the associated data) and
    /// `payload` its ciphertext and tag. Returns the plaintext, a prefix of
    /// `payload`. A replayed or too-old packet is refused before any
    /// decryption; a failed open changes no state but the failure count.
    pub fn open<'a>(
        &mut self,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let pn = header.packet_number;
        if pn > MAX_PACKET_NUMBER {
            return Err(CryptoError::PacketNumbersExhausted);
        }
        self.replay.check(pn)?;
        let phase = header.flags.contains(Flags::KEY_PHASE);
        enum Which {
            Current,
            Previous,
            Next,
        }
        let which = if phase == self.phase {
            Which::Current
        } else if self.previous.is_some() && pn < self.generation_start {
            Which::Previous
        } else {
            Which::Next
        };
        let key = match which {
            Which::Current => &self.current.key,
            Which::Next => &self.next.key,
            Which::Previous => match &self.previous {
                Some(g) => &g.key,
                None => &self.next.key,
            },
        };
        let len = match key.open_in_place(nonce(pn), Aad::from(&header_bytes[..]), payload) {
            Ok(plain) => plain.len(),
            Err(_) => {
                self.failures = self.failures.saturating_add(1);
                return Err(CryptoError::Authentication);
            }
        };
        self.replay.commit(pn);
        if let Which::Next = which {
            // The peer moved to the next generation: follow it, keep the old
            // key for frames reordered across the update.
            let next_next = self.next.next(self.alg);
            let current = std::mem::replace(
                &mut self.current,
                std::mem::replace(&mut self.next, next_next),
            );
            self.previous = Some(current);
            self.phase = phase;
            self.generation_start = pn;
            self.generation += 1;
        }
        Ok(&mut payload[..len])
    }
}

impl fmt::Debug for RecvKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvKeys")
            .field("alg", &self.alg)
            .field("generation", &self.generation)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
