//! `futures` adapters: a receiver as a [`Stream`] of frames, a sender as a
//! [`Sink`] of frames, so connections fit `StreamMap`, `select_all`,
//! `SelectAll`, `forward` and the rest of the ecosystem.
//!
//! Each adapter owns its half and runs one operation at a time in a boxed
//! future (one allocation per frame). Both are `Unpin` whatever the half.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;

use crate::{AsyncFrameReceiver, AsyncFrameSender, RecvError, SendError};

type Op<T, R> = Pin<Box<dyn Future<Output = (T, R)> + Send>>;
type SendOp<W> = Op<W, Result<(), SendError>>;

/// A [`Stream`] of the frames a receiver gets; see
/// [`AsyncFrameReceiver::into_frames`].
///
/// It yields `Ok(frame)` per frame and ends (`None`) when the peer has
/// gone and every frame it sent was yielded. A receive timeout
/// ([`Config::recv_timeout`](crate::Config::recv_timeout)) or an oversized
/// frame is yielded as an error and the stream goes on; after a
/// [`RecvError::Corrupted`] or [`RecvError::Io`] it ends. Dropping the
/// stream between polls loses nothing the peer could resend: frames are
/// taken from the connection only when they are yielded.
pub struct Frames<R> {
    idle: Option<R>,
    busy: Option<Op<R, Result<Bytes, RecvError>>>,
    ended: bool,
}

// `Frames` never pins the receiver itself (it lives in a `Box` or in an
// `Option` that is only moved), so it is `Unpin` whatever `R` is.
impl<R> Unpin for Frames<R> {}

impl<R> std::fmt::Debug for Frames<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("receiving", &self.busy.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl<R: AsyncFrameReceiver + 'static> Frames<R> {
    /// Wraps `receiver`.
    pub fn new(receiver: R) -> Self {
        Frames {
            idle: Some(receiver),
            busy: None,
            ended: false,
        }
    }

    /// The receiver back, unless a receive is under way (then `None`).
    pub fn into_inner(self) -> Option<R> {
        self.idle
    }
}

impl<R: AsyncFrameReceiver + 'static> Stream for Frames<R> {
    type Item = Result<Bytes, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if this.busy.is_none() {
            let Some(mut receiver) = this.idle.take() else {
                return Poll::Ready(None);
            };
            this.busy = Some(Box::pin(async move {
                let result = receiver.recv().await;
                (receiver, result)
            }));
        }
        let op = this.busy.as_mut().expect("set just above");
        let (receiver, result) = ready!(op.as_mut().poll(cx));
        this.busy = None;
        this.idle = Some(receiver);
        Poll::Ready(match result {
            Ok(frame) => Some(Ok(frame)),
            Err(RecvError::Disconnected) => {
                this.ended = true;
                None
            }
            Err(e @ (RecvError::Corrupted(_) | RecvError::Io(_))) => {
                this.ended = true;
                Some(Err(e))
            }
            Err(e) => Some(Err(e)),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Doing {
    Send,
    Flush,
}

/// A [`Sink`] of frames over a sender; see
/// [`AsyncFrameSender::into_sink`]. Items are [`Bytes`] (`Bytes::from(vec)`
/// takes a `Vec<u8>` without copying).
///
/// As with every sink, an error of a frame's send is returned by the next
/// `poll_ready`, `poll_flush` or `poll_close`; a frame that was accepted by
/// `start_send` is either sent whole or reported.
pub struct FrameSink<W> {
    idle: Option<W>,
    busy: Option<(Doing, SendOp<W>)>,
}

// As for `Frames`: the sender is never pinned in place.
impl<W> Unpin for FrameSink<W> {}

impl<W> std::fmt::Debug for FrameSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSink")
            .field("busy", &self.busy.is_some())
            .finish()
    }
}

impl<W: AsyncFrameSender + 'static> FrameSink<W> {
    /// Wraps `sender`.
    pub fn new(sender: W) -> Self {
        FrameSink {
            idle: Some(sender),
            busy: None,
        }
    }

    /// The sender back, unless an operation is under way (then `None`).
    pub fn into_inner(self) -> Option<W> {
        self.idle
    }

    /// Drives the operation under way, if any, to its end.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let Some((_, op)) = self.busy.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (sender, result) = ready!(op.as_mut().poll(cx));
        self.busy = None;
        self.idle = Some(sender);
        Poll::Ready(result)
    }

    fn sender(&mut self) -> Result<W, SendError> {
        // Only reachable when a caller breaks the `Sink` protocol (a
        // `start_send` without `poll_ready`): an error, not a panic.
        self.idle
            .take()
            .ok_or_else(|| SendError::Io(std::io::Error::other("sink is busy: poll_ready first")))
    }
}

impl<W: AsyncFrameSender + 'static> Sink<Bytes> for FrameSink<W> {
    type Error = SendError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_done(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), SendError> {
        let mut sender = self.sender()?;
        self.busy = Some((
            Doing::Send,
            Box::pin(async move {
                let result = sender.send(&item).await;
                (sender, result)
            }),
        ));
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        loop {
            match self.busy.as_ref().map(|(doing, _)| *doing) {
                Some(Doing::Flush) => return self.poll_done(cx),
                Some(Doing::Send) => ready!(self.poll_done(cx))?,
                None => {
                    let mut sender = self.sender()?;
                    self.busy = Some((
                        Doing::Flush,
                        Box::pin(async move {
                            let result = sender.flush().await;
                            (sender, result)
                        }),
                    ));
                }
            }
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush(cx)
    }
}
