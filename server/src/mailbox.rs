//! A session's private mailbox: DMs and rename notices, the events that are not a room
//! broadcast; and the store's nudge when a message the session sent becomes durable.
//!
//! Every connection has one and most never receive anything, so it is built to cost little
//! while empty: a lock-protected queue that allocates only when something arrives, and a
//! `Notify` to wake the session. (A tokio `mpsc` channel allocates its first block of slots
//! up front, about half a kilobyte per connection.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::Event;

#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Arc<Event>>>,
    /// Events queued, readable without the lock: a session checks its mailbox before every
    /// room event it drains (so a rename notice comes before the renamer's next message),
    /// and almost always finds it empty.
    len: AtomicUsize,
    notify: Notify,
    capacity: usize,
    /// Something other than an event wants the session awake (see [`Mailbox::poke`]).
    poked: AtomicBool,
    /// The session's room messages on their way to the disk.
    unsettled: AtomicUsize,
}

/// The mailbox is full: its owner has not read it for a long time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            notify: Notify::new(),
            capacity,
            poked: AtomicBool::new(false),
            unsettled: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Event>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event without waiting.
    ///
    /// # Errors
    /// [`Full`] when `capacity` events are already waiting; the event is dropped.
    pub(crate) fn deliver(&self, event: Arc<Event>) -> Result<(), Full> {
        {
            let mut queue = self.lock();
            if queue.len() >= self.capacity {
                return Err(Full);
            }
            queue.push_back(event);
            self.len.store(queue.len(), Ordering::Release);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// The oldest waiting event, if any.
    pub(crate) fn try_take(&self) -> Option<Arc<Event>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.lock();
        let event = queue.pop_front();
        self.len.store(queue.len(), Ordering::Release);
        if queue.is_empty() && queue.capacity() > 0 {
            // Give the memory back: most mailboxes stay empty for hours.
            *queue = VecDeque::new();
        }
        event
    }

    /// One more of the session's messages is on its way to the disk.
    pub(crate) fn unsettled_add(&self) {
        self.unsettled.fetch_add(1, Ordering::AcqRel);
    }

    /// One of the session's messages is settled (durable, a duplicate, or failed).
    pub(crate) fn unsettled_sub(&self) {
        self.unsettled.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn unsettled(&self) -> usize {
        self.unsettled.load(Ordering::Acquire)
    }

    /// Wakes the session without an event: a message it holds back until durable now is.
    pub(crate) fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits for the next event, or a poke (`None`). Cancel-safe: an event is only removed
    /// when returned, and a notification that arrives while nobody waits is kept for the
    /// next wait.
    pub(crate) async fn take(&self) -> Option<Arc<Event>> {
        loop {
            if let Some(event) = self.try_take() {
                return Some(event);
            }
            if self.poked.swap(false, Ordering::AcqRel) {
                return None;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ServerMsg;
    use std::time::Duration;

    fn event() -> Arc<Event> {
        Arc::new(Event::new(ServerMsg::Pong { token: None }, None))
    }

    #[tokio::test]
    async fn delivers_in_order_wakes_the_taker_and_refuses_when_full() {
        let mailbox = Arc::new(Mailbox::new(2));
        let taker = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { mailbox.take().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let first = event();
        mailbox.deliver(Arc::clone(&first)).unwrap();
        assert!(Arc::ptr_eq(&taker.await.unwrap().unwrap(), &first));

        let (a, b) = (event(), event());
        mailbox.deliver(Arc::clone(&a)).unwrap();
        mailbox.deliver(Arc::clone(&b)).unwrap();
        assert_eq!(mailbox.deliver(event()), Err(Full));
        assert!(Arc::ptr_eq(&mailbox.take().await.unwrap(), &a));
        assert!(Arc::ptr_eq(&mailbox.try_take().unwrap(), &b));
        assert!(mailbox.try_take().is_none());
        mailbox.poke();
        assert!(mailbox.take().await.is_none(), "a poke wakes the taker");
        assert_eq!(
            mailbox.lock().capacity(),
            0,
            "an empty mailbox holds no memory"
        );
    }
}
