//! Scratch buffers shared by every `Rtc` on a thread (switchboard's patch, PATCH.md).
//!
//! DTLS output and each outgoing RTP packet are built in a ~2 KB buffer and copied (or
//! encrypted) out of it before the next use, so one per thread does the work of one per
//! instance: 4 KB less memory per `Rtc`. A small stack rather than one buffer, so that two
//! taken at once (never the case today) each get their own.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// The length every scratch buffer has: room for the largest datagram str0m builds.
const LEN: usize = 2000;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`LEN`] bytes, given back to this thread's stack when dropped. Its contents are
/// whatever the last user left: callers write before they read.
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    pub(crate) fn take() -> Scratch {
        let mut buf = FREE
            .try_with(|free| free.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        if buf.len() < LEN {
            buf.resize(LEN, 0);
        }
        Scratch(buf)
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // During thread teardown the stack may be gone; the buffer is then simply freed.
        let _ = FREE.try_with(|free| free.borrow_mut().push(buf));
    }
}
