//! Hostile, frozen and starved peers (issue 20): a child that misbehaves with the handles
//! it was given cannot crash, hang or fool the processes it shares them with.
//!
//! Each scenario runs its "victim" in a child process of the test (so that a `SIGBUS`, a
//! panic or a hang in the victim shows as a failed exit status, not as a dead test
//! binary); the victim starts the hostile process, then checks that it keeps running, gets
//! a clear error or the right value, and that its other objects keep working.
procactor::test_support!();

mod common;

use common::watchdog;
use procactor::{Array, Barrier, Event, Lock, LockError, Process, Queue, Value};
use std::time::Duration;

/// Runs `victim` in its own process and requires it to exit successfully within `secs`.
fn in_victim(victim: fn(()), secs: u64) {
    watchdog(secs + 30, move || {
        let mut p = Process::new(victim, ()).start().unwrap();
        let s = p.join_timeout(Duration::from_secs(secs)).unwrap();
        if s.is_none() {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(10));
        }
        assert!(
            s.is_some_and(|s| s.success()),
            "the victim process did not end well: {s:?} (signal 7 is SIGBUS)"
        );
    });
}

/// The shared-memory files this process holds (`/proc/self/fd/N` links to
/// `/memfd:procactor:...`), as paths that reopen them.
fn my_shared_memory_files() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with("/memfd:procactor") {
            out.push(e.path().to_string_lossy().into_owned());
        }
    }
    out
}

type Objects = (Value<u64>, Array<u32>, Lock, Queue<String>, Event, Barrier);

fn objects() -> Objects {
    (
        Value::new(41).unwrap(),
        Array::from_slice(&[1, 2, 3]).unwrap(),
        Lock::new().unwrap(),
        Queue::new().unwrap(),
        Event::new().unwrap(),
        Barrier::new(1).unwrap(),
    )
}

/// Hostile: reopens every shared memory file it holds for writing, grows it, shrinks it
/// and truncates it to nothing (which, unsealed, makes every other mapping of it fault
/// with `SIGBUS` on its next touch). Reports how many files it found and how many resizes the
/// kernel allowed.
fn truncate_everything(objs: Objects) -> (usize, usize) {
    let files = my_shared_memory_files();
    let mut allowed = 0;
    for f in &files {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(f) else {
            continue;
        };
        for len in [1u64 << 30, 1, 0] {
            if file.set_len(len).is_ok() {
                allowed += 1;
            }
        }
    }
    drop(objs);
    (files.len(), allowed)
}

/// Uses every object once and checks the results.
fn use_all(o: &Objects, value: u64) {
    let (v, a, l, q, e, b) = o;
    assert_eq!(v.get(), value);
    v.set(value + 1);
    assert_eq!(a.to_vec(), vec![1, 2, 3]);
    drop(l.acquire_timeout(Duration::from_secs(5)).unwrap());
    q.put("hello".into()).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "hello");
    e.set();
    assert!(e.wait_timeout(Duration::from_secs(1)));
    assert_eq!(b.wait_timeout(Duration::from_secs(5)).unwrap(), 0);
}

fn victim_truncated((): ()) {
    let o = objects();
    use_all(&o, 41);
    let mut h = Process::new(truncate_everything, o.clone()).start().unwrap();
    assert!(h.join_timeout(Duration::from_secs(60)).unwrap().is_some());
    let (found, allowed) = h.result().unwrap();
    assert!(found >= 6, "the hostile child held only {found} shared files");
    // every page of every object still there: no SIGBUS
    use_all(&o, 42);
    assert_eq!(allowed, 0, "the kernel let a peer resize shared memory");
}

#[test]
fn a_child_cannot_truncate_or_grow_shared_memory_under_its_parent() {
    in_victim(victim_truncated, 120);
}
