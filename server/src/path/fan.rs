//! One fan-out's handles on an event, counted once for all its recipients.
//!
//! A room's fan-out queued an `Arc<Event>` clone in every member's sink: one atomic
//! increment per recipient, on a counter that the recipients' sessions, on the other core,
//! decrement as they write it. `perf` on W1 put a third of `Sink::push` (itself a fifth of
//! the server's time) on that increment, waiting for the counter's cache line to come back
//! from the other core. Here the fan-out takes one `Arc` clone and counts all its
//! recipients up front in a counter of its own; handing a member its share touches no
//! shared memory at all, and the fan-out gives back, once, what it did not hand out (the
//! members over their budget). `std::sync::Arc` cannot add more than one at a time, hence
//! this small counted box.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use crate::event::Event;

struct Inner {
    /// Shares handed out and alive, plus what their fan-out still holds (see [`FanOut`]).
    refs: AtomicUsize,
    event: Arc<Event>,
}

/// The producer's end: up to `max` shares of one event, handed out without atomics.
pub(crate) struct FanOut {
    inner: NonNull<Inner>,
    /// How many shares it may still hand out; its own reference counts one more.
    left: usize,
}

/// One recipient's handle on an event shared by a fan-out: what an `Arc<Event>` clone would
/// be, without its increment.
pub(crate) struct Share {
    inner: NonNull<Inner>,
}

// SAFETY: `Inner` is an atomic counter and an `Arc<Event>`, both `Send + Sync`; a share only
// reads the event and releases its count, exactly as an `Arc` clone would.
unsafe impl Send for Share {}
unsafe impl Sync for Share {}
unsafe impl Send for FanOut {}

impl FanOut {
    /// A fan-out of `event` to at most `max` recipients.
    pub(crate) fn new(event: &Arc<Event>, max: usize) -> Self {
        let inner = Box::new(Inner {
            refs: AtomicUsize::new(max.saturating_add(1)),
            event: Arc::clone(event),
        });
        Self {
            inner: NonNull::from(Box::leak(inner)),
            left: max,
        }
    }

    /// The next recipient's share; `None` once `max` were handed out.
    pub(crate) fn share(&mut self) -> Option<Share> {
        // The count already holds this share: handing it over is a copy of the pointer.
        self.left = self.left.checked_sub(1)?;
        Some(Share { inner: self.inner })
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        // Gives back the shares it did not hand out, and its own reference.
        // SAFETY: the count includes this fan-out's own reference until here.
        unsafe { release(self.inner, self.left + 1) }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        // SAFETY: this share's reference is counted until here.
        unsafe { release(self.inner, 1) }
    }
}

/// Drops `n` references; the last one frees the box (and its `Arc` clone). The orderings are
/// `Arc`'s: every use of the event happens before the free.
///
/// # Safety
/// The caller holds `n` of the counted references and uses none of them afterwards.
unsafe fn release(inner: NonNull<Inner>, n: usize) {
    // SAFETY: the caller's references keep the box alive until this subtraction.
    let refs = unsafe { &inner.as_ref().refs };
    if refs.fetch_sub(n, Ordering::Release) == n {
        fence(Ordering::Acquire);
        // SAFETY: that was the last reference; the box came from `Box::leak`.
        drop(unsafe { Box::from_raw(inner.as_ptr()) });
    }
}

impl Deref for Share {
    type Target = Arc<Event>;

    fn deref(&self) -> &Arc<Event> {
        // SAFETY: this share's counted reference keeps the box alive.
        unsafe { &self.inner.as_ref().event }
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Share").field(&***self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ServerMsg;

    fn event() -> Arc<Event> {
        Arc::new(Event::new(
            ServerMsg::Lagged {
                room: "r".into(),
                missed: 1,
            },
            None,
        ))
    }

    #[test]
    fn the_event_lives_as_long_as_its_last_share_whoever_drops_last() {
        let event = event();
        // The fan-out first, its shares after.
        let mut fan = FanOut::new(&event, 3);
        let a = fan.share().unwrap();
        let b = fan.share().unwrap();
        drop(fan);
        assert_eq!(Arc::strong_count(&event), 2, "the shares hold one clone");
        assert!(Arc::ptr_eq(&a, &event));
        drop(a);
        assert_eq!(Arc::strong_count(&event), 2);
        drop(b);
        assert_eq!(Arc::strong_count(&event), 1, "the last share let it go");

        // The shares first, the fan-out after.
        let mut fan = FanOut::new(&event, 2);
        drop(fan.share().unwrap());
        drop(fan.share().unwrap());
        assert!(fan.share().is_none(), "no more than max");
        assert_eq!(Arc::strong_count(&event), 2);
        drop(fan);
        assert_eq!(Arc::strong_count(&event), 1);

        // Nothing handed out.
        drop(FanOut::new(&event, 100));
        assert_eq!(Arc::strong_count(&event), 1);
    }

    #[test]
    fn shares_dropped_on_other_threads_free_it_once() {
        let event = event();
        for _ in 0..100 {
            let mut fan = FanOut::new(&event, 8);
            let shares: Vec<Share> = std::iter::from_fn(|| fan.share()).take(6).collect();
            let threads: Vec<_> = shares
                .into_iter()
                .map(|s| std::thread::spawn(move || drop(s)))
                .collect();
            drop(fan);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(Arc::strong_count(&event), 1);
        }
    }
}
