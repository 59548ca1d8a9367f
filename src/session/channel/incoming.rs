//! The receiving side of channels ([`Incoming`]): reassembly of message
//! parts, duplicate suppression, ordering and sequencing per delivery
//! mode, and the flow-control window the peer must stay within.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::frame::chunk::{Delivery, MsgChunk};
use crate::session::recovery::ranges::RangeSet;
use crate::stream::MemoryBudget;

use super::MAX_SEQ_WINDOW;

/// Why a MSG chunk broke the protocol (the session closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A channel's delivery mode changed.
    #[error("channel {0} changed its delivery mode")]
    ModeChanged(u8),
    /// Parts of one message disagree on its length or type.
    #[error("parts of message {seq} on channel {channel} disagree")]
    Inconsistent {
        /// Channel.
        channel: u8,
        /// Sequence number.
        seq: u64,
    },
    /// A message above the largest allowed.
    #[error("message of {len} bytes above the {max}-byte limit")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// The peer sent more reliable data than its credit.
    #[error("flow control: {held} bytes held beyond the {credit}-byte credit")]
    FlowControl {
        /// Bytes the peer made this side hold.
        held: u64,
        /// Credit advertised.
        credit: u64,
    },
    /// A reliable sequence number too far ahead of the oldest undelivered.
    #[error("sequence number {seq} on channel {channel} beyond the window")]
    SeqWindow {
        /// Channel.
        channel: u8,
        /// Sequence number.
        seq: u64,
    },
}

/// What became of a MSG chunk that broke no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Stored or delivered (or a harmless duplicate).
    Ok,
    /// A reliable part refused for lack of node memory: the packet must not
    /// be acknowledged, so that the peer sends it again.
    NoMemory,
}

/// Counters of the receiving side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncomingStats {
    /// Sequenced messages dropped because a newer one was delivered.
    pub stale: u64,
    /// Parts of reliable messages already delivered or held (duplicates).
    pub duplicates: u64,
    /// Incomplete unreliable messages dropped (timeout or limits).
    pub unreliable_incomplete: u64,
}

/// A delivered message.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Channel.
    pub channel: u8,
    /// Message type.
    pub msg_type: u8,
    /// The message.
    pub payload: Vec<u8>,
    /// Reliable bytes to release from flow control when the application
    /// takes it ([`Channels::release`](super::Channels::release)).
    pub credit: u64,
}

#[derive(Debug)]
struct Partial {
    msg_type: u8,
    data: Vec<u8>,
    got: RangeSet,
    started: Instant,
}

#[derive(Debug)]
struct InChannel {
    delivery: Delivery,
    /// Ordered and sequenced: the next sequence number deliverable.
    next: u64,
    /// Unordered: sequence numbers delivered.
    delivered: RangeSet,
    /// Ordered: complete messages waiting for earlier ones.
    ready: BTreeMap<u64, (u8, Vec<u8>)>,
    partial: BTreeMap<u64, Partial>,
}

/// Limits of the receiving side.
#[derive(Debug, Clone)]
pub struct IncomingLimits {
    /// Largest message.
    pub max_message_size: usize,
    /// Flow-control window: reliable bytes held or undelivered at most.
    pub window: u64,
    /// Bytes of incomplete unreliable messages held at most.
    pub unreliable_bytes: usize,
    /// Incomplete unreliable messages held at most.
    pub unreliable_messages: usize,
    /// How long an incomplete unreliable message is kept.
    pub unreliable_timeout: Duration,
}

/// The receiving side of every channel of a session.
#[derive(Debug)]
pub struct Incoming {
    channels: BTreeMap<u8, InChannel>,
    limits: IncomingLimits,
    /// Reliable bytes the application has taken.
    consumed: u64,
    /// Reliable bytes held (declared lengths of partial, waiting and
    /// delivered-but-not-taken messages).
    held: u64,
    /// The credit last advertised.
    advertised: u64,
    unreliable_bytes: usize,
    unreliable_count: usize,
    budget: Option<MemoryBudget>,
    stats: IncomingStats,
}

impl Incoming {
    /// A receiver that has granted `initial_credit`.
    pub fn new(limits: IncomingLimits, initial_credit: u64, budget: Option<MemoryBudget>) -> Self {
        Self {
            channels: BTreeMap::new(),
            limits,
            consumed: 0,
            held: 0,
            advertised: initial_credit,
            unreliable_bytes: 0,
            unreliable_count: 0,
            budget,
            stats: IncomingStats::default(),
        }
    }

    /// Draws from `budget` from now on (call it while nothing is held).
    pub fn set_budget(&mut self, budget: MemoryBudget) {
        debug_assert_eq!(self.held, 0);
        self.budget = Some(budget);
    }

    /// Counters.
    pub fn stats(&self) -> IncomingStats {
        self.stats
    }

    /// Reliable bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The application took a message carrying `credit` reliable bytes.
    pub fn consumed(&mut self, credit: u64) {
        self.consumed += credit;
        self.held = self.held.saturating_sub(credit);
        if let Some(b) = &self.budget {
            b.release(credit as usize);
        }
    }

    /// A new credit worth advertising (half the window used since the
    /// last), which is then taken as advertised.
    pub fn credit_update(&mut self) -> Option<u64> {
        let next = self.consumed + self.limits.window;
        if next >= self.advertised + self.limits.window / 2 {
            self.advertised = next;
            return Some(next);
        }
        None
    }

    /// The credit currently advertised (to send again when lost).
    pub fn advertised(&self) -> u64 {
        self.advertised
    }

    /// Takes one MSG chunk; complete messages go to `deliver` in the order
    /// their channel's mode allows.
    pub fn on_msg(
        &mut self,
        now: Instant,
        m: &MsgChunk<'_>,
        deliver: &mut impl FnMut(Delivered),
    ) -> Result<Taken, ChannelError> {
        let total = m.fragment.map_or(m.data.len() as u64, |(t, _)| t);
        if total > self.limits.max_message_size as u64 {
            return Err(ChannelError::TooLarge {
                len: total,
                max: self.limits.max_message_size,
            });
        }
        let ch = self.channels.entry(m.channel).or_insert_with(|| InChannel {
            delivery: m.delivery,
            next: 0,
            delivered: RangeSet::new(),
            ready: BTreeMap::new(),
            partial: BTreeMap::new(),
        });
        if ch.delivery != m.delivery {
            return Err(ChannelError::ModeChanged(m.channel));
        }
        let reliable = m.delivery.is_reliable();
        // Already delivered, waiting, or (sequenced) superseded?
        let seen = match m.delivery {
            Delivery::ReliableOrdered => m.seq < ch.next || ch.ready.contains_key(&m.seq),
            Delivery::ReliableUnordered => ch.delivered.contains(m.seq),
            Delivery::UnreliableSequenced => m.seq < ch.next,
            Delivery::Unreliable => false,
        };
        if seen {
            if reliable {
                self.stats.duplicates += 1;
            } else {
                self.stats.stale += 1;
            }
            return Ok(Taken::Ok);
        }
        if reliable {
            let base = match m.delivery {
                Delivery::ReliableOrdered => ch.next,
                _ => ch
                    .delivered
                    .first()
                    .filter(|r| r.start == 0)
                    .map_or(0, |r| r.end),
            };
            if m.seq >= base + MAX_SEQ_WINDOW {
                return Err(ChannelError::SeqWindow {
                    channel: m.channel,
                    seq: m.seq,
                });
            }
        }
        // A whole message whose parts were partly held (sent again whole
        // after a path change): the parts go, and it was charged already.
        let mut charged = false;
        let complete = match m.fragment {
            None => {
                if let Some(p) = ch.partial.remove(&m.seq) {
                    if p.data.len() != m.data.len() || p.msg_type != m.msg_type {
                        return Err(ChannelError::Inconsistent {
                            channel: m.channel,
                            seq: m.seq,
                        });
                    }
                    if reliable {
                        charged = true;
                    } else {
                        self.unreliable_bytes -= p.data.len();
                        self.unreliable_count -= 1;
                    }
                }
                Some((m.msg_type, m.data.to_vec()))
            }
            Some((total, offset)) => {
                if !ch.partial.contains_key(&m.seq) {
                    let len = total as usize;
                    if reliable {
                        if self.consumed + self.held + total > self.advertised {
                            return Err(ChannelError::FlowControl {
                                held: self.held + total,
                                credit: self.advertised - self.consumed,
                            });
                        }
                        if self.budget.as_ref().is_some_and(|b| !b.try_reserve(len)) {
                            return Ok(Taken::NoMemory);
                        }
                        self.held += total;
                    } else if !reserve_unreliable(
                        &mut self.unreliable_bytes,
                        &mut self.unreliable_count,
                        &self.limits,
                        &mut self.stats,
                        ch,
                        len,
                    ) {
                        return Ok(Taken::Ok);
                    }
                    ch.partial.insert(
                        m.seq,
                        Partial {
                            msg_type: m.msg_type,
                            data: vec![0; len],
                            got: RangeSet::new(),
                            started: now,
                        },
                    );
                }
                let Some(p) = ch.partial.get_mut(&m.seq) else {
                    return Ok(Taken::Ok);
                };
                if p.data.len() as u64 != total || p.msg_type != m.msg_type {
                    return Err(ChannelError::Inconsistent {
                        channel: m.channel,
                        seq: m.seq,
                    });
                }
                let (s, e) = (offset as usize, offset as usize + m.data.len());
                if p.got.insert(offset..e as u64) == 0 && !m.data.is_empty() {
                    self.stats.duplicates += 1;
                }
                p.data[s..e].copy_from_slice(m.data);
                if p.got.contains_range(0..total) {
                    ch.partial.remove(&m.seq).map(|p| {
                        if !reliable {
                            self.unreliable_bytes -= p.data.len();
                            self.unreliable_count -= 1;
                        }
                        (p.msg_type, p.data)
                    })
                } else {
                    None
                }
            }
        };
        let Some((msg_type, payload)) = complete else {
            return Ok(Taken::Ok);
        };
        // A whole message in one chunk is charged now (a fragmented one was
        // charged by its first part).
        if reliable && m.fragment.is_none() && !charged {
            let total = payload.len() as u64;
            if self.consumed + self.held + total > self.advertised {
                return Err(ChannelError::FlowControl {
                    held: self.held + total,
                    credit: self.advertised - self.consumed,
                });
            }
            if self
                .budget
                .as_ref()
                .is_some_and(|b| !b.try_reserve(total as usize))
            {
                return Ok(Taken::NoMemory);
            }
            self.held += total;
        }
        let credit = if reliable { payload.len() as u64 } else { 0 };
        let channel = m.channel;
        match m.delivery {
            Delivery::ReliableOrdered => {
                if m.seq != ch.next {
                    ch.ready.insert(m.seq, (msg_type, payload));
                    return Ok(Taken::Ok);
                }
                ch.next += 1;
                deliver(Delivered {
                    channel,
                    msg_type,
                    payload,
                    credit,
                });
                while let Some((t, p)) = ch.ready.remove(&ch.next) {
                    ch.next += 1;
                    let credit = p.len() as u64;
                    deliver(Delivered {
                        channel,
                        msg_type: t,
                        payload: p,
                        credit,
                    });
                }
            }
            Delivery::ReliableUnordered => {
                ch.delivered.insert(m.seq..m.seq + 1);
                deliver(Delivered {
                    channel,
                    msg_type,
                    payload,
                    credit,
                });
            }
            Delivery::UnreliableSequenced => {
                ch.next = m.seq + 1;
                // Older incomplete messages can never be delivered now.
                let newer = ch.partial.split_off(&ch.next);
                for (_, p) in std::mem::replace(&mut ch.partial, newer) {
                    self.unreliable_bytes -= p.data.len();
                    self.unreliable_count -= 1;
                    self.stats.stale += 1;
                }
                deliver(Delivered {
                    channel,
                    msg_type,
                    payload,
                    credit,
                });
            }
            Delivery::Unreliable => deliver(Delivered {
                channel,
                msg_type,
                payload,
                credit,
            }),
        }
        Ok(Taken::Ok)
    }

    /// When the oldest incomplete unreliable message expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter(|c| !c.delivery.is_reliable())
            .flat_map(|c| c.partial.values().map(|p| p.started))
            .min()
            .map(|t| t + self.limits.unreliable_timeout)
    }

    /// Drops incomplete unreliable messages older than the timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.limits.unreliable_timeout;
        for ch in self.channels.values_mut() {
            if ch.delivery.is_reliable() {
                continue;
            }
            let before = ch.partial.len();
            ch.partial.retain(|_, p| {
                let keep = now < p.started + timeout;
                if !keep {
                    self.unreliable_bytes -= p.data.len();
                }
                keep
            });
            let dropped = before - ch.partial.len();
            self.unreliable_count -= dropped;
            self.stats.unreliable_incomplete += dropped as u64;
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.held as usize);
        }
    }
}

/// Makes room for an incomplete unreliable message of `len` bytes on `ch`,
/// dropping its channel's oldest incomplete ones if needed; false when it
/// cannot be held.
fn reserve_unreliable(
    bytes: &mut usize,
    count: &mut usize,
    limits: &IncomingLimits,
    stats: &mut IncomingStats,
    ch: &mut InChannel,
    len: usize,
) -> bool {
    if len > limits.unreliable_bytes {
        stats.unreliable_incomplete += 1;
        return false;
    }
    while *bytes + len > limits.unreliable_bytes || *count + 1 > limits.unreliable_messages {
        let Some((_, p)) = ch.partial.pop_first() else {
            stats.unreliable_incomplete += 1;
            return false;
        };
        *bytes -= p.data.len();
        *count -= 1;
        stats.unreliable_incomplete += 1;
    }
    *bytes += len;
    *count += 1;
    true
}
