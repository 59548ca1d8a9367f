//! A server's side of connect tokens on a [`Node`]: revoking a client.

use crate::reactor::Command;

use super::Node;

/// Why [`Node::revoke_client`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// This node accepts no connect tokens ([`NodeConfig::tokens`](super::NodeConfig::tokens)
    /// is `None`).
    #[error("this node accepts no connect tokens")]
    NoTokens,
    /// The node is stopped (the revocation may have applied to some
    /// reactors only).
    #[error("the node is stopped")]
    Stopped,
    /// A reactor did not answer within the call timeout; the revocation
    /// is recorded, its sessions there may still be open.
    #[error("a reactor did not answer in time; the revocation is recorded")]
    TimedOut,
}

impl Node {
    /// Revokes connect-token client `client_id`: closes each of its
    /// sessions on this node at once (CLOSE code 8, REVOKED), and refuses
    /// every token of it issued up to now (`docs/PROTOCOL.md` 14.7). A token
    /// issued later for the same client is accepted again, so a backend
    /// that stops issuing for it makes the revocation permanent. Returns
    /// how many sessions it closed.
    pub fn revoke_client(&self, client_id: u64) -> Result<usize, RevokeError> {
        let gate = self
            .inner
            .shared
            .endpoint
            .tokens
            .as_ref()
            .ok_or(RevokeError::NoTokens)?;
        gate.revoke(client_id, crate::crypto::handshake::unix_now());
        let mut closed = 0;
        for reactor in 0..self.inner.reactors.len() {
            closed += self
                .inner
                .call(reactor, |reply| Command::CloseClient { client_id, reply })
                .map_err(|e| match e {
                    crate::reactor::Failure::TimedOut(_) => RevokeError::TimedOut,
                    _ => RevokeError::Stopped,
                })?;
        }
        Ok(closed)
    }
}
