//! CONTROL frames: the [`Control`] messages with their encoding and decoding,
//! their [`ControlType`] subtypes, the [`close_code`]s and [`MAX_REASON_LEN`].

use super::FrameError;

/// Subtype of a CONTROL frame: its first plaintext byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControlType {
    /// Liveness probe; the peer answers with a pong echoing the token.
    Ping = 0x01,
    /// Answer to a ping.
    Pong = 0x02,
    /// Flow-control credit (advisory in this version).
    FlowCredit = 0x03,
    /// Asks the peer to update its sending key now.
    KeyRotation = 0x04,
    /// The sender closes the session.
    Close = 0x05,
    /// The sender reports an error without closing.
    Error = 0x06,
    /// Asks the peer to echo 8 random bytes: sent along a path to validate
    /// it (RFC 9000 §8.2).
    PathChallenge = 0x07,
    /// Echoes a path challenge's bytes.
    PathResponse = 0x08,
    /// Starts a rekey: the sender's fresh X25519 public key.
    RekeyRequest = 0x09,
    /// Answers a rekey request: the answerer's fresh X25519 public key.
    RekeyResponse = 0x0a,
}

/// Longest reason text carried by a close or error message.
pub const MAX_REASON_LEN: usize = 1024;

/// A decoded control message (the plaintext of a CONTROL frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Liveness probe carrying an opaque token (the sender's clock, in practice).
    Ping {
        /// Echoed by the pong.
        token: u64,
    },
    /// Answer to [`Control::Ping`].
    Pong {
        /// The ping's token.
        token: u64,
    },
    /// Flow-control credit: how many more bytes the sender is ready to take.
    FlowCredit {
        /// Credit in bytes.
        bytes: u64,
    },
    /// Asks the peer to update its sending key (see `docs/PROTOCOL.md`).
    KeyRotation,
    /// Closes the session.
    Close {
        /// Machine-readable code (see [`close_code`]).
        code: u16,
        /// Human-readable reason, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// Reports an error.
    Error {
        /// Machine-readable code.
        code: u16,
        /// Human-readable message, at most [`MAX_REASON_LEN`] bytes.
        message: String,
    },
    /// Asks the peer to echo `data` in a [`Control::PathResponse`]; sent
    /// only along the path being validated, with fresh random bytes.
    PathChallenge {
        /// 8 bytes from a CSPRNG.
        data: [u8; 8],
    },
    /// Echoes a [`Control::PathChallenge`].
    PathResponse {
        /// The challenge's bytes.
        data: [u8; 8],
    },
    /// Starts rekey number `seq` with a fresh ephemeral key (see
    /// `docs/PROTOCOL.md` §6.8).
    RekeyRequest {
        /// The session's rekey count, plus one.
        seq: u64,
        /// The sender's fresh X25519 public key.
        ephemeral: [u8; 32],
    },
    /// Answers [`Control::RekeyRequest`] `seq` with a fresh ephemeral key.
    RekeyResponse {
        /// The request's `seq`.
        seq: u64,
        /// The answerer's fresh X25519 public key.
        ephemeral: [u8; 32],
    },
}

/// Well-known close codes carried by [`Control::Close`].
pub mod close_code {
    /// The application closed the session.
    pub const NORMAL: u16 = 0;
    /// The node is shutting down.
    pub const SHUTDOWN: u16 = 1;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u16 = 2;
    /// Nothing arrived within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 3;
    /// Too many packets failed authentication: the keys must be considered
    /// under attack.
    pub const INTEGRITY_LIMIT: u16 = 4;
    /// The packet number space is exhausted.
    pub const PACKET_NUMBERS_EXHAUSTED: u16 = 5;
    /// The responder's authorisation refused the initiator (sent instead of
    /// the handshake's confirmation).
    pub const REFUSED: u16 = 6;
    /// No rekey with fresh Diffie-Hellman completed within the session's
    /// hard key lifetime (`SessionConfig::reject_after`).
    pub const REKEY_TIMEOUT: u16 = 7;
    /// The server revoked the connect token's client
    /// (`docs/PROTOCOL.md` 14.7).
    pub const REVOKED: u16 = 8;
    /// A new session opened with the same connect token replaced this one
    /// (`docs/PROTOCOL.md` 14.5): the client reconnected.
    pub const REPLACED: u16 = 9;
}

impl Control {
    /// Appends the encoded control message (the plaintext) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Control::Ping { token } => {
                out.push(ControlType::Ping as u8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Control::Pong { token } => {
                out.push(ControlType::Pong as u8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Control::FlowCredit { bytes } => {
                out.push(ControlType::FlowCredit as u8);
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            Control::KeyRotation => out.push(ControlType::KeyRotation as u8),
            Control::PathChallenge { data } => {
                out.push(ControlType::PathChallenge as u8);
                out.extend_from_slice(data);
            }
            Control::PathResponse { data } => {
                out.push(ControlType::PathResponse as u8);
                out.extend_from_slice(data);
            }
            Control::RekeyRequest { seq, ephemeral }
            | Control::RekeyResponse { seq, ephemeral } => {
                out.push(if matches!(self, Control::RekeyRequest { .. }) {
                    ControlType::RekeyRequest as u8
                } else {
                    ControlType::RekeyResponse as u8
                });
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(ephemeral);
            }
            Control::Close { code, reason: text }
            | Control::Error {
                code,
                message: text,
            } => {
                out.push(if matches!(self, Control::Close { .. }) {
                    ControlType::Close as u8
                } else {
                    ControlType::Error as u8
                });
                out.extend_from_slice(&code.to_be_bytes());
                let text = truncate_utf8(text, MAX_REASON_LEN);
                // MAX_REASON_LEN fits in a u16.
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// Parses a control plaintext. Trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let (&kind, body) = bytes.split_first().ok_or(FrameError::BadControl("empty"))?;
        let u64_body = || -> Result<u64, FrameError> {
            let b: [u8; 8] = body
                .try_into()
                .map_err(|_| FrameError::BadControl("expected an 8-byte body"))?;
            Ok(u64::from_be_bytes(b))
        };
        Ok(match kind {
            0x01 => Control::Ping { token: u64_body()? },
            0x02 => Control::Pong { token: u64_body()? },
            0x03 => Control::FlowCredit { bytes: u64_body()? },
            0x04 if body.is_empty() => Control::KeyRotation,
            0x04 => return Err(FrameError::BadControl("key rotation has no body")),
            0x07 => Control::PathChallenge {
                data: u64_body()?.to_be_bytes(),
            },
            0x08 => Control::PathResponse {
                data: u64_body()?.to_be_bytes(),
            },
            0x09 | 0x0a => {
                let b: &[u8; 40] = body
                    .try_into()
                    .map_err(|_| FrameError::BadControl("expected a 40-byte rekey body"))?;
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&b[..8]);
                let seq = u64::from_be_bytes(seq);
                let mut ephemeral = [0u8; 32];
                ephemeral.copy_from_slice(&b[8..]);
                if kind == 0x09 {
                    Control::RekeyRequest { seq, ephemeral }
                } else {
                    Control::RekeyResponse { seq, ephemeral }
                }
            }
            0x05 | 0x06 => {
                if body.len() < 4 {
                    return Err(FrameError::BadControl("close/error shorter than 4 bytes"));
                }
                let code = u16::from_be_bytes([body[0], body[1]]);
                let len = u16::from_be_bytes([body[2], body[3]]) as usize;
                let text = &body[4..];
                if len != text.len() || len > MAX_REASON_LEN {
                    return Err(FrameError::BadControl("reason length mismatch"));
                }
                let text = std::str::from_utf8(text)
                    .map_err(|_| FrameError::BadControl("reason is not UTF-8"))?
                    .to_owned();
                if kind == 0x05 {
                    Control::Close { code, reason: text }
                } else {
                    Control::Error {
                        code,
                        message: text,
                    }
                }
            }
            _ => return Err(FrameError::BadControl("unknown control subtype")),
        })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn control_round_trip(token in any::<u64>(), code in any::<u16>(), reason in ".{0,300}") {
            for c in [
                Control::Ping { token },
                Control::Pong { token },
                Control::FlowCredit { bytes: token },
                Control::KeyRotation,
                Control::Close { code, reason: reason.clone() },
                Control::Error { code, message: reason.clone() },
                Control::PathChallenge { data: token.to_le_bytes() },
                Control::PathResponse { data: token.to_be_bytes() },
                Control::RekeyRequest { seq: token, ephemeral: [code as u8; 32] },
                Control::RekeyResponse { seq: !token, ephemeral: [(code >> 8) as u8; 32] },
            ] {
                let mut out = Vec::new();
                c.encode(&mut out);
                prop_assert_eq!(Control::decode(&out).unwrap(), c);
            }
        }
    }

    #[test]
    fn rekey_messages_are_41_bytes_and_exact() {
        let mut out = Vec::new();
        Control::RekeyRequest {
            seq: 0x0102_0304_0506_0708,
            ephemeral: [0xee; 32],
        }
        .encode(&mut out);
        assert_eq!(out.len(), 41);
        assert_eq!(out[..9], [0x09, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(out[9..], [0xee; 32]);
        out[0] = 0x0a;
        assert!(matches!(
            Control::decode(&out),
            Ok(Control::RekeyResponse {
                seq: 0x0102_0304_0506_0708,
                ..
            })
        ));
        out.push(0);
        assert!(Control::decode(&out).is_err(), "trailing byte");
        out.truncate(40);
        assert!(Control::decode(&out).is_err(), "short body");
    }

    #[test]
    fn long_reasons_are_truncated_on_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let mut out = Vec::new();
        Control::Close { code: 1, reason }.encode(&mut out);
        match Control::decode(&out).unwrap() {
            Control::Close { reason, .. } => {
                assert!(reason.len() <= MAX_REASON_LEN);
                assert!(reason.chars().all(|c| c == 'é'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
