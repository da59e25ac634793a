//! A session's room subscriptions: drained cheaply, waited on together.
//!
//! `tokio_stream`'s `BroadcastStream` re-creates and re-boxes a receive future for every
//! item, and in a busy room that is most of what a recipient does per message. Here a
//! subscription drains its receiver with `try_recv` (no future, no waker) and moves the
//! receiver into a boxed future only to wait, once per wakeup; the box is allocated on the
//! first wait and reused after.
//!
//! A subscription can also hold one event back: a session's own message, until it is
//! durable (that copy is its acknowledgement). The room's later events wait behind it, so
//! the sender still sees the room in `seq` order.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chat_shared::RoomName;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::ReusableBoxFuture;

use crate::event::{Event, Settled};

/// What a subscription yields.
#[derive(Debug)]
pub(crate) enum Delivery {
    Event(Arc<Event>),
    /// The session fell behind this room and skipped `missed` messages.
    Lagged {
        room: RoomName,
        missed: u64,
    },
}

type Received = (Result<Arc<Event>, RecvError>, Receiver<Arc<Event>>);

async fn recv_owned(mut rx: Receiver<Arc<Event>>) -> Received {
    let result = rx.recv().await;
    (result, rx)
}

struct Subscription {
    room: RoomName,
    /// `None` while the receiver is inside `wait`.
    rx: Option<Receiver<Arc<Event>>>,
    wait: Option<ReusableBoxFuture<'static, Received>>,
    /// Held back until it settles; nothing after it is yielded before it.
    held: Option<Arc<Event>>,
}

impl Subscription {
    fn deliver(&self, result: Result<Arc<Event>, TryRecvError>) -> Option<Delivery> {
        match result {
            Ok(event) => Some(Delivery::Event(event)),
            Err(TryRecvError::Lagged(missed)) => Some(Delivery::Lagged {
                room: self.room.clone(),
                missed,
            }),
            // Nothing more now, or the room is gone (it is not while anyone holds it).
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        }
    }

    /// `Some(None)`: blocked behind a held event that is not settled yet.
    fn release_held(&mut self) -> Option<Option<Delivery>> {
        let held = self.held.as_ref()?;
        if held.settled() == Settled::Pending {
            return Some(None);
        }
        self.held.take().map(|e| Some(Delivery::Event(e)))
    }

    fn try_next(&mut self) -> Option<Delivery> {
        if let Some(held) = self.release_held() {
            return held;
        }
        if self.rx.is_none() {
            // Parked in `wait`: take it back if the wait is over. The no-op waker is safe:
            // before the session sleeps, `poll_next` polls again with the real one.
            let mut cx = Context::from_waker(Waker::noop());
            return match self.poll_wait(&mut cx) {
                Poll::Ready(delivery) => delivery,
                Poll::Pending => None,
            };
        }
        let result = self.rx.as_mut()?.try_recv();
        self.deliver(result)
    }

    /// Polls the parked receiver; once its wait is over the receiver is back in `rx`.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let Some(wait) = &mut self.wait else {
            return Poll::Pending;
        };
        let (result, rx) = std::task::ready!(wait.poll(cx));
        self.rx = Some(rx);
        let result = result.map_err(|e| match e {
            RecvError::Lagged(n) => TryRecvError::Lagged(n),
            RecvError::Closed => TryRecvError::Closed,
        });
        Poll::Ready(self.deliver(result))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Delivery> {
        if let Some(delivery) = self.try_next() {
            return Poll::Ready(delivery);
        }
        if self.held.is_some() {
            // Whoever settles it wakes the session (see `Subscriptions::hold`).
            return Poll::Pending;
        }
        if let Some(rx) = self.rx.take() {
            match &mut self.wait {
                Some(wait) => wait.set(recv_owned(rx)),
                None => self.wait = Some(ReusableBoxFuture::new(recv_owned(rx))),
            }
        }
        match std::task::ready!(self.poll_wait(cx)) {
            Some(delivery) => Poll::Ready(delivery),
            // Closed: the room is gone; this subscription stays silent.
            None => Poll::Pending,
        }
    }
}

#[derive(Default)]
pub(crate) struct Subscriptions {
    subs: Vec<Subscription>,
    /// Where the next scan starts, so one busy room cannot starve the others.
    start: usize,
    /// The subscription that yielded last.
    last: usize,
}

impl Subscriptions {
    /// Subscribes to `room`, replacing any earlier receiver of it.
    pub(crate) fn insert(&mut self, room: RoomName, rx: Receiver<Arc<Event>>) {
        self.remove(&room);
        self.subs.push(Subscription {
            room,
            rx: Some(rx),
            wait: None,
            held: None,
        });
    }

    pub(crate) fn remove(&mut self, room: &RoomName) {
        self.subs.retain(|s| &s.room != room);
    }

    pub(crate) fn clear(&mut self) {
        self.subs = Vec::new();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    fn rotate(&mut self) -> impl Iterator<Item = usize> + use<> {
        let n = self.subs.len();
        self.start = if n == 0 { 0 } else { (self.start + 1) % n };
        let start = self.start;
        (0..n).map(move |i| (start + i) % n)
    }

    /// The next delivery already waiting in any room, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<Delivery> {
        for i in self.rotate() {
            if let Some(delivery) = self.subs[i].try_next() {
                self.last = i;
                return Some(delivery);
            }
        }
        None
    }

    /// Gives back the event just yielded, to be yielded again once it has settled; its room
    /// yields nothing else until then. The caller must get woken when it settles: the store
    /// pokes the sender's mailbox, and a session holding another's event polls.
    pub(crate) fn hold(&mut self, event: Arc<Event>) {
        if let Some(sub) = self.subs.get_mut(self.last) {
            sub.held = Some(event);
        }
    }

    /// Whether any room is held back.
    pub(crate) fn holding(&self) -> bool {
        self.subs.iter().any(|s| s.held.is_some())
    }

    /// Waits for the next delivery from any room. Cancel-safe: a receiver is never dropped
    /// while waiting, only parked in its subscription's future.
    pub(crate) async fn next(&mut self) -> Delivery {
        poll_fn(|cx| {
            for i in self.rotate() {
                if let Poll::Ready(delivery) = self.subs[i].poll_next(cx) {
                    self.last = i;
                    return Poll::Ready(delivery);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ServerMsg;
    use tokio::sync::broadcast;

    fn event(n: u64) -> Arc<Event> {
        Arc::new(Event::new(
            ServerMsg::Lagged {
                room: "r".into(),
                missed: n,
            },
            None,
        ))
    }

    fn n(d: Delivery) -> u64 {
        match d {
            Delivery::Event(e) => match e.msg {
                ServerMsg::Lagged { missed, .. } => missed,
                _ => unreachable!(),
            },
            Delivery::Lagged { .. } => u64::MAX,
        }
    }

    #[tokio::test]
    async fn drains_waits_and_reports_lag_per_room() {
        let (a_tx, a_rx) = broadcast::channel(4);
        let (b_tx, b_rx) = broadcast::channel(4);
        let mut subs = Subscriptions::default();
        subs.insert(RoomName::parse("a").unwrap(), a_rx);
        subs.insert(RoomName::parse("b").unwrap(), b_rx);
        assert!(subs.try_next().is_none());

        // A wait completes when any room sends, and the receiver is usable again after.
        let waiter = tokio::spawn(async move {
            let first = n(subs.next().await);
            (subs, first)
        });
        tokio::task::yield_now().await;
        b_tx.send(event(7)).unwrap();
        let (mut subs, first) = waiter.await.unwrap();
        assert_eq!(first, 7);
        b_tx.send(event(8)).unwrap();
        assert_eq!(n(subs.try_next().unwrap()), 8);

        // Six sends into a buffer of four: the subscriber hears of the two it missed.
        for i in 0..6 {
            a_tx.send(event(i)).unwrap();
        }
        let Some(Delivery::Lagged { room, missed }) = subs.try_next() else {
            panic!("no lag reported");
        };
        assert_eq!((room.as_str(), missed), ("a", 2));
        let rest: Vec<u64> = std::iter::from_fn(|| subs.try_next()).map(n).collect();
        assert_eq!(rest, [2, 3, 4, 5]);

        subs.remove(&RoomName::parse("a").unwrap());
        a_tx.send(event(9)).unwrap_or_default();
        assert!(subs.try_next().is_none());
    }

    #[test]
    fn a_held_event_holds_its_room_back_until_it_settles() {
        let (a_tx, a_rx) = broadcast::channel(8);
        let (b_tx, b_rx) = broadcast::channel(8);
        let mut subs = Subscriptions::default();
        subs.insert(RoomName::parse("a").unwrap(), a_rx);
        subs.insert(RoomName::parse("b").unwrap(), b_rx);
        let own = Arc::new(Event::pending(ServerMsg::Pong { token: None }, None));
        a_tx.send(Arc::clone(&own)).unwrap();
        a_tx.send(event(1)).unwrap();
        let Some(Delivery::Event(first)) = subs.try_next() else {
            panic!("nothing delivered");
        };
        assert!(Arc::ptr_eq(&first, &own));
        subs.hold(first);
        assert!(subs.holding());
        // Room a waits behind it; room b does not.
        b_tx.send(event(2)).unwrap();
        assert_eq!(n(subs.try_next().unwrap()), 2);
        assert!(subs.try_next().is_none());
        own.settle(Settled::Durable);
        let Some(Delivery::Event(again)) = subs.try_next() else {
            panic!("the held event did not come back");
        };
        assert!(Arc::ptr_eq(&again, &own));
        assert!(!subs.holding());
        assert_eq!(n(subs.try_next().unwrap()), 1);
    }
}
