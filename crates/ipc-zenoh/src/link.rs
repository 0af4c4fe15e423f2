//! One connection's state, shared by the user's side (send, receive) and
//! zenoh's callbacks (a sample arrived, the peer's liveliness token came
//! or went). The one place where waiting happens: blocking callers wait on
//! the condition variable, async ones on the two `Notify`s; both re-check
//! the state under the lock, so a wake-up is never lost and never trusted.
//!
//! **Flow control.** Each side buffers at most its *window* (frame costs,
//! [`wire::cost`]) of the peer's frames, as it said in the handshake. A
//! sender may send while what it sent minus what the receiver reported as
//! consumed stays within that window (one frame of any size may go when
//! nothing is in flight). The receiver reports its consumed total when it
//! has taken a quarter window since the last report, or at once when the
//! sender said it waits (`want`). A peer that sends beyond the window is
//! cut off as corrupted: memory stays bounded whatever it does.

use std::collections::VecDeque;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use ipc_core::{RecvError, SendError};
use tokio::sync::Notify;

use crate::wire::{self, Message, Terms};

/// What arrived and waits for the user.
#[derive(Debug)]
enum Incoming {
    Frame(Bytes),
    /// A frame above this side's maximum, dropped; its length.
    TooLarge(usize),
}

/// Why the connection ended (after the frames before it are taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer closed (its close arrived after all its frames).
    PeerClosed,
    /// The peer's liveliness token went away: it died, its host vanished
    /// (the zenoh lease ran out) or it closed its session.
    PeerLost,
    /// The peer broke the protocol (a malformed message, a frame out of
    /// sequence, beyond the window); nothing after it is trusted.
    Broken(String),
    /// A send failed in zenoh: frames may be missing, so nothing further
    /// goes out.
    SendFailed(String),
}

#[derive(Debug)]
struct State {
    inbox: VecDeque<Incoming>,
    /// Cost of what is in `inbox`.
    queued: u64,
    /// Total cost the user has taken (or that was dropped as too large).
    consumed: u64,
    /// The consumed total last sent to the peer.
    reported: u64,
    /// The peer said it waits for credit and none was sent since.
    peer_wants: bool,
    next_in: u64,

    /// The peer's terms (from the handshake).
    peer: Terms,
    next_out: u64,
    /// Total cost sent.
    sent: u64,
    /// The highest consumed total the peer reported.
    peer_consumed: u64,

    /// The peer's liveliness token has been seen.
    peer_seen: bool,
    end: Option<End>,
    close_acked: bool,
}

/// The shared state of one connection.
#[derive(Debug)]
pub struct Link {
    state: Mutex<State>,
    changed: Condvar,
    readable: Notify,
    writable: Notify,
    own: Terms,
}

/// What a sender may do now.
#[derive(Debug)]
pub enum Room {
    /// Send the frame with this sequence number (already counted as sent).
    Go(u64),
    /// The window is full: wait for credit.
    Full,
}

/// A frame taken from the inbox, and the credit to report for it, if due.
#[derive(Debug)]
pub struct Taken {
    pub frame: Result<Bytes, RecvError>,
    pub credit: Option<u64>,
}

impl Link {
    /// A link whose own terms are `own`; the peer's are filled in by
    /// [`set_peer`](Self::set_peer) once the handshake has them.
    pub fn new(own: Terms) -> Self {
        Link {
            state: Mutex::new(State {
                inbox: VecDeque::new(),
                queued: 0,
                consumed: 0,
                reported: 0,
                peer_wants: false,
                next_in: 0,
                peer: Terms {
                    window: 1,
                    max_message_size: 0,
                    pid: 0,
                },
                next_out: 0,
                sent: 0,
                peer_consumed: 0,
                peer_seen: false,
                end: None,
                close_acked: false,
            }),
            changed: Condvar::new(),
            readable: Notify::new(),
            writable: Notify::new(),
            own,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_all(&self) {
        self.changed.notify_all();
        self.readable.notify_one();
        self.writable.notify_one();
    }

    pub fn set_peer(&self, peer: Terms) {
        self.lock().peer = peer;
    }

    /// The peer's terms (from the handshake).
    pub fn peer(&self) -> Terms {
        self.lock().peer
    }

    // ---- zenoh's side ----

    /// A sample arrived on the incoming key. Returns a reply to send at once
    /// (without blocking: the caller is zenoh's receive task).
    pub fn on_sample(&self, payload: Bytes) -> Option<Vec<u8>> {
        let message = wire::parse(payload);
        let mut s = self.lock();
        if matches!(s.end, Some(End::Broken(_))) {
            return None; // nothing after a violation is looked at
        }
        let mut reply = None;
        let verdict = match message {
            Err(e) => Err(format!("the peer sent a malformed message: {e}")),
            // Both sides may close at once: our close's acknowledgement can
            // follow the peer's own close.
            Ok(message) if s.end == Some(End::PeerClosed) && message != Message::CloseAck => Err(
                format!("the peer sent {} after its close", kind_name(&message)),
            ),
            Ok(Message::Data { seq, frame }) => self.arrived(&mut s, seq, frame),
            Ok(Message::Credit(consumed)) => {
                if consumed > s.sent {
                    Err(format!(
                        "the peer reports {consumed} bytes consumed of {} sent",
                        s.sent
                    ))
                } else {
                    s.peer_consumed = s.peer_consumed.max(consumed);
                    self.changed.notify_all();
                    self.writable.notify_one();
                    Ok(())
                }
            }
            Ok(Message::Want) => {
                if s.consumed > s.reported {
                    s.reported = s.consumed;
                    reply = Some(wire::credit(s.consumed));
                } else {
                    s.peer_wants = true;
                }
                Ok(())
            }
            Ok(Message::Close(frames)) if frames != s.next_in => Err(format!(
                "the peer closed after {frames} frames, but {} arrived",
                s.next_in
            )),
            Ok(Message::Close(_)) => {
                if s.end.is_none() {
                    s.end = Some(End::PeerClosed);
                }
                reply = Some(wire::close_ack());
                self.wake_all();
                Ok(())
            }
            Ok(Message::CloseAck) => {
                s.close_acked = true;
                self.changed.notify_all();
                Ok(())
            }
        };
        if let Err(why) = verdict {
            tracing::warn!("ipc-zenoh: {why}");
            s.end = Some(End::Broken(why));
            self.wake_all();
            return None;
        }
        reply
    }

    fn arrived(&self, s: &mut State, seq: u64, frame: Bytes) -> Result<(), String> {
        if seq != s.next_in {
            return Err(format!(
                "frame {seq} arrived where {} was expected (frames were lost)",
                s.next_in
            ));
        }
        let cost = wire::cost(frame.len());
        if s.queued > 0 && s.queued + cost > self.own.window {
            return Err(format!(
                "the peer sent beyond its window ({} bytes buffered, {cost} more, window {})",
                s.queued, self.own.window
            ));
        }
        s.next_in += 1;
        s.queued += cost;
        let len = frame.len();
        s.inbox
            .push_back(if len as u64 > self.own.max_message_size {
                Incoming::TooLarge(len)
            } else {
                Incoming::Frame(frame)
            });
        self.changed.notify_all();
        self.readable.notify_one();
        Ok(())
    }

    /// The peer's liveliness token appeared (`true`) or went away.
    pub fn on_liveliness(&self, alive: bool) {
        let mut s = self.lock();
        if alive {
            s.peer_seen = true;
        } else if s.end.is_none() {
            s.end = Some(End::PeerLost);
        }
        self.wake_all();
    }

    // ---- the user's side ----

    /// Takes the next frame, if any; `Ok(None)` when the caller must wait.
    pub fn take(&self) -> Result<Option<Taken>, RecvError> {
        let mut s = self.lock();
        let Some(item) = s.inbox.pop_front() else {
            return match &s.end {
                None => Ok(None),
                Some(End::PeerClosed | End::PeerLost) => Err(RecvError::Disconnected),
                Some(End::Broken(why)) => Err(RecvError::Corrupted(why.clone())),
                Some(End::SendFailed(why)) => Err(RecvError::Io(io::Error::other(why.clone()))),
            };
        };
        let (cost, frame) = match item {
            Incoming::Frame(frame) => (wire::cost(frame.len()), Ok(frame)),
            Incoming::TooLarge(len) => (
                wire::cost(len),
                Err(RecvError::FrameTooLarge {
                    len,
                    max: self.own.max_message_size as usize,
                }),
            ),
        };
        s.queued -= cost;
        s.consumed += cost;
        let unreported = s.consumed - s.reported;
        let credit = if unreported >= self.own.window / 4 || (s.peer_wants && unreported > 0) {
            s.reported = s.consumed;
            s.peer_wants = false;
            Some(s.consumed)
        } else {
            None
        };
        Ok(Some(Taken { frame, credit }))
    }

    /// Claims room for a frame of `len` bytes.
    pub fn reserve(&self, len: usize) -> Result<Room, SendError> {
        let mut s = self.lock();
        match &s.end {
            None => {}
            Some(End::PeerClosed | End::PeerLost) => return Err(SendError::Disconnected),
            Some(End::Broken(why)) => return Err(SendError::Corrupted(why.clone())),
            Some(End::SendFailed(why)) => return Err(SendError::Io(io::Error::other(why.clone()))),
        }
        if has_room(&s, len) {
            let seq = s.next_out;
            s.next_out += 1;
            s.sent += wire::cost(len);
            Ok(Room::Go(seq))
        } else {
            Ok(Room::Full)
        }
    }

    /// A send to zenoh failed: what was counted may not have gone out.
    pub fn send_failed(&self, why: String) {
        let mut s = self.lock();
        if s.end.is_none() {
            s.end = Some(End::SendFailed(why));
        }
        self.wake_all();
    }

    /// Starts our close: returns the frame count to announce, or `None`
    /// when there is no one to tell.
    pub fn closing(&self) -> Option<u64> {
        let s = self.lock();
        // A peer that closed, left or broke the protocol hears nothing more.
        s.end.is_none().then_some(s.next_out)
    }

    /// Blocks until `ready` holds for the state or `deadline` passes
    /// (`None`: no limit); returns whether it holds. The check and the
    /// wait are under one lock, so no wake-up slips between them.
    fn wait_for(&self, deadline: Option<Instant>, ready: impl Fn(&State) -> bool) -> bool {
        let mut s = self.lock();
        loop {
            if ready(&s) {
                return true;
            }
            s = match deadline {
                None => self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.changed
                        .wait_timeout(s, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Blocks until a frame or the end is there to take.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> bool {
        self.wait_for(deadline, |s| !s.inbox.is_empty() || s.end.is_some())
    }

    /// Blocks until a frame of `len` bytes fits the peer's window (or the
    /// connection ended).
    pub fn wait_writable(&self, deadline: Option<Instant>, len: usize) -> bool {
        self.wait_for(deadline, |s| s.end.is_some() || has_room(s, len))
    }

    /// Blocks until the peer's liveliness token was seen (or the
    /// connection ended); returns whether it was seen.
    pub fn wait_peer_seen(&self, deadline: Option<Instant>) -> bool {
        self.wait_for(deadline, |s| s.peer_seen || s.end.is_some());
        self.lock().peer_seen
    }

    /// Blocks until our close was acknowledged (or the peer is gone anyway).
    pub fn wait_close_settled(&self, deadline: Option<Instant>) -> bool {
        self.wait_for(deadline, |s| {
            s.close_acked || matches!(s.end, Some(End::PeerLost | End::Broken(_)))
        })
    }

    /// Waits (async) until something arrived or the connection ended.
    pub fn readable(&self) -> &Notify {
        &self.readable
    }

    /// Waits (async) until credit arrived or the connection ended.
    pub fn writable(&self) -> &Notify {
        &self.writable
    }
}

fn has_room(s: &State, len: usize) -> bool {
    let in_flight = s.sent - s.peer_consumed;
    in_flight == 0 || in_flight + wire::cost(len) <= s.peer.window
}

fn kind_name(message: &Message) -> &'static str {
    match message {
        Message::Data { .. } => "a frame",
        Message::Credit(_) => "credit",
        Message::Want => "a want",
        Message::Close(_) => "a second close",
        Message::CloseAck => "a close acknowledgement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERMS: Terms = Terms {
        window: 1024,
        max_message_size: 512,
        pid: 1,
    };

    fn linked() -> Link {
        let link = Link::new(TERMS);
        link.set_peer(TERMS);
        link
    }

    fn deliver(link: &Link, seq: u64, len: usize) -> Option<Vec<u8>> {
        link.on_sample(Bytes::from(wire::data(seq, &vec![7; len])))
    }

    #[test]
    fn frames_in_order_then_disconnected_after_close() {
        let link = linked();
        deliver(&link, 0, 10);
        deliver(&link, 1, 0);
        assert_eq!(
            link.on_sample(Bytes::from(wire::close(2))),
            Some(wire::close_ack())
        );
        assert_eq!(link.take().unwrap().unwrap().frame.unwrap().len(), 10);
        assert_eq!(link.take().unwrap().unwrap().frame.unwrap().len(), 0);
        assert!(matches!(link.take(), Err(RecvError::Disconnected)));
        assert!(matches!(link.reserve(1), Err(SendError::Disconnected)));
    }

    #[test]
    fn protocol_violations_break_the_link_after_what_came_before() {
        for (bad, why) in [
            (wire::data(5, b"x"), "were lost"),
            (vec![9], "malformed"),
            (wire::credit(1), "consumed of 0 sent"),
            (wire::close(0), "closed after 0 frames"),
        ] {
            let link = linked();
            deliver(&link, 0, 1);
            link.on_sample(Bytes::from(bad));
            assert!(link.take().unwrap().unwrap().frame.is_ok());
            match link.take() {
                Err(RecvError::Corrupted(msg)) => assert!(msg.contains(why), "{msg}"),
                other => panic!("expected Corrupted({why}), got {other:?}"),
            }
            assert!(matches!(link.reserve(1), Err(SendError::Corrupted(_))));
            // Nothing after a violation is queued.
            deliver(&link, 1, 1);
            assert!(matches!(link.take(), Err(RecvError::Corrupted(_))));
        }
    }

    #[test]
    fn a_peer_beyond_its_window_is_cut_off() {
        let link = linked();
        let mut seq = 0;
        let mut queued = 0;
        while queued + wire::cost(100) <= TERMS.window {
            deliver(&link, seq, 100);
            seq += 1;
            queued += wire::cost(100);
        }
        deliver(&link, seq, 100);
        let mut frames = 0;
        let err = loop {
            match link.take() {
                Ok(Some(_)) => frames += 1,
                other => break other,
            }
        };
        assert_eq!(frames, seq);
        assert!(matches!(err, Err(RecvError::Corrupted(m)) if m.contains("beyond its window")));
    }

    #[test]
    fn one_large_frame_may_pass_an_empty_window_but_not_the_maximum() {
        let link = linked();
        deliver(&link, 0, 2000); // > window, but nothing queued
        let taken = link.take().unwrap().unwrap();
        assert!(matches!(
            taken.frame,
            Err(RecvError::FrameTooLarge {
                len: 2000,
                max: 512
            })
        ));
        // Its cost is consumed and reported (more than a quarter window).
        assert_eq!(taken.credit, Some(wire::cost(2000)));
        deliver(&link, 1, 3);
        assert_eq!(link.take().unwrap().unwrap().frame.unwrap().len(), 3);
    }

    #[test]
    fn sender_waits_for_credit_and_a_want_brings_it() {
        let sender = linked();
        let receiver = linked();
        // Fill the window.
        let mut sent = 0;
        while let Room::Go(seq) = sender.reserve(100).unwrap() {
            assert!(deliver(&receiver, seq, 100).is_none());
            sent += 1;
        }
        assert!(sent > 1);
        // The receiver takes one frame: less than a quarter window, no credit.
        let taken = receiver.take().unwrap().unwrap();
        assert_eq!(taken.credit, None);
        // The sender asks; the receiver answers with what it consumed.
        let credit = receiver.on_sample(Bytes::from(wire::want())).unwrap();
        assert_eq!(credit, wire::credit(wire::cost(100)));
        assert!(sender.on_sample(Bytes::from(credit)).is_none());
        assert!(matches!(sender.reserve(100).unwrap(), Room::Go(_)));
        // A want with nothing consumed is remembered for the next take.
        assert!(receiver.on_sample(Bytes::from(wire::want())).is_none());
        let taken = receiver.take().unwrap().unwrap();
        assert_eq!(taken.credit, Some(2 * wire::cost(100)));
    }

    #[test]
    fn both_sides_closing_at_once_is_no_violation() {
        let link = linked();
        // We closed (sent our close), then the peer's close arrives, then
        // its acknowledgement of ours.
        assert_eq!(link.closing(), Some(0));
        assert_eq!(
            link.on_sample(Bytes::from(wire::close(0))),
            Some(wire::close_ack())
        );
        assert_eq!(link.on_sample(Bytes::from(wire::close_ack())), None);
        assert!(matches!(link.take(), Err(RecvError::Disconnected)));
        assert!(link.wait_close_settled(Some(Instant::now())));
        // Anything else after the peer's close is a violation.
        link.on_sample(Bytes::from(wire::want()));
        assert!(matches!(link.take(), Err(RecvError::Corrupted(_))));
    }

    #[test]
    fn lost_peer_ends_after_queued_frames() {
        let link = linked();
        deliver(&link, 0, 4);
        link.on_liveliness(false);
        assert!(link.take().unwrap().unwrap().frame.is_ok());
        assert!(matches!(link.take(), Err(RecvError::Disconnected)));
        assert!(link.wait_close_settled(Some(Instant::now())));
        assert_eq!(link.closing(), None);
    }
}
