//! Loans: memory to write an outgoing frame in place.
//!
//! A large result is usually built in a buffer and then copied into the
//! transport (into shared memory, or a socket). A [`Loan`] lets the writer
//! build it where the transport would have copied it to: a connection's
//! [`Lender`] hands out memory, the writer fills it, [`Loan::freeze`]
//! makes it an immutable frame, and sending that frame on a connection
//! of the transport that lent it passes the memory itself, not a copy of
//! it. Shared memory lends a memory file of its own (sealed at `freeze`,
//! then mapped by the receiver: no copy on either side, and one file for
//! every peer it is sent to); the stream transports lend heap memory, and
//! a frozen loan sent anywhere else is copied like any other bytes, once.
//!
//! ```
//! use ipc_core::Lender;
//! // What `conn.lender()` gives on a stream transport (the default):
//! let lender = Lender::heap();
//! let mut frame = lender.loan(4096)?;
//! frame.fill(7);
//! let frame = frame.freeze()?; // a `Bytes`: send it with `conn.send(&frame)`
//! assert!(frame.len() == 4096 && frame.iter().all(|&b| b == 7));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `ipc-shm`'s docs show a loan sent by reference.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::Bytes;

/// Memory a transport lends: writable until [`freeze`](Self::freeze)
/// turns it into the frame to send.
pub trait LentMemory: DerefMut<Target = [u8]> + Send + 'static {
    /// Keeps only the first `len` bytes (no-op if it holds no more).
    fn truncate(&mut self, len: usize);

    /// Makes the memory immutable and gives the frame that refers to it.
    /// Sent on a connection of the lending transport, that frame goes by
    /// reference.
    fn freeze(self: Box<Self>) -> io::Result<Bytes>;
}

/// Memory to write one outgoing frame in place; see the
/// [module docs](self). Zeroed when lent.
pub struct Loan(Inner);

enum Inner {
    Heap(Vec<u8>),
    Lent(Box<dyn LentMemory>),
}

impl Loan {
    /// `len` zeroed bytes of heap memory (what every transport can send,
    /// with one copy).
    pub fn heap(len: usize) -> Loan {
        Loan(Inner::Heap(vec![0; len]))
    }

    /// Memory a transport lends.
    pub fn lent(memory: Box<dyn LentMemory>) -> Loan {
        Loan(Inner::Lent(memory))
    }

    /// Whether the memory is the transport's own (sent by reference on
    /// its connections) rather than heap memory.
    pub fn is_lent(&self) -> bool {
        matches!(self.0, Inner::Lent(_))
    }

    /// Keeps only the first `len` bytes: for a writer that asked for as
    /// much as it might need and wrote less. No-op if it holds no more.
    pub fn truncate(&mut self, len: usize) {
        match &mut self.0 {
            Inner::Heap(v) => v.truncate(len),
            Inner::Lent(m) => m.truncate(len),
        }
    }

    /// The frame: immutable from now on. Fails only if the transport
    /// cannot seal its memory (then nothing was sent).
    pub fn freeze(self) -> io::Result<Bytes> {
        match self.0 {
            Inner::Heap(v) => Ok(Bytes::from(v)),
            Inner::Lent(m) => m.freeze(),
        }
    }
}

impl Deref for Loan {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Heap(v) => v,
            Inner::Lent(m) => m,
        }
    }
}

impl DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Inner::Heap(v) => v,
            Inner::Lent(m) => m,
        }
    }
}

impl fmt::Debug for Loan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("lent", &self.is_lent())
            .finish()
    }
}

type LendFn = dyn Fn(usize) -> io::Result<Loan> + Send + Sync;

/// Where a connection's [`Loan`]s come from: cheap to clone, usable from
/// any thread while the connection sends and receives.
#[derive(Clone)]
pub struct Lender(Option<Arc<LendFn>>);

impl Lender {
    /// Lends heap memory (the default of every transport).
    pub fn heap() -> Lender {
        Lender(None)
    }

    /// Lends what `lend` makes. It may return heap loans for sizes where
    /// its own memory would not pay (small frames).
    pub fn new(lend: impl Fn(usize) -> io::Result<Loan> + Send + Sync + 'static) -> Lender {
        Lender(Some(Arc::new(lend)))
    }

    /// Memory for a frame of `len` bytes.
    pub fn loan(&self, len: usize) -> io::Result<Loan> {
        match &self.0 {
            None => Ok(Loan::heap(len)),
            Some(lend) => lend(len),
        }
    }

    /// Whether it lends memory of a transport's own for some sizes.
    pub fn lends_shared(&self) -> bool {
        self.0.is_some()
    }
}

impl Default for Lender {
    fn default() -> Self {
        Lender::heap()
    }
}

impl fmt::Debug for Lender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Lender(transport)"
        } else {
            "Lender(heap)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Marked(Vec<u8>);
    impl Deref for Marked {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0
        }
    }
    impl DerefMut for Marked {
        fn deref_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
    }
    impl LentMemory for Marked {
        fn truncate(&mut self, len: usize) {
            self.0.truncate(len);
        }
        fn freeze(self: Box<Self>) -> io::Result<Bytes> {
            let mut v = self.0;
            v.push(b'!');
            Ok(Bytes::from(v))
        }
    }

    #[test]
    fn heap_and_lent_loans_freeze_what_was_written() {
        let mut heap = Lender::heap().loan(8).unwrap();
        heap.truncate(3);
        assert!(!heap.is_lent() && heap.iter().all(|&b| b == 0));
        heap.copy_from_slice(b"abc");
        assert_eq!(heap.freeze().unwrap(), &b"abc"[..]);

        let lender = Lender::new(|len| Ok(Loan::lent(Box::new(Marked(vec![0; len])))));
        assert!(lender.lends_shared() && !Lender::default().lends_shared());
        let mut lent = lender.loan(5).unwrap();
        assert!(lent.is_lent());
        lent.truncate(2);
        lent.copy_from_slice(b"hi");
        // The transport's own freeze runs, not a copy of the bytes.
        assert_eq!(lent.freeze().unwrap(), &b"hi!"[..]);
    }
}
