//! The Manager proxies' async face (`_async` methods) against a real server process,
//! under tokio (`current_thread`, `multi_thread`) and `futures::executor::block_on`:
//! dicts, lists, namespaces, values and arrays (local rings and a remote TCP client),
//! every synchronisation object and queue with a child process on the other side,
//! cancellation (a dropped `acquire_async` holds nothing, a dropped `get_async` loses
//! no item), a thousand pending futures on few threads (here and at the server), and a
//! server killed or frozen under pending futures.

procactor::test_support!();

mod common;

use common::aio::{on_each_executor, poll_once, sleep, within, Exec};
use common::{proc_status_field, wait_until, watchdog};
use procactor::{
    Manager, ManagerError, Namespace, Process, SharedBarrier, SharedCondition, SharedDict,
    SharedEvent, SharedJoinableQueue, SharedLock, SharedQueue,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// `f`, which must finish within [`LONG`].
async fn must<F: std::future::Future>(exec: Exec, f: F) -> F::Output {
    within(exec, LONG, f).await.expect("an async call hung")
}

fn threads_of(pid: &str) -> u64 {
    proc_status_field(pid, "Threads")
}

fn kill(pid: u32, sig: &str) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

// ------------------------------------------------------------------ data proxies

fn child_writes(d: SharedDict<String, u32>) {
    d.insert("child".into(), 7).unwrap();
}

async fn data_ops(exec: Exec, mgr: &Manager, tag: &str) {
    let d = mgr.dict::<String, u32>().unwrap();
    assert_eq!(
        must(exec, d.insert_async("a".into(), 1)).await.unwrap(),
        None
    );
    assert_eq!(
        must(exec, d.insert_async("a".into(), 2)).await.unwrap(),
        Some(1)
    );
    must(
        exec,
        d.update_async([("b".to_string(), 3), ("c".to_string(), 4)]),
    )
    .await
    .unwrap();
    assert_eq!(must(exec, d.get_async(&"a".into())).await.unwrap(), Some(2));
    assert_eq!(must(exec, d.get_async(&"zz".into())).await.unwrap(), None);
    assert!(must(exec, d.contains_key_async(&"b".into())).await.unwrap());
    assert_eq!(must(exec, d.len_async()).await.unwrap(), 3);
    assert_eq!(must(exec, d.keys_async()).await.unwrap(), ["a", "b", "c"]);
    assert_eq!(must(exec, d.values_async()).await.unwrap(), [2, 3, 4]);
    assert_eq!(
        must(exec, d.items_async()).await.unwrap(),
        [("a".to_string(), 2), ("b".into(), 3), ("c".into(), 4)]
    );
    assert_eq!(
        must(exec, d.remove_async(&"b".into())).await.unwrap(),
        Some(3)
    );
    // what the blocking proxy sees, and what another process wrote
    assert_eq!(d.get(&"c".into()).unwrap(), Some(4));
    let mut p = Process::new(child_writes, d.clone()).start().unwrap();
    p.join_timeout(LONG).unwrap();
    assert_eq!(
        must(exec, d.get_async(&"child".into())).await.unwrap(),
        Some(7)
    );
    must(exec, d.clear_async()).await.unwrap();
    assert_eq!(must(exec, d.len_async()).await.unwrap(), 0);

    let l = mgr.list::<u32>().unwrap();
    must(exec, l.push_async(1)).await.unwrap();
    must(exec, l.extend_async([2, 3, 4])).await.unwrap();
    must(exec, l.set_async(0, 10)).await.unwrap();
    assert_eq!(must(exec, l.get_async(0)).await.unwrap(), Some(10));
    assert_eq!(must(exec, l.get_async(9)).await.unwrap(), None);
    assert_eq!(must(exec, l.pop_async()).await.unwrap(), Some(4));
    must(exec, l.insert_async(1, 7)).await.unwrap();
    assert_eq!(must(exec, l.remove_async(1)).await.unwrap(), 7);
    assert!(matches!(
        must(exec, l.remove_async(99)).await,
        Err(ManagerError::Refused(_))
    ));
    assert_eq!(must(exec, l.len_async()).await.unwrap(), 3);
    assert_eq!(must(exec, l.to_vec_async()).await.unwrap(), [10, 2, 3]);
    assert!(matches!(
        must(exec, l.set_async(50, 1)).await,
        Err(ManagerError::Refused(_))
    ));
    must(exec, l.clear_async()).await.unwrap();
    assert_eq!(l.len().unwrap(), 0);

    let ns: Namespace = mgr.namespace().unwrap();
    must(exec, ns.set_async("x", &tag.to_string()))
        .await
        .unwrap();
    assert_eq!(must(exec, ns.get_async::<String>("x")).await.unwrap(), tag);
    assert!(matches!(
        must(exec, ns.get_async::<String>("nope")).await,
        Err(ManagerError::Refused(_))
    ));
    assert!(matches!(
        must(exec, ns.get_async::<u32>("x")).await,
        Err(ManagerError::Decode(_))
    ));
    assert_eq!(must(exec, ns.names_async()).await.unwrap(), ["x"]);
    assert!(must(exec, ns.remove_async("x")).await.unwrap());

    let v = mgr.value(5u64).unwrap();
    must(exec, v.set_async(6)).await.unwrap();
    assert_eq!(must(exec, v.get_async()).await.unwrap(), 6);
    let a = mgr.array(vec![1u8, 2, 3]).unwrap();
    must(exec, a.set_async(1, 20)).await.unwrap();
    assert_eq!(must(exec, a.get_async(1)).await.unwrap(), Some(20));
    assert_eq!(must(exec, a.len_async()).await.unwrap(), 3);
    assert_eq!(must(exec, a.to_vec_async()).await.unwrap(), [1, 20, 3]);
}

#[test]
fn data_proxies_async_on_a_local_and_a_remote_manager() {
    procactor::init();
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        let server = Manager::builder()
            .listen("127.0.0.1:0")
            .authkey(b"async-key".to_vec())
            .start()
            .unwrap();
        let remote = Manager::connect(&server.address().unwrap(), b"async-key").unwrap();
        on_each_executor(|exec| {
            let (mgr, remote) = (&mgr, &remote);
            async move {
                data_ops(exec, mgr, "local").await;
                data_ops(exec, remote, "remote").await;
            }
        });
    });
}

// ------------------------------------------------------------------ sync objects

fn set_later(e: SharedEvent) {
    std::thread::sleep(Duration::from_millis(100));
    e.set().unwrap();
}

fn hold_lock((l, e): (SharedLock, SharedEvent)) {
    let g = l.acquire().unwrap();
    e.set().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(g);
}

fn try_lock_in_child(l: SharedLock) {
    // exits 0 only if it gets the lock
    let g = l.acquire_timeout(Duration::from_secs(10)).unwrap();
    assert!(g.is_some(), "the lock stayed held");
}

fn produce((q, n): (SharedQueue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn consume_sum((q, d, n): (SharedQueue<u64>, SharedDict<String, u64>, u64)) {
    let mut s = 0;
    for _ in 0..n {
        s += q.get().unwrap();
    }
    d.insert("sum".into(), s).unwrap();
}

fn work_off(q: SharedJoinableQueue<u32>) {
    for _ in 0..5 {
        q.get().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        q.task_done().unwrap();
    }
}

fn notify_when_ready((c, ns): (SharedCondition, Namespace)) {
    std::thread::sleep(Duration::from_millis(50));
    let g = c.acquire().unwrap();
    ns.set("ready", &true).unwrap();
    c.notify_all().unwrap();
    drop(g);
}

fn barrier_party(b: SharedBarrier) {
    b.wait_timeout(Duration::from_secs(20)).unwrap();
}

async fn sync_ops(exec: Exec, mgr: &Manager) {
    // event: set by a child
    let e = mgr.event().unwrap();
    assert!(!must(exec, e.is_set_async()).await.unwrap());
    let mut p = Process::new(set_later, e.clone()).start().unwrap();
    must(exec, e.wait_async()).await.unwrap();
    assert!(must(exec, e.is_set_async()).await.unwrap());
    must(exec, e.clear_async()).await.unwrap();
    assert!(!e.is_set().unwrap());
    must(exec, e.set_async()).await.unwrap();
    assert!(e.is_set().unwrap());
    p.join_timeout(LONG).unwrap();

    // lock: held by a child for a while, then ours; dropped, a child gets it
    let (l, held) = (mgr.lock().unwrap(), mgr.event().unwrap());
    let mut p = Process::new(hold_lock, (l.clone(), held.clone()))
        .start()
        .unwrap();
    must(exec, held.wait_async()).await.unwrap();
    let t = Instant::now();
    let g = must(exec, l.acquire_async()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
    assert!(must(exec, l.is_locked_async()).await.unwrap());
    p.join_timeout(LONG).unwrap();
    drop(g);
    let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
    assert!(p.join_timeout(LONG).unwrap().success());

    // a guard released explicitly
    let g = must(exec, l.acquire_async()).await.unwrap();
    g.release().unwrap();
    assert!(l
        .acquire_timeout(Duration::from_secs(10))
        .unwrap()
        .is_some());

    // semaphore: two units, a third acquisition waits for a guard to go
    let s = mgr.semaphore(2).unwrap();
    let g1 = must(exec, s.acquire_async()).await.unwrap();
    let _g2 = must(exec, s.acquire_async()).await.unwrap();
    assert!(within(exec, Duration::from_millis(100), s.acquire_async())
        .await
        .is_none());
    drop(g1);
    let _g3 = must(exec, s.acquire_async()).await.unwrap();
    assert_eq!(must(exec, s.value_async()).await.unwrap(), 0);

    // rlock: each async guard is its own owner (a second one waits for the first)
    let r = mgr.rlock().unwrap();
    let g = must(exec, r.acquire_async()).await.unwrap();
    assert!(must(exec, r.is_locked_async()).await.unwrap());
    assert!(within(exec, Duration::from_millis(100), r.acquire_async())
        .await
        .is_none());
    drop(g);
    drop(must(exec, r.acquire_async()).await.unwrap());

    // condition: a child notifies under the lock; the predicate is checked with it held
    let (c, ns) = (mgr.condition().unwrap(), mgr.namespace().unwrap());
    ns.set("ready", &false).unwrap();
    let mut g = must(exec, c.acquire_async()).await.unwrap();
    let mut p = Process::new(notify_when_ready, (c.clone(), ns.clone()))
        .start()
        .unwrap();
    while !ns.get::<bool>("ready").unwrap() {
        g = must(exec, c.wait_async(g)).await.unwrap();
    }
    must(exec, c.notify_all_async(&g)).await.unwrap();
    drop(g);
    p.join_timeout(LONG).unwrap();
    // a guard of another object is refused
    let other = must(exec, l.acquire_async()).await.unwrap();
    assert!(matches!(
        must(exec, c.wait_async(other)).await,
        Err(ManagerError::Refused(_))
    ));

    // barrier: with a child
    let b = mgr.barrier(2).unwrap();
    assert_eq!(must(exec, b.parties_async()).await.unwrap(), 2);
    assert_eq!(must(exec, b.n_waiting_async()).await.unwrap(), 0);
    let mut p = Process::new(barrier_party, b.clone()).start().unwrap();
    let i = must(exec, b.wait_async()).await.unwrap();
    assert!(i < 2);
    assert!(p.join_timeout(LONG).unwrap().success());
    must(exec, b.abort_async()).await.unwrap();
    assert!(must(exec, b.is_broken_async()).await.unwrap());
    assert!(matches!(
        must(exec, b.wait_async()).await,
        Err(ManagerError::BrokenBarrier)
    ));
    must(exec, b.reset_async()).await.unwrap();
    assert!(!must(exec, b.is_broken_async()).await.unwrap());

    // queue: a child produces, we get; we put into a bounded queue a child drains
    let q = mgr.queue::<u64>().unwrap();
    let mut p = Process::new(produce, (q.clone(), 200)).start().unwrap();
    let mut sum = 0;
    for _ in 0..200 {
        sum += must(exec, q.get_async()).await.unwrap();
    }
    assert_eq!(sum, 199 * 200 / 2);
    assert_eq!(must(exec, q.len_async()).await.unwrap(), 0);
    p.join_timeout(LONG).unwrap();
    let (bq, out) = (mgr.queue_bounded::<u64>(1).unwrap(), mgr.dict().unwrap());
    let mut p = Process::new(consume_sum, (bq.clone(), out.clone(), 50))
        .start()
        .unwrap();
    for i in 0..50 {
        must(exec, bq.put_async(i)).await.unwrap();
    }
    p.join_timeout(LONG).unwrap();
    assert_eq!(out.get(&"sum".into()).unwrap(), Some(49 * 50 / 2));

    // joinable queue: a child does the work, join_async waits for it
    let jq = mgr.joinable_queue::<u32>().unwrap();
    for i in 0..5 {
        must(exec, jq.put_async(i)).await.unwrap();
    }
    let mut p = Process::new(work_off, jq.clone()).start().unwrap();
    must(exec, jq.join_async()).await.unwrap();
    p.join_timeout(LONG).unwrap();
    must(exec, jq.put_async(9)).await.unwrap();
    assert_eq!(must(exec, jq.get_async()).await.unwrap(), 9);
    must(exec, jq.task_done_async()).await.unwrap();
    must(exec, jq.join_async()).await.unwrap();
    assert!(matches!(
        must(exec, jq.task_done_async()).await,
        Err(ManagerError::Refused(_))
    ));
}

#[test]
fn synchronisation_objects_and_queues_async_with_children() {
    procactor::init();
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        on_each_executor(|exec| {
            let mgr = &mgr;
            async move { sync_ops(exec, mgr).await }
        });
    });
}

/// The object number a guard shows (its `Debug`).
fn guard_id(g: &procactor::ManagerAsyncGuard) -> String {
    let d = format!("{g:?}");
    let at = d.find("id: ").expect("the guard shows its object") + 4;
    d[at..].chars().take_while(char::is_ascii_digit).collect()
}

#[test]
fn a_guard_of_another_managers_object_with_the_same_number_is_refused() {
    procactor::init();
    watchdog(120, || {
        // (two fresh managers number their first objects alike)
        let (m1, m2) = (Manager::start().unwrap(), Manager::start().unwrap());
        let (c1, c2) = (m1.condition().unwrap(), m2.condition().unwrap());
        on_each_executor(|exec| {
            let (c1, c2) = (c1.clone(), c2.clone());
            async move {
                let g = must(exec, c1.acquire_async()).await.unwrap();
                let g2 = must(exec, c2.acquire_async()).await.unwrap();
                assert_eq!(guard_id(&g), guard_id(&g2), "{g:?} {g2:?}");
                drop(g2);
                assert!(matches!(
                    must(exec, c2.notify_async(&g, 1)).await,
                    Err(ManagerError::Refused(_))
                ));
                assert!(matches!(
                    must(exec, c2.wait_async(g)).await,
                    Err(ManagerError::Refused(_))
                ));
                // (the guard went with the refusal: c1's lock is free)
                drop(must(exec, c1.acquire_async()).await.unwrap());
            }
        });
    });
}

// ------------------------------------------------------------------ cancellation

#[test]
fn a_dropped_acquire_async_holds_nothing() {
    procactor::init();
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        let l = mgr.lock().unwrap();
        on_each_executor(|exec| {
            let l = l.clone();
            async move {
                // given up while another holds it
                let g = l.acquire().unwrap();
                for _ in 0..5 {
                    assert!(within(exec, Duration::from_millis(5), l.acquire_async())
                        .await
                        .is_none());
                }
                drop(g);
                // given up around the moment it is granted: a thread takes and lets go
                // of the lock in a loop while futures with tiny timeouts try
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let l2 = l.clone();
                let stop2 = stop.clone();
                let toggler = std::thread::spawn(move || {
                    while !stop2.load(Ordering::Relaxed) {
                        if let Some(g) = l2.acquire_timeout(Duration::from_secs(10)).unwrap() {
                            std::thread::sleep(Duration::from_millis(2));
                            drop(g);
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                });
                let (mut got, mut gave_up) = (0, 0);
                for i in 0..300u64 {
                    let d = Duration::from_micros(50 + (i * 37) % 1200);
                    match within(exec, d, l.acquire_async()).await {
                        Some(g) => {
                            drop(g.unwrap());
                            got += 1;
                        }
                        None => gave_up += 1,
                    }
                }
                stop.store(true, Ordering::Relaxed);
                toggler.join().unwrap();
                eprintln!("{got} acquired, {gave_up} given up");
                // (how many are given up depends on the timer's granularity and the
                // machine's load; the withdrawals while it is held are above)
                assert!(got > 0, "{got} acquired, {gave_up} given up");
                // nothing is left held: another process gets it
                let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
                assert!(p.join_timeout(LONG).unwrap().success());
                assert!(!l.is_locked().unwrap());
            }
        });
    });
}

fn produce_slowly((q, n): (SharedQueue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
        std::thread::sleep(Duration::from_micros(700));
    }
}

#[test]
fn a_dropped_get_async_loses_no_item() {
    procactor::init();
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        on_each_executor(|exec| {
            let q = mgr.queue::<u64>().unwrap();
            async move {
                let n = 300;
                // gets given up for certain: the queue is empty and nobody produces
                // yet, so each of these requests is parked at the server and then
                // withdrawn; none of them may swallow an item put later
                for k in 0..20u64 {
                    let d = Duration::from_micros(50 + k * 100);
                    let r = within(exec, d, q.get_async()).await;
                    assert!(r.is_none(), "an empty queue answered a get: {r:?}");
                }
                let mut p = Process::new(produce_slowly, (q.clone(), n))
                    .start()
                    .unwrap();
                let mut got = Vec::new();
                let (mut i, t) = (0u64, Instant::now());
                while (got.len() as u64) < n && t.elapsed() < LONG {
                    i += 1;
                    let d = Duration::from_micros(20 + (i * 53) % 600);
                    if let Some(r) = within(exec, d, q.get_async()).await {
                        got.push(r.unwrap());
                    }
                }
                p.join_timeout(LONG).unwrap();
                eprintln!("{} items in {i} tries", got.len());
                got.sort_unstable();
                assert_eq!(got, (0..n).collect::<Vec<_>>(), "every item exactly once");
                assert_eq!(q.len().unwrap(), 0);
                // (how many of the racing gets were given up depends on the
                // machine's load: on a loaded one the consumer lags and every get finds
                // an item; the certain withdrawals are the first twenty)
            }
        });
    });
}

/// The answer crossed the withdrawal: the future was answered (the lock granted, an
/// item taken) but dropped before it was polled again.
#[test]
fn a_future_dropped_after_its_answer_came_gives_back_what_it_got() {
    procactor::init();
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let (l, q) = (mgr.lock().unwrap(), mgr.queue::<u32>().unwrap());
        for round in 0..3 {
            // a lock granted to a future that is then dropped
            let g = l.acquire().unwrap();
            let mut f = Box::pin(l.acquire_async());
            assert!(poll_once(f.as_mut()).is_pending());
            drop(g); // the server grants it to the parked request
            std::thread::sleep(Duration::from_millis(100)); // (its answer arrives)
            drop(f);
            let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
            assert!(p.join_timeout(LONG).unwrap().success(), "round {round}");

            // an item taken for a future that is then dropped goes back to the front
            let mut f = Box::pin(q.get_async());
            assert!(poll_once(f.as_mut()).is_pending());
            q.put(1).unwrap();
            q.put(2).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(f);
            // the giving back is not awaited by the drop: on a loaded machine the
            // answer may still be on its way; once both items are in the queue, the
            // given-back one is at the front
            let t = Duration::from_secs(10);
            wait_until(t, "the taken item back in the queue", || {
                q.len().unwrap() == 2
            });
            assert_eq!(q.get_timeout(t).unwrap(), Some(1), "round {round}");
            assert_eq!(q.get_timeout(t).unwrap(), Some(2));
        }
    });
}

// ------------------------------------------------------------------ many pending

#[test]
fn a_thousand_pending_futures_make_no_thread_here_or_at_the_server() {
    procactor::init();
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        let server = mgr.pid().unwrap().to_string();
        let (e, l) = (mgr.event().unwrap(), mgr.lock().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // (the async connection and the watcher threads exist before the count)
        rt.block_on(async { e.is_set_async().await.unwrap() });
        let (mine, theirs) = (threads_of("self"), threads_of(&server));
        const N: usize = 1000;
        let waiting = Arc::new(AtomicUsize::new(0));
        let held = l.acquire().unwrap();
        let mut tasks = Vec::new();
        for i in 0..N {
            let (e, l, waiting) = (e.clone(), l.clone(), waiting.clone());
            tasks.push(rt.spawn(async move {
                waiting.fetch_add(1, Ordering::SeqCst);
                if i % 2 == 0 {
                    e.wait_async().await.unwrap();
                } else {
                    drop(l.acquire_async().await.unwrap());
                }
            }));
        }
        let t = Instant::now();
        while waiting.load(Ordering::SeqCst) < N && t.elapsed() < LONG {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let (mine2, theirs2) = (threads_of("self"), threads_of(&server));
        eprintln!("threads here {mine} -> {mine2}, at the server {theirs} -> {theirs2}");
        assert!(mine2 <= mine + 4, "{mine} -> {mine2} threads here");
        assert!(
            theirs2 <= theirs + 4,
            "{theirs} -> {theirs2} threads at the server"
        );
        assert!(tasks.iter().all(|t| !t.is_finished()), "they wait");
        e.set().unwrap();
        drop(held);
        rt.block_on(async {
            for t in tasks {
                tokio::time::timeout(LONG, t).await.unwrap().unwrap();
            }
        });
        // every guard let go (a release is sent, not awaited: another process gets it)
        let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
        assert!(p.join_timeout(LONG).unwrap().success());
    });
}

// ------------------------------------------------------------------ a server gone

#[test]
fn a_killed_server_ends_pending_futures_with_an_error() {
    procactor::init();
    watchdog(240, || {
        on_each_executor(|exec| async move {
            let mgr = Manager::start().unwrap();
            let pid = mgr.pid().unwrap();
            let (e, l, q) = (
                mgr.event().unwrap(),
                mgr.lock().unwrap(),
                mgr.queue::<u32>().unwrap(),
            );
            let d = mgr.dict::<u32, u32>().unwrap();
            let _held = l.acquire().unwrap();
            let killer = async {
                sleep(Duration::from_millis(200)).await;
                kill(pid, "-9");
            };
            let t = Instant::now();
            let (a, b, c, ()) = futures::join!(
                must(exec, e.wait_async()),
                must(exec, l.acquire_async()),
                must(exec, q.get_async()),
                killer
            );
            assert!(matches!(a, Err(ManagerError::Disconnected)), "{a:?}");
            assert!(matches!(b, Err(ManagerError::Disconnected)), "{b:?}");
            assert!(matches!(c, Err(ManagerError::Disconnected)), "{c:?}");
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
            // and later calls fail at once, over the rings and the socket alike
            let t = Instant::now();
            assert!(matches!(
                must(exec, d.get_async(&1)).await,
                Err(ManagerError::Disconnected)
            ));
            assert!(matches!(
                must(exec, e.set_async()).await,
                Err(ManagerError::Disconnected)
            ));
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        });
    });
}

fn lock_is_held_elsewhere(l: SharedLock) {
    // exits 0 only if someone else holds the lock
    let g = l.try_acquire().unwrap();
    assert!(g.is_none(), "the lock was free");
}

/// A call that times out gives up that call only: the connection stays, and an async
/// guard taken before holds its lock through it.
#[test]
fn a_frozen_server_times_out_calls_that_do_not_wait() {
    procactor::init();
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let pid = mgr.pid().unwrap();
        let (e, d) = (mgr.event().unwrap(), mgr.dict::<u32, u32>().unwrap());
        let exec = Exec::CurrentThread;
        exec.run(async {
            must(exec, e.set_async()).await.unwrap(); // (the connection is open)
            let l = mgr.lock().unwrap();
            let g = must(exec, l.acquire_async()).await.unwrap();
            let waiting = e.clone();
            mgr.set_call_timeout(Some(Duration::from_millis(300)));
            kill(pid, "-STOP");
            let t = Instant::now();
            let r = must(exec, d.get_async(&1)).await;
            let dict_took = t.elapsed();
            let t = Instant::now();
            let r2 = must(exec, waiting.clear_async()).await;
            let event_took = t.elapsed();
            kill(pid, "-CONT");
            assert!(matches!(r, Err(ManagerError::Timeout)), "{r:?}");
            assert!(dict_took < Duration::from_secs(5), "{dict_took:?}");
            assert!(matches!(r2, Err(ManagerError::Timeout)), "{r2:?}");
            assert!(event_took < Duration::from_secs(5), "{event_took:?}");
            mgr.set_call_timeout(None);
            // the event's call that timed out gave up that call only: the connection
            // stays, and the guard taken before still holds the lock (it is not
            // released by a timeout, however late the server reads the withdrawal)
            must(exec, e.set_async()).await.unwrap();
            assert!(must(exec, e.is_set_async()).await.unwrap());
            let mut p = Process::new(lock_is_held_elsewhere, l.clone())
                .start()
                .unwrap();
            assert!(p.join_timeout(LONG).unwrap().success(), "the lock was free");
            assert!(l.is_locked().unwrap());
            // releasing it lets another process take it
            g.release().unwrap();
            let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
            assert!(
                p.join_timeout(LONG).unwrap().success(),
                "the lock stayed held"
            );
            must(exec, e.clear_async()).await.unwrap();
            assert!(!must(exec, e.is_set_async()).await.unwrap());
        });
    });
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The withdrawals of many dropped futures fill the socket of a frozen server: no
/// thread of this process waits for it (the drops return, the epoll thread serves
/// other waits), the connection survives, and once the server runs again every frame
/// has arrived (they are numbered: a frame lost or reordered would make the server
/// close the connection, which would release the guard).
#[test]
fn withdrawals_queued_behind_a_frozen_server_stall_no_thread_and_all_arrive() {
    procactor::init();
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let pid = mgr.pid().unwrap();
        let (e, l) = (mgr.event().unwrap(), mgr.lock().unwrap());
        let q = mgr.queue::<u64>().unwrap();
        let local: procactor::Queue<u32> = procactor::Queue::new().unwrap();
        let exec = Exec::CurrentThread;
        exec.run(async {
            let g = must(exec, l.acquire_async()).await.unwrap();
            // (each withdrawal is a frame of ~50 bytes written on its own: a few
            // hundred fill a local socket's buffer)
            const N: usize = 2000;
            const M: u64 = 50;
            let mut gets: Vec<_> = (0..N).map(|_| Box::pin(q.get_async())).collect();
            for f in &mut gets {
                assert!(poll_once(f.as_mut()).is_pending());
            }
            // (the server has read them all: it answers a later request of the
            // same connection)
            assert!(!must(exec, e.is_set_async()).await.unwrap());
            kill(pid, "-STOP");
            drop(gets);
            // the epoll thread still serves the process's other waits
            let putter = {
                let local = local.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    local.put(7).unwrap();
                })
            };
            assert_eq!(must(exec, local.get_async()).await.unwrap(), 7);
            putter.join().unwrap();
            let mut p = Process::new(nap, 50).start().unwrap();
            assert!(must(exec, p.join_async()).await.unwrap().success());
            kill(pid, "-CONT");
            // a producer on its own connection, at once: its first items may be given
            // to gets whose withdrawal is still on its way (they come back); it starts
            // only now, as a put to a frozen server would time out
            let producer = {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..M {
                        q.put(i).unwrap();
                    }
                })
            };
            producer.join().unwrap();
            // the same connection serves, and the guard still holds the lock
            assert!(!must(exec, e.is_set_async()).await.unwrap());
            let mut p = Process::new(lock_is_held_elsewhere, l.clone())
                .start()
                .unwrap();
            assert!(p.join_timeout(LONG).unwrap().success(), "the lock was free");
            g.release().unwrap();
            let mut p = Process::new(try_lock_in_child, l.clone()).start().unwrap();
            assert!(
                p.join_timeout(LONG).unwrap().success(),
                "the lock stayed held"
            );
            // every item once: none went to a withdrawn get for good
            wait_until(LONG, "every item in the queue", || {
                q.len().unwrap() == M as usize
            });
            let t = Duration::from_secs(10);
            let mut got: Vec<u64> = (0..M).map(|_| q.get_timeout(t).unwrap().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, (0..M).collect::<Vec<_>>());
        });
    });
}
