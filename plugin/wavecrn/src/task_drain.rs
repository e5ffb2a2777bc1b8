//! Letting nice-plug's shared task thread catch up before a VST3 host may release the plugin.
//!
//! In VST3 on Linux, nice-plug hands the tasks the audio thread raises for the host's side (an
//! automated parameter's new value for the editor, the latency restart after a Mode change) to
//! one thread that every instance in the process shares. That thread stops for good when it
//! meets a task whose instance is already gone: from then on the other instances' tasks are
//! dropped (the host never hears of their latency changes), and releasing the last of them
//! aborts the host (nice-plug 0.4.2 panics where it cannot unwind). So an instance must not go
//! while tasks of its own are queued. A host releases a plugin only after deactivating it, and
//! no task comes once the audio thread has stopped, so `deactivate` queues a marker behind the
//! instance's tasks and waits, for a bounded time, until the thread has run it.
//!
//! CLAP hands such tasks to the host's own main thread, and the standalone has no host, so the
//! drain is used in VST3 only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nice_plug::prelude::AsyncExecutor;

use crate::Wavecrn;

/// How long `deactivate` waits at most. The queue's own tasks take microseconds each; what can
/// hold it up is a host that is slow in `restartComponent`, which runs on that thread.
pub const DRAIN_PATIENCE: Duration = Duration::from_secs(2);

/// What nice-plug names its shared task thread.
const SHARED_THREAD_NAME: &str = "bg-worker";

/// The plugin's one background task: a marker in the shared queue, set when the thread runs it.
pub struct QueueMarker(Arc<AtomicBool>);

impl QueueMarker {
    /// Called on the shared thread by the plugin's task executor.
    pub fn reached(self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Queues markers on the shared task thread through the executor nice-plug gives the editor.
#[derive(Default)]
pub struct TaskDrain {
    executor: Option<AsyncExecutor<Wavecrn>>,
}

impl TaskDrain {
    pub fn new(executor: AsyncExecutor<Wavecrn>) -> Self {
        Self {
            executor: Some(executor),
        }
    }

    /// Stops draining: for the formats that do not need it (see the module's documentation).
    /// It also drops the executor, which in the standalone holds the wrapper that holds us.
    pub fn disable(&mut self) {
        self.executor = None;
    }

    /// Waits until every task queued before this call has run, or `patience` has passed.
    /// Returns false where the marker did not come back in time. Not for the audio thread.
    pub fn wait(&self, patience: Duration) -> bool {
        let Some(executor) = &self.executor else {
            return true;
        };
        // A host that re-activates the plugin from inside `restartComponent` does it on the
        // shared thread itself, where the marker could only run after this returns.
        if std::thread::current().name() == Some(SHARED_THREAD_NAME) {
            return true;
        }
        let reached = Arc::new(AtomicBool::new(false));
        executor.execute_background(QueueMarker(reached.clone()));
        let until = Instant::now() + patience;
        while !reached.load(Ordering::Acquire) {
            if Instant::now() >= until {
                return false;
            }
            sleep(Duration::from_millis(1));
        }
        true
    }
}
