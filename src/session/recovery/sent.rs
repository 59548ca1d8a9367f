//! What the sender remembers of each channel packet in flight
//! ([`SentPacket`]), what a lost one must resend ([`Retransmit`]), and the
//! ordered store of them ([`SentPackets`]).

use std::collections::VecDeque;
use std::time::Instant;

/// Something a lost packet carried that must be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retransmit {
    /// Bytes `offset..offset + len` of a reliable message.
    Msg {
        /// Channel.
        channel: u8,
        /// The message's sequence number.
        seq: u64,
        /// First byte.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// The flow-control credit (the newest value is sent again).
    FlowCredit,
}

/// An unreliable message's part, remembered to count the message as lost
/// when its packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreliablePart {
    /// Channel.
    pub channel: u8,
    /// The message's sequence number.
    pub seq: u64,
}

/// One sent channel packet.
#[derive(Debug, Clone)]
pub struct SentPacket {
    /// Its packet number.
    pub pn: u64,
    /// When it left.
    pub time: Instant,
    /// Its size on the wire (sealed frame).
    pub size: usize,
    /// Whether it asks for an acknowledgement (carries more than ACK and
    /// padding); only such packets count in flight.
    pub ack_eliciting: bool,
    /// A path MTU probe: its loss is not congestion.
    pub mtu_probe: bool,
    /// The largest packet number of the ACK chunk it carried.
    pub ack_largest: Option<u64>,
    /// Whether the sender was application-limited when it left.
    pub app_limited: bool,
    /// Delivery-rate state when it left (see `Recovery`).
    pub delivered: u64,
    /// When `delivered` was last advanced before it left.
    pub delivered_time: Instant,
    /// Send time of the first packet of its sampling interval.
    pub first_sent_time: Instant,
    /// What to resend if it is lost.
    pub retransmit: Vec<Retransmit>,
    /// Unreliable messages it carried parts of.
    pub unreliable: Vec<UnreliablePart>,
    /// Acknowledged or declared lost: waiting to be dropped from the front.
    pub(crate) done: bool,
}

/// Sent packets in packet-number order. Packets leave the middle by being
/// marked done; the front is trimmed of done packets.
#[derive(Debug, Default)]
pub struct SentPackets {
    packets: VecDeque<SentPacket>,
    /// Packets not yet done.
    live: usize,
}

impl SentPackets {
    /// Remembers a packet; its number must be above every other's.
    pub fn push(&mut self, p: SentPacket) {
        debug_assert!(self.packets.back().is_none_or(|b| b.pn < p.pn));
        self.live += 1;
        self.packets.push_back(p);
    }

    /// Packets not yet acknowledged or lost.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no packet is outstanding.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Index of the first packet with a number at or above `pn`.
    pub fn index_at_or_above(&self, pn: u64) -> usize {
        self.packets.partition_point(|p| p.pn < pn)
    }

    /// The packet at `i`, when still outstanding.
    pub fn get_live(&self, i: usize) -> Option<&SentPacket> {
        self.packets.get(i).filter(|p| !p.done)
    }

    /// Number of slots (outstanding and done).
    pub fn slots(&self) -> usize {
        self.packets.len()
    }

    /// Takes packet `i` out (marks it done) and returns its contents.
    pub fn take(&mut self, i: usize) -> Option<SentPacket> {
        let p = self.packets.get_mut(i).filter(|p| !p.done)?;
        p.done = true;
        self.live -= 1;
        let taken = SentPacket {
            retransmit: std::mem::take(&mut p.retransmit),
            unreliable: std::mem::take(&mut p.unreliable),
            ..p.clone()
        };
        Some(taken)
    }

    /// Drops done packets from the front.
    pub fn trim(&mut self) {
        while self.packets.front().is_some_and(|p| p.done) {
            self.packets.pop_front();
        }
    }

    /// Outstanding packets, oldest first.
    pub fn iter_live(&self) -> impl Iterator<Item = (usize, &SentPacket)> {
        self.packets.iter().enumerate().filter(|(_, p)| !p.done)
    }

    /// The oldest outstanding ack-eliciting packet's send time.
    pub fn oldest_eliciting(&self) -> Option<&SentPacket> {
        self.packets.iter().find(|p| !p.done && p.ack_eliciting)
    }
}
