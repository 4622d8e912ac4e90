//! A `Manager().Lock()` shared with `Pool` workers through the pool's initializer, guarding
//! a read-modify-write of a counter in a manager `Namespace` (issue 18: without a manager
//! lock, 4 workers × 5 increments ended at 12 instead of 20).
//!
//! Each of 4 tasks increments `ns.n` 5 times: it reads the value, pauses (so that the
//! workers interleave), and writes it back plus one. First without the lock, then under
//! it.
//!
//! Prints `without a lock: n = …` (usually less than 20: increments are lost) and then
//! `with the manager lock: n = 20`.
//!
//! Run: `cargo run --example manager_lock_pool`

use procactor::{Manager, Namespace, Pool, SharedLock};
use std::sync::OnceLock;
use std::time::Duration;

/// The worker's proxies, set by [`init`] once per worker process.
static SHARED: OnceLock<(SharedLock, Namespace)> = OnceLock::new();

fn init(shared: (SharedLock, Namespace)) {
    let _ = SHARED.set(shared);
}

fn add_five(locked: bool) {
    let (lock, ns) = SHARED.get().expect("set by the initializer");
    for _ in 0..5 {
        let guard = if locked {
            Some(lock.acquire().expect("acquire"))
        } else {
            None
        };
        let n: u32 = ns.get("n").expect("get");
        std::thread::sleep(Duration::from_millis(10));
        ns.set("n", &(n + 1)).expect("set");
        drop(guard); // released here (and by the server if this worker died)
    }
}

#[procactor::main]
fn main() {
    let manager = Manager::start().expect("manager");
    let lock = manager.lock().expect("lock");
    let ns = manager.namespace().expect("namespace");
    let pool = Pool::builder()
        .processes(4)
        .initializer(init, (lock, ns.clone()))
        .build()
        .expect("pool");
    for locked in [false, true] {
        ns.set("n", &0u32).expect("set");
        pool.map_chunksize(add_five, [locked; 4], 1).expect("map");
        let n: u32 = ns.get("n").expect("get");
        if locked {
            assert_eq!(n, 20);
            println!("with the manager lock: n = {n}");
        } else {
            println!("without a lock: n = {n}");
        }
    }
}
