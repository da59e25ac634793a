//! The runtime HTTP (file transfers) is served on, apart from the chat's.
//!
//! A transfer is bulk work: hyper moving a GiB through its buffers, hashing it twice,
//! writing or reading it. On the chat's workers it competes with deliveries for the same
//! threads, and a room's latency follows the transfer's speed (F1 measured a room's p99 at
//! 2–5 × its p99 without one). Here it has threads of its own, workers and blocking pool
//! alike, and on Linux they run as `SCHED_BATCH` at a lower CPU priority (`--files-nice`):
//! when both want a core, the chat gets it, and a transfer runs at full speed on whatever
//! the chat leaves. With `--files-nice 0` they are ordinary threads.
//!
//! Its tasks still use sockets made on the chat's runtime (accepted and sniffed there);
//! tokio's I/O resources may be polled from any runtime while their own one runs.

use std::io;

use tokio::runtime::{Handle, Runtime};
use tracing::warn;

/// The transfers' runtime; dropping it ends whatever still runs on it.
#[derive(Debug)]
pub(crate) struct Bulk {
    runtime: Option<Runtime>,
}

impl Bulk {
    /// Starts the runtime; its threads run at `nice` (0: the chat's own priority).
    ///
    /// # Errors
    /// The runtime's threads could not be started.
    pub(crate) fn start(nice: i32) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("chat-files")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is there until dropped")
            .handle()
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        // Not a blocking shutdown: the server drops it from async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers this thread's CPU priority to `nice` (Linux gives each thread its own).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SCHED_BATCH: the scheduler treats these threads as CPU-bound, so a chat thread that
    // wakes up preempts them sooner, and they get longer slices when nothing else runs
    // (throughput). Any thread may ask for it.
    let batch = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain integers and a parameter that outlives the call. On Linux, `who` 0 is
    // the calling thread, not the whole process, for both calls.
    let failed = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const batch) != 0
            || libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0
    };
    if failed {
        warn!(
            error = %io::Error::last_os_error(),
            "file transfers run at the chat's priority: their thread's could not be lowered"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_threads_run_at_the_lower_priority() {
        let bulk = Bulk::start(7).unwrap();
        // SAFETY (both): getpriority takes plain integers.
        let seen = bulk.handle().block_on(async {
            tokio::spawn(async { unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } })
                .await
                .unwrap()
        });
        assert_eq!(seen, 7, "a worker's nice value");
        let blocking = bulk.handle().block_on(async {
            tokio::task::spawn_blocking(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
                .await
                .unwrap()
        });
        assert_eq!(blocking, 7, "a blocking thread's nice value");
        let policy = bulk.handle().block_on(async {
            tokio::spawn(async { unsafe { libc::sched_getscheduler(0) } })
                .await
                .unwrap()
        });
        assert_eq!(policy, libc::SCHED_BATCH, "a worker's scheduling policy");
    }
}
