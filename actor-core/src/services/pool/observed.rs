//! What a [`Pool`](super::Pool) shows its observer (`crate::observe`): its name, the
//! chunks pending, and per worker slot its pid, the tasks it finished and failed, its
//! restarts, the time its chunks took, and its process's memory and CPU.
//!
//! The counts and the histogram are the worker's own, written in its cell by the worker
//! process (`worker::Stats`); they belong to the slot, so they add up across the
//! processes that held it. Restarts are counted by the pool when it installs a
//! replacement (a worker that died or was recycled by `maxtasksperchild`).

use super::inner::Inner;
use super::wire::{CELL_ERRORS, CELL_TASKS, CELL_TASK_TIME};
use crate::observe::PoolSource;
use crate::stats::{read_histogram, PoolSnapshot, PoolWorkerSnapshot};
use std::sync::atomic::Ordering;

impl PoolSource for Inner {
    fn snapshot(&self) -> PoolSnapshot {
        let (pending, mut workers) = {
            let st = self.lock();
            let workers: Vec<PoolWorkerSnapshot> = st
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let word = |k: usize| {
                        w.cell
                            .atomic_u64(k)
                            .map_or(0, |a| a.load(Ordering::Relaxed))
                    };
                    PoolWorkerSnapshot {
                        index: i as u32,
                        pid: w.proc.as_ref().map(|p| p.pid()),
                        tasks: word(CELL_TASKS),
                        errors: word(CELL_ERRORS),
                        restarts: w.restarts,
                        task_time: read_histogram(|i| word(CELL_TASK_TIME + i)),
                        usage: None,
                    }
                })
                .collect();
            (st.pending.len() as u64, workers)
        };
        // (/proc is read without the pool's lock: submitters never wait for it)
        for w in &mut workers {
            w.usage = w.pid.and_then(|pid| crate::observe::usage(Some(pid)));
        }
        PoolSnapshot {
            name: self.name.clone(),
            pending,
            workers,
        }
    }
}
