//! Writing moderation's documents off every lock, in order.
//!
//! A room's settings change where its events are applied, under the room's lock, which must
//! never wait for a disk: the new document is handed to one writer thread instead, which
//! writes what it is handed in order (so the last change of a key is the one kept). Such
//! writes are rare (a topic, a ban), so nothing is batched. A write that fails is logged
//! and the in-memory state stays right for this run; it is not retried.

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};

use tracing::warn;

use super::SettingsStore;

/// A cheap handle to the writer thread; the thread ends when the last handle is dropped,
/// after writing what it was handed.
#[derive(Debug, Clone)]
pub(crate) struct SettingsWriter {
    tx: Sender<Write>,
}

#[derive(Debug)]
enum Write {
    Put(String, Option<String>),
    /// Answered once everything before it is written (shutdown, tests).
    Flush(std::sync::mpsc::SyncSender<()>),
}

impl SettingsWriter {
    /// Starts the writer over `store`.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn start(store: Arc<dyn SettingsStore>) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Write>();
        std::thread::Builder::new()
            .name("chat-settings".into())
            .spawn(move || {
                for write in rx {
                    match write {
                        Write::Put(key, value) => {
                            if let Err(e) = store.put(&key, value.as_deref()) {
                                warn!(%key, error = %e, "cannot store moderation settings");
                            }
                        }
                        Write::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Queues `value` for `key` (`None` deletes it). Never blocks.
    pub(crate) fn put(&self, key: String, value: Option<String>) {
        // Gone only when the process is ending.
        let _ = self.tx.send(Write::Put(key, value));
    }

    /// Waits until everything queued so far is written.
    pub(crate) fn flush(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Write::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}
