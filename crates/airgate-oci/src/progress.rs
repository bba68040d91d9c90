//! Progress of long transfers, as counters any front end can show.
//!
//! The adapter only counts bytes; the binary decides whether and how to draw
//! (a bar on a terminal, nothing in a pipe) through an observer.

use std::sync::atomic::{AtomicU64, Ordering};

type Observer = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Bytes done out of a total, shared by every task of one transfer.
#[derive(Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("done", &self.done())
            .field("total", &self.total())
            .finish()
    }
}

impl Progress {
    /// Calls `observer(done, total)` on every change.
    pub fn with_observer(observer: impl Fn(u64, u64) + Send + Sync + 'static) -> Progress {
        Progress {
            observer: Some(Box::new(observer)),
            ..Progress::default()
        }
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.notify();
    }

    pub fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        self.notify();
    }

    /// Starts counting again from zero (a second phase of the same command).
    pub fn reset(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.set_total(total);
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn notify(&self) {
        if let Some(o) = &self.observer {
            o(self.done(), self.total());
        }
    }
}
