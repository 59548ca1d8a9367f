//! The in-session rekey: fresh X25519 ephemerals mixed into the next key
//! generation of both directions.
//!
//! Key updates ([`crate::crypto::aead`]) ratchet each traffic secret one way:
//! whoever learns a secret derives every later key of its direction. A
//! rekey restores the session's secrecy after such a compromise (against an
//! attacker who is passive afterwards): both sides draw a fresh ephemeral
//! key pair, exchange the public halves in sealed control messages
//! (`RekeyRequest` / `RekeyResponse`), and mix the Diffie-Hellman result into
//! the secret of the next generation of each direction:
//!
//! ```text
//! ck_0      = HKDF-SHA256(salt = "stt v1 rekey", IKM = i2r_secret_0 || r2i_secret_0,
//!                         info = "stt v1 rekey ck")
//! th        = SHA-256("stt v1 rekey" || session_id (u64 BE) || seq (u64 BE)
//!                     || e_request || e_response)
//! dh        = X25519(own ephemeral private, peer ephemeral public)   (all-zero refused)
//! prk       = HKDF-Extract(salt = ck_(k-1), IKM = dh || th)
//! ck_k      = HKDF-Expand(prk, "stt v1 rekey ck",  32)
//! mix_i2r   = HKDF-Expand(prk, "stt v1 rekey i2r", 32)
//! mix_r2i   = HKDF-Expand(prk, "stt v1 rekey r2i", 32)
//! secret'_(g+1) = HKDF-SHA256(salt = mix_dir, IKM = secret_(g+1), info = "stt v1 rekey secret")
//! ```
//!
//! where `secret_(g+1)` is what the ratchet alone would give for the
//! direction's next generation (`aead` module docs), `i2r`/`r2i` name the
//! directions by the roles of the session's handshake (whichever side asked
//! for the rekey), and `seq` counts the session's rekeys from 1. The new
//! secret depends on the old chain (so a weak DH alone reveals nothing) and
//! on the fresh DH (so the old chain alone reveals nothing). `docs/PROTOCOL.md`
//! §6.8 describes when each side switches to it.

use std::fmt;

use curve25519_dalek::MontgomeryPoint;
use ring::{digest, hkdf};
use zeroize::Zeroizing;

use crate::crypto::keys::{expand_32, hkdf_32};

const CK_SALT: &[u8] = b"stt v1 rekey";
const CK_LABEL: &[u8] = b"stt v1 rekey ck";
const I2R_LABEL: &[u8] = b"stt v1 rekey i2r";
const R2I_LABEL: &[u8] = b"stt v1 rekey r2i";
const SECRET_LABEL: &[u8] = b"stt v1 rekey secret";
const TRANSCRIPT_LABEL: &[u8] = b"stt v1 rekey";

/// A fresh X25519 key pair for one rekey.
pub struct Ephemeral {
    private: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl Ephemeral {
    /// A key pair from the system CSPRNG; `None` if it failed.
    pub fn generate() -> Option<Self> {
        use ring::rand::SecureRandom;
        let mut private = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(&mut private[..])
            .ok()?;
        Some(Self::from_private(private))
    }

    /// The key pair of a given private key (X25519 clamps it): test vectors.
    pub fn from_private(private: Zeroizing<[u8; 32]>) -> Self {
        let public = MontgomeryPoint::mul_base_clamped(*private).to_bytes();
        Ephemeral { private, public }
    }

    /// The public key, sent to the peer.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// X25519 with the peer's public key; `None` when the result is all
    /// zeros (a low-order point: no shared secret).
    pub fn agree(&self, peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let shared = Zeroizing::new(MontgomeryPoint(*peer).mul_clamped(*self.private).to_bytes());
        // Constant time is not needed to test for all zeros: a zero result
        // is refused whatever it was computed from.
        if shared.iter().all(|&b| b == 0) {
            None
        } else {
            Some(shared)
        }
    }
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ephemeral")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The session's rekey chaining key right after the handshake.
pub fn initial_chaining_key(i2r_secret: &[u8; 32], r2i_secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(i2r_secret);
    ikm[32..].copy_from_slice(r2i_secret);
    hkdf_32(CK_SALT, &ikm[..], CK_LABEL)
}

/// What one rekey yields: the next chaining key and one mixing key per
/// direction.
pub struct Mix {
    /// The chaining key for the next rekey.
    pub ck: Zeroizing<[u8; 32]>,
    /// Mixed into the initiator-to-responder direction.
    pub i2r: Zeroizing<[u8; 32]>,
    /// Mixed into the responder-to-initiator direction.
    pub r2i: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mix(..)")
    }
}

/// The key schedule of rekey number `seq` (module docs).
pub fn mix(
    ck: &[u8; 32],
    session_id: u64,
    seq: u64,
    e_request: &[u8; 32],
    e_response: &[u8; 32],
    dh: &[u8; 32],
) -> Mix {
    let mut th = digest::Context::new(&digest::SHA256);
    th.update(TRANSCRIPT_LABEL);
    th.update(&session_id.to_be_bytes());
    th.update(&seq.to_be_bytes());
    th.update(e_request);
    th.update(e_response);
    let th = th.finish();
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(dh);
    ikm[32..].copy_from_slice(th.as_ref());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, ck).extract(&ikm[..]);
    Mix {
        ck: expand_32(&prk, CK_LABEL),
        i2r: expand_32(&prk, I2R_LABEL),
        r2i: expand_32(&prk, R2I_LABEL),
    }
}

/// The rekeyed secret of a direction's next generation, from what the
/// ratchet alone would give (`ratchet_next`) and the direction's mixing key.
pub(crate) fn rekeyed_secret(mix: &[u8; 32], ratchet_next: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    hkdf_32(mix, ratchet_next, SECRET_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_mix_and_it_depends_on_the_dh() {
        let ck = initial_chaining_key(&[1u8; 32], &[2u8; 32]);
        let a = Ephemeral::generate().unwrap();
        let b = Ephemeral::generate().unwrap();
        let dh_a = a.agree(b.public()).unwrap();
        let dh_b = b.agree(a.public()).unwrap();
        assert_eq!(*dh_a, *dh_b);
        let ma = mix(&ck, 9, 1, a.public(), b.public(), &dh_a);
        let mb = mix(&ck, 9, 1, a.public(), b.public(), &dh_b);
        assert_eq!((*ma.ck, *ma.i2r, *ma.r2i), (*mb.ck, *mb.i2r, *mb.r2i));
        assert_ne!(*ma.i2r, *ma.r2i, "one key per direction");
        // Another ephemeral on one side: everything changes.
        let c = Ephemeral::generate().unwrap();
        let dh_c = c.agree(b.public()).unwrap();
        let mc = mix(&ck, 9, 1, c.public(), b.public(), &dh_c);
        assert_ne!(*mc.i2r, *ma.i2r);
        assert_ne!(*mc.ck, *ma.ck);
        // The transcript binds the session and the rekey number.
        assert_ne!(*mix(&ck, 10, 1, a.public(), b.public(), &dh_a).i2r, *ma.i2r);
        assert_ne!(*mix(&ck, 9, 2, a.public(), b.public(), &dh_a).i2r, *ma.i2r);
        let ratchet = [5u8; 32];
        assert_ne!(*rekeyed_secret(&ma.i2r, &ratchet), ratchet);
    }

    fn hex(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    /// `docs/PROTOCOL.md` Appendix A.7, computed independently in Python.
    #[test]
    fn the_key_schedule_matches_the_specification_vector() {
        let ck = initial_chaining_key(&[1u8; 32], &[2u8; 32]);
        assert_eq!(
            *ck,
            hex("113c7d2466d72140ac4ef9aa10d41a772e50d32bee8ed8244b3fcfb974bd8e11")
        );
        let q = Ephemeral::from_private(Zeroizing::new([0x11; 32]));
        let a = Ephemeral::from_private(Zeroizing::new([0x22; 32]));
        assert_eq!(
            *q.public(),
            hex("7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13")
        );
        assert_eq!(
            *a.public(),
            hex("0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20")
        );
        let dh = q.agree(a.public()).unwrap();
        assert_eq!(
            *dh,
            hex("9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056")
        );
        let m = mix(&ck, 0x0102_0304_0506_0708, 1, q.public(), a.public(), &dh);
        assert_eq!(
            *m.ck,
            hex("0df09d109d22cb36d40466393eb35c48608419fb842890ee3ae60e5a70600278")
        );
        assert_eq!(
            *m.i2r,
            hex("c34d37bffd9d43c148b1562e93ced4d2725041b93f0acf2199aa545fc6f68551")
        );
        assert_eq!(
            *m.r2i,
            hex("49092fa46e000c012453e49e3935aaa693578da98439bedea8186a31690f1ff3")
        );
        let ratchet_i2r = hex("0936910f81fb9311e26d986b6eb64806772824339c9d79f3d9eb7b07b3107b93");
        let sender =
            crate::crypto::aead::SendKeys::new(crate::crypto::Algorithm::Aes256Gcm, &[1u8; 32]);
        assert_eq!(sender.next_secret_for_test(), ratchet_i2r);
        assert_eq!(
            *rekeyed_secret(&m.i2r, &ratchet_i2r),
            hex("c29d4309cf3e409d6f9341392e1ca9ae53e8b38b7ec75adc6d9a08f22524b699")
        );
    }

    #[test]
    fn low_order_points_are_refused() {
        let a = Ephemeral::generate().unwrap();
        // u = 0 and u = 1 are of low order: the shared point is all zeros.
        assert!(a.agree(&[0u8; 32]).is_none());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.agree(&one).is_none());
    }

    #[test]
    fn x25519_matches_rfc_7748() {
        // RFC 7748 §6.1.
        let alice = Ephemeral::from_private(Zeroizing::new(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )));
        let bob_public = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        assert_eq!(
            *alice.agree(&bob_public).unwrap(),
            hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }
}
