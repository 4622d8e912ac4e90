//! Test-only fault injection (hidden, not part of the API; only with the `test-hooks`
//! feature, which the workspace's own tests turn on): makes the pool's own
//! operations fail as the OS or a broken worker could, so that tests can show that no
//! task is stranded when they do (the pool's side: [`Pool::fail_next_frame_writes`](super::Pool::fail_next_frame_writes),
//! [`Pool::fail_next_ring_puts`](super::Pool::fail_next_ring_puts)). Each counter is "the next `n` such operations fail".
use std::sync::atomic::{AtomicUsize, Ordering};

/// "The next `n` such operations fail".
pub(super) struct Counter(AtomicUsize);

impl Counter {
    pub(super) const fn new() -> Self {
        Counter(AtomicUsize::new(0))
    }

    pub(super) fn set(&self, n: usize) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Whether the next operation counted here fails (counting it down).
    pub(super) fn hit(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
            && self
                .0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
    }
}

pub(super) static RESULTS: Counter = Counter::new();

/// Called from a task, in a worker: the next `n` results this worker sends are
/// garbage the pool cannot decode.
pub fn send_garbage_results(n: usize) {
    RESULTS.set(n);
}
