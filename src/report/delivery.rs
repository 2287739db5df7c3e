//! The reporter's delivery state for one broker session, kept apart from the
//! I/O (as rumqttc keeps `state.rs` apart from `eventloop.rs`).
//!
//! What it answers, without a socket:
//! - **what to send next**: the queued records after [`Delivery::resume_after`],
//!   as many as [`Delivery::room`] allows (at most `window` unacknowledged);
//! - **what an ack releases**: the MQTT client names each publish by a packet
//!   id only once it has written it ([`Delivery::packet_id`], in the order the
//!   publishes were handed over); a PUBACK for that id ([`Delivery::acked`])
//!   releases the queued record's seq, or a status message outside the stream;
//! - **what to resend after a reconnect**: nothing is carried over. A new
//!   session starts with a fresh `Delivery`, so it resumes at the queue's
//!   oldest unacknowledged record: at least once, in seq order, never from
//!   the MQTT client's memory.

use std::collections::{HashMap, VecDeque};

/// A publish handed to the MQTT client: the seq of a queued record, or None
/// for a message outside the stream (the status).
type Handed = Option<u64>;

/// What a PUBACK released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The queued record with this seq: it may leave the queue.
    Record(u64),
    /// A status message.
    Status,
}

/// Delivery state of one broker session.
#[derive(Debug)]
pub struct Delivery {
    window: usize,
    /// Publishes handed over, in order, waiting for their packet id.
    awaiting_pkid: VecDeque<Handed>,
    /// Packet id → publish awaiting its PUBACK.
    inflight: HashMap<u16, Handed>,
    /// The newest seq handed over in this session.
    last_sent: Option<u64>,
    /// Queued records handed over and not yet acknowledged.
    outstanding: usize,
}

impl Delivery {
    /// A new session's state: nothing sent, at most `window` records unacknowledged.
    pub fn new(window: usize) -> Delivery {
        Delivery {
            window,
            awaiting_pkid: VecDeque::new(),
            inflight: HashMap::new(),
            last_sent: None,
            outstanding: 0,
        }
    }

    /// How many more queued records may be handed over now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.outstanding)
    }

    /// The seq the next records follow (None: from the oldest queued record).
    pub fn resume_after(&self) -> Option<u64> {
        self.last_sent
    }

    /// A queued record was handed to the MQTT client.
    pub fn record_handed(&mut self, seq: u64) {
        self.awaiting_pkid.push_back(Some(seq));
        self.last_sent = Some(seq);
        self.outstanding += 1;
    }

    /// A message outside the stream (a status) was handed to the MQTT client.
    pub fn status_handed(&mut self) {
        self.awaiting_pkid.push_back(None);
    }

    /// The MQTT client wrote the oldest handed publish with this packet id.
    pub fn packet_id(&mut self, pkid: u16) {
        if let Some(handed) = self.awaiting_pkid.pop_front() {
            self.inflight.insert(pkid, handed);
        }
    }

    /// The broker acknowledged `pkid`; None for an id this session did not send.
    pub fn acked(&mut self, pkid: u16) -> Option<Released> {
        match self.inflight.remove(&pkid)? {
            Some(seq) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                Some(Released::Record(seq))
            }
            None => Some(Released::Status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_what_is_handed_over() {
        let mut d = Delivery::new(3);
        assert_eq!((d.room(), d.resume_after()), (3, None));
        for seq in 10..13 {
            d.record_handed(seq);
        }
        assert_eq!((d.room(), d.resume_after()), (0, Some(12)));
        // A status does not take a place in the window.
        d.status_handed();
        assert_eq!(d.room(), 0);
    }

    #[test]
    fn packet_ids_are_matched_in_the_order_publishes_were_handed() {
        let mut d = Delivery::new(8);
        d.status_handed();
        d.record_handed(1);
        d.record_handed(2);
        d.packet_id(7);
        d.packet_id(8);
        d.packet_id(9);
        // Acks may come in any order; each releases what its id carried.
        assert_eq!(d.acked(9), Some(Released::Record(2)));
        assert_eq!(d.acked(7), Some(Released::Status));
        assert_eq!(d.room(), 7);
        assert_eq!(d.acked(8), Some(Released::Record(1)));
        assert_eq!(d.room(), 8);
    }

    #[test]
    fn an_ack_for_an_unknown_or_repeated_id_releases_nothing() {
        let mut d = Delivery::new(2);
        d.record_handed(5);
        d.packet_id(1);
        assert_eq!(d.acked(2), None);
        assert_eq!(d.acked(1), Some(Released::Record(5)));
        assert_eq!(d.acked(1), None);
        assert_eq!(d.room(), 2);
    }

    #[test]
    fn a_packet_id_before_any_handed_publish_is_ignored() {
        let mut d = Delivery::new(2);
        d.packet_id(4);
        assert_eq!(d.acked(4), None);
    }

    #[test]
    fn a_new_session_resumes_from_the_oldest_unacknowledged_record() {
        let mut d = Delivery::new(4);
        d.record_handed(1);
        d.record_handed(2);
        d.packet_id(1);
        assert_eq!(d.acked(1), Some(Released::Record(1)));
        // The connection drops with 2 unacknowledged: the next session's state
        // starts from the queue (which still holds 2), not after 2.
        let next = Delivery::new(4);
        assert_eq!((next.resume_after(), next.room()), (None, 4));
    }
}
