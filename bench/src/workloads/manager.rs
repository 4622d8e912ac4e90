//! Manager workloads: procactor's side of insert + get round trips on a manager's shared
//! dict, from a child process over the local shared-memory rings (`manager_dict_ops`), and
//! from this process over loopback TCP to a listening manager (`manager_remote_ops`),
//! and acquire + release of a manager lock from a child (`manager_lock_ops`, over the
//! server's local socket: one round trip each).
//! Each insert and each get is one operation (one round trip to the server). Starting the
//! manager and the child, connecting and a short warm-up are not timed. The Python twins
//! (`multiprocessing.Manager().dict()` in a child; a `BaseManager` server on 127.0.0.1
//! with an authkey and a client) are in `bench/manager_bench.py`.

use procactor::{Manager, Process, SharedDict, SharedLock};
use std::time::Instant;

/// Untimed operations before the timed ones (connections made, pages touched).
pub(crate) const WARM_UP: u64 = 1_000;

/// The number of distinct keys the operations cycle through.
const KEYS: u64 = 1_000;

/// The authkey of the listening manager.
const AUTHKEY: &[u8] = b"procactor bench key";

/// `ops` operations on `d`: alternately `insert(i % KEYS, i)` and `get(&(i % KEYS))`,
/// each get checked. Returns the seconds taken.
fn insert_get(d: &SharedDict<u64, u64>, ops: u64) -> f64 {
    let t0 = Instant::now();
    for i in 0..ops / 2 {
        let k = i % KEYS;
        d.insert(k, i).expect("insert");
        let got = d.get(&k).expect("get");
        assert_eq!(got, Some(i), "the value just inserted");
    }
    t0.elapsed().as_secs_f64()
}

/// The child of [`manager_dict_ops`]: warms up, then times `ops` operations.
fn dict_child((d, ops): (SharedDict<u64, u64>, u64)) -> f64 {
    insert_get(&d, WARM_UP);
    insert_get(&d, ops)
}

/// A child process does `n` operations (`n / 2` insert + get round trips) on a
/// `Manager::start()` dict passed in its arguments. Returns operations per second.
pub(crate) fn manager_dict_ops(n: u64) -> f64 {
    let ops = n.max(2) & !1;
    let mgr = Manager::start().expect("manager");
    let d = mgr.dict::<u64, u64>().expect("dict");
    let mut p = Process::new(dict_child, (d.clone(), ops))
        .start()
        .expect("start");
    let secs = p.result().expect("child result");
    assert_eq!(d.len().expect("len") as u64, KEYS.min(WARM_UP.max(ops) / 2));
    mgr.shutdown().expect("shutdown");
    ops as f64 / secs
}

/// This process does `n` operations (`n / 2` insert + get round trips) on a named dict
/// of a manager listening on 127.0.0.1, through `Manager::connect` (TCP, after the HMAC
/// handshake). Returns operations per second.
pub(crate) fn manager_remote_ops(n: u64) -> f64 {
    let ops = n.max(2) & !1;
    let mgr = Manager::builder()
        .listen("127.0.0.1:0")
        .authkey(AUTHKEY)
        .start()
        .expect("listening manager");
    let address = mgr.address().expect("address");
    let secs = {
        let remote = Manager::connect(&address, AUTHKEY).expect("connect");
        let d = remote.dict_named::<u64, u64>("bench").expect("dict");
        insert_get(&d, WARM_UP);
        insert_get(&d, ops)
    };
    mgr.shutdown().expect("shutdown");
    ops as f64 / secs
}

/// `cycles` acquire + release pairs on `l`. Returns the seconds taken.
fn acquire_release(l: &SharedLock, cycles: u64) -> f64 {
    let t0 = Instant::now();
    for _ in 0..cycles {
        let g = l.acquire().expect("acquire");
        g.release().expect("release");
    }
    t0.elapsed().as_secs_f64()
}

/// The child of [`manager_lock_ops`]: warms up, then times `ops / 2` cycles.
fn lock_child((l, ops): (SharedLock, u64)) -> f64 {
    acquire_release(&l, WARM_UP / 2);
    acquire_release(&l, ops / 2)
}

/// A child process does `n` operations (`n / 2` acquire + release pairs, each one round
/// trip) on a `Manager::start()` lock passed in its arguments. Returns operations per
/// second.
pub(crate) fn manager_lock_ops(n: u64) -> f64 {
    let ops = n.max(2) & !1;
    let mgr = Manager::start().expect("manager");
    let l = mgr.lock().expect("lock");
    let mut p = Process::new(lock_child, (l.clone(), ops))
        .start()
        .expect("start");
    let secs = p.result().expect("child result");
    assert!(!l.is_locked().expect("is_locked"), "every acquire released");
    mgr.shutdown().expect("shutdown");
    ops as f64 / secs
}
