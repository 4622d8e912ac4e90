//! Shared state across processes: Value, Array, RawValue, RawArray.
procactor::test_support!();

mod common;

use common::watchdog;
use procactor::{Array, Error, Event, LockError, Process, RawArray, RawValue, Value};
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const N: u64 = 100_000;

fn add_locked((v, go): (Value<u64>, Event)) {
    // start together, so that the processes really contend
    assert!(go.wait_timeout(Duration::from_secs(30)));
    for _ in 0..N {
        *v.lock().unwrap() += 1;
    }
}

/// Starts four processes with `start(go)`, lets them go at once (so that they really
/// contend) and checks that each ends successfully.
fn four_together(start: impl Fn(&Event) -> Process<()>) {
    let go = Event::new().unwrap();
    let mut ps: Vec<_> = (0..4).map(|_| start(&go)).collect();
    std::thread::sleep(Duration::from_millis(50));
    go.set();
    for p in &mut ps {
        let s = p.join_timeout(Duration::from_secs(60)).ok();
        assert!(s.is_some_and(|s| s.success()), "{s:?}");
    }
}

#[test]
fn value_counts_exactly_under_contention() {
    watchdog(120, || {
        let v = Value::new(0u64).unwrap();
        four_together(|go| {
            Process::new(add_locked, (v.clone(), go.clone()))
                .start()
                .unwrap()
        });
        assert_eq!(v.get().unwrap(), 4 * N);
    });
}

/// Holds the value's lock until `release` is set (at most 20 s), writing the two halves
/// at either end of that time; returns what it sees just before letting go.
fn slow_update((v, held, release): (Value<[u64; 2]>, Event, Event)) -> [u64; 2] {
    let mut g = v.lock().unwrap();
    g[0] += 1;
    held.set();
    assert!(
        release.wait_timeout(Duration::from_secs(20)),
        "never released"
    );
    g[1] += 1;
    *g
}

/// Starts `slow_update` and returns once it holds the lock, with its release event.
fn start_holder(v: &Value<[u64; 2]>) -> (Process<[u64; 2]>, Event) {
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let p = Process::new(slow_update, (v.clone(), held.clone(), release.clone()))
        .start()
        .unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));
    (p, release)
}

/// Says it is about to take the lock (`asking`), then sets the value to `to` if given,
/// else gets it; returns what it set or got.
fn contend((v, asking, to): (Value<[u64; 2]>, Event, Option<[u64; 2]>)) -> [u64; 2] {
    asking.set();
    match to {
        Some(x) => {
            v.set(x).unwrap();
            x
        }
        None => v.get().unwrap(),
    }
}

/// Starts `contend` while a holder holds the lock; returns once the contender is asleep
/// waiting for it (it said it was asking, and sleeps on a futex: the lock's), failing if
/// it finished instead.
fn start_contender(v: &Value<[u64; 2]>, to: Option<[u64; 2]>) -> Process<[u64; 2]> {
    let asking = Event::new().unwrap();
    let p = Process::new(contend, (v.clone(), asking.clone(), to))
        .start()
        .unwrap();
    assert!(asking.wait_timeout(Duration::from_secs(20)));
    common::wait_until(
        Duration::from_secs(20),
        "the contender asleep on the lock",
        || !p.is_alive() || common::asleep_in_futex(p.pid()),
    );
    assert!(
        p.is_alive(),
        "the contender did not wait for the lock holder"
    );
    p
}

#[test]
fn get_and_set_wait_for_a_lock_holder_in_another_process() {
    watchdog(60, || {
        let v = Value::new([0u64; 2]).unwrap();
        // get: waits for the holder, never sees its half-done update
        let (mut p, release) = start_holder(&v);
        let mut c = start_contender(&v, None);
        release.set();
        assert_eq!(c.result().unwrap(), [1, 1]);
        assert_eq!(p.result().unwrap(), [1, 1]);
        // set: waits too, so it neither lands inside the holder's update nor is lost
        let (mut p, release) = start_holder(&v);
        let mut c = start_contender(&v, Some([7, 7]));
        release.set();
        assert_eq!(c.result().unwrap(), [7, 7]);
        assert_eq!(
            p.result().unwrap(),
            [2, 2],
            "the holder's update was interleaved"
        );
        assert_eq!(v.get().unwrap(), [7, 7]);
    });
}

fn times_ten((n, a): (Value<i32>, Array<i32>)) {
    n.set(n.get().unwrap() + 1).unwrap();
    let mut g = a.lock().unwrap();
    for x in g.iter_mut() {
        *x *= 10;
    }
}

#[test]
fn value_and_array_are_shared_with_children_in_turn() {
    watchdog(60, || {
        let n = Value::new(1i32).unwrap();
        let a = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
        for round in 1..=2 {
            let mut p = Process::new(times_ten, (n.clone(), a.clone()))
                .start()
                .unwrap();
            p.join().unwrap();
            assert_eq!(n.get().unwrap(), 1 + round);
            let k = 10i32.pow(round as u32);
            assert_eq!(a.to_vec(), (0..10).map(|i| i * k).collect::<Vec<_>>());
        }
    });
}

/// Out-of-range access inside a child is an error value there, never a panic.
fn poke(a: Array<u8>) -> (Option<u8>, bool, Option<u8>) {
    let set_ok = a.set(a.len(), 1).is_ok();
    (a.get(a.len()), set_ok, a.get(a.len() - 1))
}

#[test]
fn out_of_range_in_a_child_is_not_a_panic() {
    watchdog(60, || {
        let a = Array::from_slice(&[1u8, 2, 3]).unwrap();
        let mut p = Process::new(poke, a).start().unwrap();
        assert_eq!(p.result().unwrap(), (None, false, Some(3)));
    });
}

fn hold_value_forever((v, e): (Value<u32>, Event)) {
    let mut g = v.lock().unwrap();
    *g = 7; // a half-done update
    e.set();
    std::thread::sleep(Duration::from_secs(60));
    drop(g);
}

#[test]
fn value_owner_death_is_reported_and_the_lock_recovers() {
    watchdog(60, || {
        let v = Value::new(0u32).unwrap();
        let e = Event::new().unwrap();
        let mut p = Process::new(hold_value_forever, (v.clone(), e.clone()))
            .daemon(true)
            .start()
            .unwrap();
        assert!(
            e.wait_timeout(Duration::from_secs(30)),
            "child never locked"
        );
        assert!(v.try_lock().unwrap().is_none(), "held by a live child");
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        match v.lock_timeout(Duration::from_secs(20)) {
            Err(LockError::OwnerDied(g)) => assert_eq!(*g, 7),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10));
        // the lock is usable again, and clean
        assert!(v.lock_timeout(Duration::from_secs(5)).unwrap().is_some());
        assert_eq!(v.get().unwrap(), 7);
    });
}

fn array_owner_dies((a, e): (Array<u64>, Event)) {
    let _g = a.lock().unwrap();
    e.set();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn array_owner_death_is_reported() {
    watchdog(60, || {
        let a = Array::<u64>::zeroed(16).unwrap();
        let e = Event::new().unwrap();
        let mut p = Process::new(array_owner_dies, (a.clone(), e.clone()))
            .daemon(true)
            .start()
            .unwrap();
        assert!(e.wait_timeout(Duration::from_secs(30)));
        p.kill().unwrap();
        p.join().unwrap();
        let r = a.lock_timeout(Duration::from_secs(20));
        assert!(matches!(r, Err(LockError::OwnerDied(_))), "{r:?}");
        drop(r);
        assert_eq!(a.to_vec(), vec![0; 16]);
    });
}

fn atomic_adds(a: RawArray<u32>) {
    let cell = a.atomic_u32(1).unwrap();
    for _ in 0..N {
        cell.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn raw_array_atomics_count_exactly() {
    watchdog(60, || {
        let a = RawArray::<u32>::zeroed(2).unwrap();
        let mut ps: Vec<_> = (0..2)
            .map(|_| Process::new(atomic_adds, a.clone()).start().unwrap())
            .collect();
        for p in &mut ps {
            p.join().unwrap();
        }
        assert_eq!(
            a.atomic_u32(1).unwrap().load(Ordering::SeqCst),
            2 * N as u32
        );
        assert_eq!(a.atomic_u32(0).unwrap().load(Ordering::SeqCst), 0);
        assert!(a.atomic_u32(2).is_none());
        assert!(a.atomic_u64(0).is_none());
    });
}

fn raw_writer((v, a): (RawValue<f64>, RawArray<i16>)) {
    // SAFETY: the parent does not touch the memory until it has joined this process;
    // every index is below `len()`.
    unsafe {
        v.as_ptr().write(2.5);
        for i in 0..a.len() {
            let x = a.as_ptr().add(i).read();
            a.as_ptr().add(i).write(-x);
        }
    }
}

#[test]
fn raw_value_and_array_unsafe_access_across_processes() {
    watchdog(60, || {
        let v = RawValue::new(0.0f64).unwrap();
        let a = RawArray::from_slice(&[1i16, -2, 3]).unwrap();
        let mut p = Process::new(raw_writer, (v.clone(), a.clone()))
            .start()
            .unwrap();
        assert!(p.join().unwrap().success());
        // SAFETY: the only other process has exited.
        unsafe {
            assert_eq!(v.as_ptr().read(), 2.5);
            assert_eq!(
                std::slice::from_raw_parts(a.as_ptr(), a.len()),
                &[-1, 2, -3]
            );
        }
        assert_eq!(
            f64::from_bits(v.atomic_u64().unwrap().load(Ordering::SeqCst)),
            2.5
        );
    });
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Set(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..80).prop_map(Op::Get),
        (0usize..80, any::<i64>()).prop_map(|(i, v)| Op::Set(i, v)),
    ]
}

proptest! {
    #![proptest_config(common::proptest_config(64))]

    #[test]
    fn array_indexing_matches_a_vec(
        init in proptest::collection::vec(any::<i64>(), 0..40),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let a = Array::from_slice(&init).unwrap();
        let mut model = init.clone();
        prop_assert_eq!(a.len(), model.len());
        prop_assert_eq!(a.is_empty(), model.is_empty());
        for op in ops {
            match op {
                Op::Get(i) => prop_assert_eq!(a.get(i), model.get(i).copied()),
                Op::Set(i, v) => {
                    let r = a.set(i, v);
                    match model.get_mut(i) {
                        Some(x) => {
                            prop_assert!(r.is_ok());
                            *x = v;
                        }
                        None => {
                            let in_range = matches!(
                                r,
                                Err(Error::OutOfRange { index, len }) if index == i && len == model.len()
                            );
                            prop_assert!(in_range);
                        }
                    }
                }
            }
        }
        prop_assert_eq!(a.to_vec(), model.clone());
        prop_assert_eq!(&*a.lock().unwrap(), &model[..]);
        let raw = RawArray::from_slice(&init).unwrap();
        for i in 0..80 {
            // SAFETY: this is the only handle, no concurrent access; read only below len
            let got = (i < raw.len()).then(|| unsafe { raw.as_ptr().add(i).read() });
            prop_assert_eq!(got, init.get(i).copied());
            prop_assert_eq!(raw.atomic_u64(i).is_some(), i < init.len());
        }
    }
}

// ---- lock-free integers (issue 18, item 8)

const ADDS: u64 = 10_000;

fn add_atomically(v: RawValue<u64>, go: Event) {
    assert!(go.wait_timeout(Duration::from_secs(30)));
    for _ in 0..ADDS {
        v.fetch_add(1);
    }
}

#[test]
fn raw_value_fetch_add_is_exact_across_processes() {
    watchdog(120, || {
        let v = RawValue::new(0u64).unwrap();
        four_together(|go| {
            Process::new(add_atomically, (v.clone(), go.clone()))
                .start()
                .unwrap()
        });
        assert_eq!(v.load(), 4 * ADDS);
    });
}

/// Takes tickets 0, 1, 2, … with compare_exchange loops; returns the ones it won.
fn take_tickets((v, go, n): (RawValue<i32>, Event, i32)) -> Vec<i32> {
    assert!(go.wait_timeout(Duration::from_secs(30)));
    let mut won = Vec::new();
    loop {
        let cur = v.load();
        if cur >= n {
            return won;
        }
        if v.compare_exchange(cur, cur + 1) == Ok(cur) {
            won.push(cur);
        }
    }
}

#[test]
fn compare_exchange_hands_every_ticket_to_exactly_one_process() {
    watchdog(120, || {
        let v = RawValue::new(0i32).unwrap();
        let go = Event::new().unwrap();
        let n = 20_000;
        let mut ps: Vec<_> = (0..3)
            .map(|_| {
                Process::new(take_tickets, (v.clone(), go.clone(), n))
                    .start()
                    .unwrap()
            })
            .collect();
        go.set();
        let mut all: Vec<i32> = ps.iter_mut().flat_map(|p| p.result().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        assert_eq!(v.load(), n);
    });
}

#[test]
fn atomic_operations_have_std_semantics() {
    let v = RawValue::new(10i8).unwrap();
    let w: RawValue<i8> = v.clone();
    assert_eq!(
        v.compare_exchange(11, 0),
        Err(10),
        "no match: nothing written"
    );
    assert_eq!(w.load(), 10);
    assert_eq!(v.compare_exchange(10, -3), Ok(10));
    assert_eq!(w.load(), -3);
    assert_eq!(w.swap(7), -3);
    assert_eq!(v.fetch_sub(8), 7);
    assert_eq!(v.load(), -1);
    v.store(i8::MIN);
    assert_eq!(v.fetch_sub(1), i8::MIN);
    assert_eq!(v.load(), i8::MAX, "wraps as std's atomics do");
    assert_eq!(v.atomic().load(Ordering::Relaxed), i8::MAX);
    // every integer width
    let u = RawValue::new(usize::MAX).unwrap();
    assert_eq!(u.fetch_add(1), usize::MAX);
    assert_eq!(u.load(), 0);
    let s = RawValue::new(-5isize).unwrap();
    assert_eq!(s.swap(5), -5);
    let b = RawValue::new(200u8).unwrap();
    assert_eq!(b.fetch_add(100), 200);
    assert_eq!(b.load(), 44);
    let h = RawValue::new(1u16).unwrap();
    assert_eq!(h.compare_exchange(1, 2), Ok(1));
    let i = RawValue::new(0i64).unwrap();
    assert_eq!(i.fetch_sub(1), 0);
    assert_eq!(i.load(), -1);
    // per element of an integer RawArray
    let a = RawArray::<u32>::zeroed(2).unwrap();
    a.atomic(1).unwrap().fetch_add(9, Ordering::SeqCst);
    assert!(a.atomic(2).is_none());
    // SAFETY: single-threaded, no other process holds the array.
    assert_eq!(unsafe { a.as_ptr().add(1).read() }, 9);
}
