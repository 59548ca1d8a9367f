//! The sending side of channels ([`Outgoing`]): queued unreliable
//! messages, reliable messages kept until every byte is acknowledged,
//! lost ranges to resend, the peer's flow-control credit, and filling a
//! packet's room with MSG chunks.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::frame::chunk::{varint_len, write_msg, Delivery, MsgChunk};
use crate::session::recovery::ranges::RangeSet;
use crate::session::recovery::sent::{Retransmit, UnreliablePart};

use super::{SendPolicy, MAX_SEQ_WINDOW};

/// Smallest fragment worth starting at the end of a packet.
const MIN_FRAGMENT: usize = 64;
/// Recently counted lost unreliable messages (one loss counted per message).
const LOST_MEMORY: usize = 16;

/// An unreliable message waiting to be sent.
#[derive(Debug)]
struct Unreliable {
    channel: u8,
    delivery: Delivery,
    msg_type: u8,
    seq: u64,
    data: Vec<u8>,
    /// Bytes already sent (a fragmented message goes over several packets).
    sent: usize,
    queued_at: Instant,
}

/// A reliable message kept until fully acknowledged.
#[derive(Debug)]
struct Reliable {
    delivery: Delivery,
    msg_type: u8,
    data: Vec<u8>,
    acked: RangeSet,
    /// First byte never sent.
    next_new: usize,
    queued_at: Instant,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The send buffer is full (the policy said wait or refuse).
    Full,
}

/// Counters of the sending side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutgoingStats {
    /// Unreliable messages dropped from the queue to make room
    /// ([`SendPolicy::ReplaceOldest`]).
    pub unreliable_replaced: u64,
    /// Unreliable messages a lost packet carried a part of.
    pub unreliable_lost: u64,
    /// Reliable byte ranges sent again.
    pub retransmitted_ranges: u64,
    /// Total time messages waited in the send queue before their first
    /// byte left, and how many did.
    pub queue_wait_total: Duration,
    /// Messages whose first byte left.
    pub queue_wait_count: u64,
    /// Longest wait of a message in the send queue.
    pub queue_wait_max: Duration,
}

/// The sending side of every channel of a session.
#[derive(Debug)]
pub struct Outgoing {
    next_seq: Box<[u64; 256]>,
    unreliable: VecDeque<Unreliable>,
    reliable: BTreeMap<(u8, u64), Reliable>,
    /// Reliable messages with bytes never sent, oldest first.
    fresh: VecDeque<(u8, u64)>,
    retransmit: VecDeque<Retransmit>,
    /// Bytes held: queued unreliable and unacknowledged reliable data.
    held: usize,
    /// Bytes of unreliable messages not started (the ones
    /// [`SendPolicy::ReplaceOldest`] may drop).
    unsent_unreliable: usize,
    limit: usize,
    /// The peer's cumulative credit, and what first transmissions used.
    peer_max_data: u64,
    credit_used: u64,
    recently_lost: VecDeque<(u8, u64)>,
    stats: OutgoingStats,
}

impl Outgoing {
    /// A sender holding at most `limit` bytes, with `initial_credit` from
    /// the peer.
    pub fn new(limit: usize, initial_credit: u64) -> Self {
        Self {
            next_seq: Box::new([0; 256]),
            unreliable: VecDeque::new(),
            reliable: BTreeMap::new(),
            fresh: VecDeque::new(),
            retransmit: VecDeque::new(),
            held: 0,
            unsent_unreliable: 0,
            limit,
            peer_max_data: initial_credit,
            credit_used: 0,
            recently_lost: VecDeque::new(),
            stats: OutgoingStats::default(),
        }
    }

    /// Queues a message. `data` is taken as it is (no copy).
    pub fn push(
        &mut self,
        now: Instant,
        channel: u8,
        delivery: Delivery,
        msg_type: u8,
        data: Vec<u8>,
        policy: SendPolicy,
    ) -> Result<(), Refused> {
        let len = data.len();
        if self.held + len > self.limit && self.held != 0 {
            let can_replace = policy == SendPolicy::ReplaceOldest && !delivery.is_reliable();
            if !can_replace || !self.make_room(len) {
                return Err(Refused::Full);
            }
        }
        let seq = self.next_seq[channel as usize];
        self.next_seq[channel as usize] = seq + 1;
        self.held += len;
        if delivery.is_reliable() {
            self.reliable.insert(
                (channel, seq),
                Reliable {
                    delivery,
                    msg_type,
                    data,
                    acked: RangeSet::new(),
                    next_new: 0,
                    queued_at: now,
                },
            );
            self.fresh.push_back((channel, seq));
        } else {
            self.unsent_unreliable += len;
            self.unreliable.push_back(Unreliable {
                channel,
                delivery,
                msg_type,
                seq,
                data,
                sent: 0,
                queued_at: now,
            });
        }
        Ok(())
    }

    /// Drops the oldest unsent unreliable messages until `len` more bytes
    /// fit; false (and nothing dropped) when they cannot.
    fn make_room(&mut self, len: usize) -> bool {
        let droppable = self.unsent_unreliable;
        if self.held - droppable + len > self.limit && self.held != droppable {
            return false;
        }
        while self.held + len > self.limit {
            let Some(i) = self.unreliable.iter().position(|u| u.sent == 0) else {
                break;
            };
            if let Some(u) = self.unreliable.remove(i) {
                self.held -= u.data.len();
                self.unsent_unreliable -= u.data.len();
                self.stats.unreliable_replaced += 1;
            }
        }
        true
    }

    /// Whether anything waits to be sent (new data or retransmissions).
    pub fn has_pending(&self) -> bool {
        !self.retransmit.is_empty() || !self.unreliable.is_empty() || self.sendable_fresh()
    }

    fn sendable_fresh(&self) -> bool {
        self.fresh
            .front()
            .is_some_and(|&(c, s)| self.credit_allows(c, s))
    }

    /// Whether reliable data waits for the peer's credit.
    pub fn credit_blocked(&self) -> bool {
        self.fresh
            .front()
            .is_some_and(|&(c, s)| !self.credit_allows(c, s))
    }

    fn credit_allows(&self, channel: u8, seq: u64) -> bool {
        let Some(m) = self.reliable.get(&(channel, seq)) else {
            return true;
        };
        if m.next_new > 0 {
            return true;
        }
        let oldest = self
            .reliable
            .range((channel, 0)..=(channel, u64::MAX))
            .next()
            .map_or(seq, |(&(_, s), _)| s);
        seq < oldest + MAX_SEQ_WINDOW
            && self.credit_used + m.data.len() as u64 <= self.peer_max_data
    }

    /// Bytes held (queued and unacknowledged).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether `len` more bytes fit the send buffer now.
    pub fn has_room(&self, len: usize) -> bool {
        self.held == 0 || self.held + len <= self.limit
    }

    /// Counters.
    pub fn stats(&self) -> OutgoingStats {
        self.stats
    }

    /// How long the oldest message has been waiting to start.
    pub fn oldest_wait(&self, now: Instant) -> Duration {
        let u = self.unreliable.front().map(|u| u.queued_at);
        let r = self
            .fresh
            .front()
            .and_then(|k| self.reliable.get(k))
            .map(|m| m.queued_at);
        [u, r]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// The peer raised its credit.
    pub fn on_credit(&mut self, max_data: u64) {
        self.peer_max_data = self.peer_max_data.max(max_data);
    }

    /// Writes MSG chunks into `packet` while they fit `room` more bytes
    /// (`capacity` being what an empty packet holds): retransmissions first,
    /// then new messages oldest first. Records what was written.
    pub fn fill(
        &mut self,
        now: Instant,
        packet: &mut Vec<u8>,
        room: usize,
        capacity: usize,
        retransmit: &mut Vec<Retransmit>,
        unreliable: &mut Vec<UnreliablePart>,
    ) {
        let limit = packet.len() + room;
        while let Some(r) = self.retransmit.front().copied() {
            let Retransmit::Msg {
                channel,
                seq,
                offset,
                len,
            } = r
            else {
                self.retransmit.pop_front();
                continue;
            };
            let Some(m) = self.reliable.get(&(channel, seq)) else {
                self.retransmit.pop_front();
                continue;
            };
            let end = offset + u64::from(len);
            // Skip what was acknowledged meanwhile (a spurious loss).
            let Some(gap) = m.acked.gaps_in(offset..end).next() else {
                self.retransmit.pop_front();
                continue;
            };
            let left = limit.saturating_sub(packet.len());
            let total = m.data.len() as u64;
            let overhead = msg_overhead(seq, Some((total, gap.start)), gap.end - gap.start);
            if left < overhead + MIN_FRAGMENT.min((gap.end - gap.start) as usize) {
                return;
            }
            let take = ((left - overhead) as u64).min(gap.end - gap.start);
            let (s, e) = (gap.start as usize, (gap.start + take) as usize);
            write_part(packet, channel, m.delivery, m.msg_type, seq, &m.data, s, e);
            retransmit.push(Retransmit::Msg {
                channel,
                seq,
                offset: gap.start,
                len: take as u32,
            });
            self.stats.retransmitted_ranges += 1;
            // What is left of this range goes next.
            let rest = gap.start + take;
            match self.retransmit.front_mut() {
                Some(Retransmit::Msg { offset, len, .. }) if rest < end => {
                    *offset = rest;
                    *len = (end - rest) as u32;
                }
                _ => {
                    self.retransmit.pop_front();
                }
            }
        }
        loop {
            let left = limit.saturating_sub(packet.len());
            let take_unreliable = match (self.unreliable.front(), self.fresh.front()) {
                (Some(u), Some(k)) => {
                    let r = self.reliable.get(k).map_or(now, |m| m.queued_at);
                    u.queued_at <= r || !self.sendable_fresh()
                }
                (Some(_), None) => true,
                (None, Some(_)) if self.sendable_fresh() => false,
                _ => return,
            };
            let wrote = if take_unreliable {
                self.fill_unreliable(now, packet, left, capacity, unreliable)
            } else {
                self.fill_fresh(now, packet, left, capacity, retransmit)
            };
            if !wrote {
                return;
            }
        }
    }

    fn fill_unreliable(
        &mut self,
        now: Instant,
        packet: &mut Vec<u8>,
        left: usize,
        capacity: usize,
        parts: &mut Vec<UnreliablePart>,
    ) -> bool {
        let Some(u) = self.unreliable.front_mut() else {
            return false;
        };
        let Some(take) = part_size(u.seq, u.data.len(), u.sent, left, capacity, false) else {
            return false;
        };
        if u.sent == 0 {
            record_wait(&mut self.stats, now, u.queued_at);
            self.unsent_unreliable -= u.data.len();
        }
        let (s, e) = (u.sent, u.sent + take);
        write_part(
            packet, u.channel, u.delivery, u.msg_type, u.seq, &u.data, s, e,
        );
        parts.push(UnreliablePart {
            channel: u.channel,
            seq: u.seq,
        });
        u.sent = e;
        if e == u.data.len() {
            if let Some(done) = self.unreliable.pop_front() {
                self.held -= done.data.len();
            }
        }
        true
    }

    fn fill_fresh(
        &mut self,
        now: Instant,
        packet: &mut Vec<u8>,
        left: usize,
        capacity: usize,
        retransmit: &mut Vec<Retransmit>,
    ) -> bool {
        let Some(&(channel, seq)) = self.fresh.front() else {
            return false;
        };
        let Some(m) = self.reliable.get_mut(&(channel, seq)) else {
            self.fresh.pop_front();
            return true;
        };
        let Some(take) = part_size(seq, m.data.len(), m.next_new, left, capacity, true) else {
            return false;
        };
        if m.next_new == 0 {
            self.credit_used += m.data.len() as u64;
            record_wait(&mut self.stats, now, m.queued_at);
        }
        let (s, e) = (m.next_new, m.next_new + take);
        write_part(packet, channel, m.delivery, m.msg_type, seq, &m.data, s, e);
        retransmit.push(Retransmit::Msg {
            channel,
            seq,
            offset: s as u64,
            len: take as u32,
        });
        m.next_new = e;
        if e == m.data.len() {
            self.fresh.pop_front();
        }
        true
    }

    /// A packet carrying `parts` was acknowledged.
    pub fn on_acked(&mut self, parts: &[Retransmit]) {
        for r in parts {
            let Retransmit::Msg {
                channel,
                seq,
                offset,
                len,
            } = *r
            else {
                continue;
            };
            let key = (channel, seq);
            let Some(m) = self.reliable.get_mut(&key) else {
                continue;
            };
            m.acked.insert(offset..offset + u64::from(len));
            let complete =
                m.next_new == m.data.len() && m.acked.contains_range(0..m.data.len() as u64);
            if complete {
                if let Some(m) = self.reliable.remove(&key) {
                    self.held -= m.data.len();
                }
            }
        }
    }

    /// A packet carrying `parts` and `unreliable` was declared lost.
    pub fn on_lost(&mut self, parts: &[Retransmit], unreliable: &[UnreliablePart]) {
        for r in parts {
            if let Retransmit::Msg { channel, seq, .. } = *r {
                if self.reliable.contains_key(&(channel, seq)) {
                    self.retransmit.push_back(*r);
                }
            }
        }
        for u in unreliable {
            let key = (u.channel, u.seq);
            if !self.recently_lost.contains(&key) {
                if self.recently_lost.len() == LOST_MEMORY {
                    self.recently_lost.pop_front();
                }
                self.recently_lost.push_back(key);
                self.stats.unreliable_lost += 1;
            }
        }
    }

    /// What a probe should carry: the unacknowledged parts of `parts`
    /// (from the oldest packet in flight) go to the front of the queue.
    pub fn requeue_for_probe(&mut self, parts: &[Retransmit]) {
        for r in parts.iter().rev() {
            if let Retransmit::Msg { channel, seq, .. } = *r {
                if self.reliable.contains_key(&(channel, seq)) {
                    self.retransmit.push_front(*r);
                }
            }
        }
    }

    /// Every unacknowledged byte of every reliable message that has been
    /// sent goes again (the session moved to a new path).
    pub fn requeue_all_sent(&mut self) {
        self.retransmit.clear();
        for (&(channel, seq), m) in &self.reliable {
            for gap in m.acked.gaps_in(0..m.next_new as u64) {
                let mut at = gap.start;
                while at < gap.end {
                    let len = (gap.end - at).min(u64::from(u32::MAX));
                    self.retransmit.push_back(Retransmit::Msg {
                        channel,
                        seq,
                        offset: at,
                        len: len as u32,
                    });
                    at += len;
                }
            }
        }
    }

    /// Reliable messages not yet fully acknowledged.
    pub fn unacked_messages(&self) -> usize {
        self.reliable.len()
    }
}

fn record_wait(stats: &mut OutgoingStats, now: Instant, queued_at: Instant) {
    let wait = now.saturating_duration_since(queued_at);
    stats.queue_wait_total += wait;
    stats.queue_wait_count += 1;
    stats.queue_wait_max = stats.queue_wait_max.max(wait);
}

/// Bytes of a MSG chunk around `len` data bytes.
fn msg_overhead(seq: u64, fragment: Option<(u64, u64)>, len: u64) -> usize {
    4 + varint_len(seq)
        + fragment.map_or(0, |(t, o)| varint_len(t) + varint_len(o))
        + varint_len(len)
}

/// How many bytes of a message of `total` bytes, `sent` of them gone, to
/// put in a packet with `left` bytes of room (an empty packet holding
/// `capacity`): `None` to close the packet first.
fn part_size(
    seq: u64,
    total: usize,
    sent: usize,
    left: usize,
    capacity: usize,
    reliable: bool,
) -> Option<usize> {
    let remaining = total - sent;
    let whole = sent == 0 && msg_overhead(seq, None, total as u64) + total <= left;
    if whole {
        return Some(total);
    }
    let frag = msg_overhead(seq, Some((total as u64, sent as u64)), remaining as u64);
    // An unreliable message that fits an empty packet whole waits for one
    // rather than being split (two packets to lose instead of one); a
    // reliable one fills the room (a lost part is resent alone).
    if !reliable && sent == 0 && msg_overhead(seq, None, total as u64) + total <= capacity {
        return None;
    }
    if left < frag + MIN_FRAGMENT.min(remaining) || left <= frag {
        return None;
    }
    Some((left - frag).min(remaining))
}

#[allow(clippy::too_many_arguments)]
fn write_part(
    packet: &mut Vec<u8>,
    channel: u8,
    delivery: Delivery,
    msg_type: u8,
    seq: u64,
    data: &[u8],
    start: usize,
    end: usize,
) {
    let whole = start == 0 && end == data.len();
    write_msg(
        packet,
        &MsgChunk {
            delivery,
            channel,
            msg_type,
            seq,
            fragment: (!whole).then_some((data.len() as u64, start as u64)),
            data: &data[start..end],
        },
    );
}
