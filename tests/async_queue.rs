//! The queues' async face (`get_async`, `put_async`, `join_async`) across processes,
//! under tokio (`current_thread`, `multi_thread`) and `futures::executor::block_on`:
//! items put by a child, a bounded queue drained by a child, `join_async` while a child
//! calls `task_done`, `Disconnected` once the producer child exits or is killed, and
//! cancellation (a dropped `get_async` loses no item, a dropped `put_async` puts
//! nothing).

procactor::test_support!();

mod common;

use common::aio::{on_each_executor, poll_once, within, Exec};
use common::watchdog;
use procactor::{Event, GetError, JoinableQueue, Process, Queue, SimpleQueue};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn producer((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn get_async_across_processes_on_tokio_and_block_on() {
    procactor::init();
    watchdog(120, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let n = 20_000;
        let mut p = Process::new(producer, (q.clone(), n)).start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = Instant::now();
        let sum = rt.block_on(async {
            let mut s = 0;
            for _ in 0..n / 2 {
                s += q.get_async().await.unwrap();
            }
            s
        });
        let sum2: u64 = futures::executor::block_on(async {
            let mut s = 0;
            for _ in 0..n / 2 {
                s += q.get_async().await.unwrap();
            }
            s
        });
        eprintln!("{} items in {:?}", n, t.elapsed());
        assert_eq!(sum + sum2, n * (n - 1) / 2);
        p.join_timeout(Duration::from_secs(30)).unwrap();
    });
}

/// The same tests for each queue type: `$q` the type, `$new` an unbounded one,
/// `$bounded(n)` one of at most `n` items.
macro_rules! queue_tests {
    ($m:ident, $q:ident, $new:expr, $bounded:expr) => {
        mod $m {
            use super::*;

            type Q = $q<u64>;

            fn new() -> Q {
                $new
            }

            fn bounded(n: usize) -> Q {
                $bounded(n)
            }

            fn produce((q, from, n, pause_every): (Q, u64, u64, u64)) {
                for i in from..from + n {
                    q.put(i).unwrap();
                    if pause_every > 0 && i % pause_every == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }

            fn produce_then_hang((q, n): (Q, u64)) {
                for i in 0..n {
                    q.put(i).unwrap();
                }
                std::thread::sleep(Duration::from_secs(600));
            }

            /// Waits for `go`, then takes `n` items and checks they are `0..n` in order
            /// (a panic, exit code 1, otherwise).
            fn drain_in_order((q, n, go): (Q, u64, Event)) {
                assert!(go.wait_timeout(LONG), "never told to go");
                for i in 0..n {
                    assert_eq!(q.get().unwrap(), i);
                }
            }

            fn start<A: procactor::Message>(f: fn(A), a: A) -> Process<()> {
                Process::new(f, a).start().unwrap()
            }

            fn joined_ok(mut p: Process<()>) {
                let st = p.join_timeout(LONG).unwrap();
                assert_eq!(st, procactor::ExitStatus::Code(0), "child failed");
            }

            #[test]
            fn get_async_takes_items_a_child_puts() {
                procactor::init();
                watchdog(180, || {
                    on_each_executor(|e| async move {
                        let q = new();
                        let p = start(produce, (q.clone(), 0, 500, 50));
                        for i in 0..500 {
                            let v = within(e, LONG, q.get_async()).await.expect("hung");
                            assert_eq!(v.unwrap(), i);
                        }
                        joined_ok(p);
                    });
                });
            }

            #[test]
            fn put_async_waits_for_room_a_child_makes() {
                procactor::init();
                watchdog(180, || {
                    on_each_executor(|e| async move {
                        let q = bounded(2);
                        q.put(0).unwrap();
                        q.put(1).unwrap();
                        let go = Event::new().unwrap();
                        let p = start(drain_in_order, (q.clone(), 10, go.clone()));
                        {
                            let mut f = std::pin::pin!(q.put_async(2));
                            // full: the put waits (the child has not been told to drain)
                            assert!(poll_once(f.as_mut()).is_pending());
                            go.set();
                            within(e, LONG, f).await.expect("hung").unwrap();
                        }
                        for i in 3..10 {
                            within(e, LONG, q.put_async(i))
                                .await
                                .expect("hung")
                                .unwrap();
                        }
                        joined_ok(p);
                    });
                });
            }

            #[test]
            fn get_async_reports_disconnected_once_the_producer_exits() {
                procactor::init();
                watchdog(180, || {
                    on_each_executor(|e| async move {
                        let q = new();
                        let p = start(produce, (q.clone(), 0, 20, 0));
                        q.close(); // this handle only takes
                        for i in 0..20 {
                            let v = within(e, LONG, q.get_async()).await.expect("hung");
                            assert_eq!(v.unwrap(), i);
                        }
                        let end = within(e, LONG, q.get_async()).await.expect("hung");
                        assert!(matches!(end, Err(GetError::Disconnected)), "{end:?}");
                        joined_ok(p);
                    });
                });
            }

            #[test]
            fn get_async_reports_disconnected_once_the_producer_is_killed() {
                procactor::init();
                watchdog(180, || {
                    on_each_executor(|e| async move {
                        let q = new();
                        let mut p = start(produce_then_hang, (q.clone(), 5));
                        q.close();
                        for i in 0..5 {
                            let v = within(e, LONG, q.get_async()).await.expect("hung");
                            assert_eq!(v.unwrap(), i);
                        }
                        // the child is alive: the queue is only empty
                        assert!(within(e, Duration::from_millis(200), q.get_async())
                            .await
                            .is_none());
                        p.kill().unwrap();
                        let t = Instant::now();
                        let end = within(e, LONG, q.get_async()).await.expect("hung");
                        assert!(matches!(end, Err(GetError::Disconnected)), "{end:?}");
                        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
                        p.join_timeout(LONG).unwrap();
                    });
                });
            }

            #[test]
            fn cancelled_get_async_loses_no_item() {
                procactor::init();
                watchdog(240, || {
                    on_each_executor(|e| async move {
                        let q = new();
                        // a series of gets given up on an empty queue…
                        for _ in 0..20 {
                            assert!(within(e, Duration::from_millis(2), q.get_async())
                                .await
                                .is_none());
                        }
                        // …and then gets given up on while a child puts: every item
                        // arrives exactly once, in order
                        let k = 300;
                        let p = start(produce, (q.clone(), 0, k, 10));
                        let mut got = Vec::new();
                        let mut cancelled = 0u32;
                        let t = Instant::now();
                        let mut d = 1u64;
                        while got.len() < k as usize {
                            assert!(t.elapsed() < LONG, "only {} items", got.len());
                            d = d * 7 % 13 + 1; // 1..=13 x 100 µs, varied
                            match within(e, Duration::from_micros(d * 100), q.get_async()).await {
                                Some(v) => got.push(v.unwrap()),
                                None => cancelled += 1,
                            }
                        }
                        eprintln!("{cancelled} gets cancelled");
                        assert_eq!(got, (0..k).collect::<Vec<_>>());
                        // nothing more, nothing twice
                        assert!(within(e, Duration::from_millis(100), q.get_async())
                            .await
                            .is_none());
                        joined_ok(p);
                    });
                });
            }

            #[test]
            fn a_dropped_put_async_puts_nothing() {
                procactor::init();
                watchdog(120, || {
                    on_each_executor(|e| async move {
                        let q = bounded(1);
                        q.put(1).unwrap();
                        {
                            let mut f = std::pin::pin!(q.put_async(99));
                            assert!(poll_once(f.as_mut()).is_pending());
                        } // dropped while waiting for room
                          // dropped before its first poll
                        drop(q.put_async(98));
                        assert!(within(e, Duration::from_millis(100), q.put_async(97))
                            .await
                            .is_none());
                        assert_eq!(within(e, LONG, q.get_async()).await.unwrap().unwrap(), 1);
                        assert!(within(e, Duration::from_millis(100), q.get_async())
                            .await
                            .is_none());
                        assert!(q.is_empty());
                    });
                });
            }
        }
    };
}

queue_tests!(queue, Queue, Queue::new().unwrap(), |n| Queue::bounded(n)
    .unwrap());
queue_tests!(simple, SimpleQueue, SimpleQueue::new().unwrap(), |n| {
    Queue::<u64>::builder().maxsize(n).build_simple().unwrap()
});
queue_tests!(
    joinable,
    JoinableQueue,
    JoinableQueue::new().unwrap(),
    |n| { JoinableQueue::bounded(n).unwrap() }
);

fn consume_with_task_done(q: JoinableQueue<u64>) {
    for _ in 0..50 {
        let _ = q.get_timeout(LONG).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        q.task_done().unwrap();
    }
}

#[test]
fn join_async_waits_for_a_child_consumers_task_done() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let q: JoinableQueue<u64> = JoinableQueue::new().unwrap();
            for i in 0..50 {
                within(e, LONG, q.put_async(i)).await.unwrap().unwrap();
            }
            assert_eq!(q.unfinished_tasks(), 50);
            // nobody consumes yet: the join waits
            assert!(within(e, Duration::from_millis(50), q.join_async())
                .await
                .is_none());
            let mut p = Process::new(consume_with_task_done, q.clone())
                .start()
                .unwrap();
            within(e, LONG, q.join_async())
                .await
                .expect("join_async hung");
            assert_eq!(q.unfinished_tasks(), 0);
            assert_eq!(
                p.join_timeout(LONG).unwrap(),
                procactor::ExitStatus::Code(0)
            );
            // nothing unfinished: ready at once
            within(e, LONG, q.join_async()).await.unwrap();
        });
    });
}

#[test]
fn a_dropped_joinable_put_async_counts_no_task() {
    procactor::init();
    watchdog(60, || {
        let q: JoinableQueue<u64> = JoinableQueue::bounded(1).unwrap();
        q.put(1).unwrap();
        {
            let mut f = std::pin::pin!(q.put_async(2));
            assert!(poll_once(f.as_mut()).is_pending());
        }
        assert_eq!(q.unfinished_tasks(), 1);
    });
}

/// Cancellation the tokio way: `tokio::time::timeout` and a `select!` branch that lost.
#[test]
fn get_async_cancelled_by_tokio_timeout_and_select_loses_nothing() {
    procactor::init();
    watchdog(120, || {
        for e in [Exec::CurrentThread, Exec::MultiThread] {
            e.run(async {
                let q: Queue<u64> = Queue::new().unwrap();
                for _ in 0..10 {
                    assert!(
                        tokio::time::timeout(Duration::from_millis(1), q.get_async())
                            .await
                            .is_err()
                    );
                    tokio::select! {
                        v = q.get_async() => panic!("nothing was put: {v:?}"),
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
                let k = 100;
                let mut p = Process::new(producer, (q.clone(), k)).start().unwrap();
                let mut got = Vec::new();
                let t = Instant::now();
                while got.len() < k as usize {
                    assert!(t.elapsed() < LONG);
                    tokio::select! {
                        v = q.get_async() => got.push(v.unwrap()),
                        _ = tokio::time::sleep(Duration::from_micros(200)) => {}
                    }
                }
                assert_eq!(got, (0..k).collect::<Vec<_>>());
                assert!(q.try_get().is_err());
                p.join_timeout(LONG).unwrap();
            });
        }
    });
}

/// 1000 `get_async` futures on one queue, fed by a child: each item received once.
#[test]
fn a_thousand_concurrent_get_async_each_get_one_item() {
    procactor::init();
    watchdog(240, || {
        const N: u64 = 1000;
        for e in [Exec::CurrentThread, Exec::MultiThread] {
            e.run(async move {
                let q: Queue<u64> = Queue::new().unwrap();
                let tasks: Vec<_> = (0..N)
                    .map(|_| {
                        let q = q.clone();
                        tokio::spawn(async move { tokio::time::timeout(LONG, q.get_async()).await })
                    })
                    .collect();
                let mut p = Process::new(producer, (q.clone(), N)).start().unwrap();
                let mut got = Vec::new();
                for t in tasks {
                    got.push(t.await.unwrap().expect("a get_async hung").unwrap());
                }
                got.sort_unstable();
                assert_eq!(got, (0..N).collect::<Vec<_>>());
                p.join_timeout(LONG).unwrap();
            });
        }
        // and without tokio: 1000 futures joined under block_on
        let q: Queue<u64> = Queue::new().unwrap();
        let mut p = Process::new(producer, (q.clone(), N)).start().unwrap();
        let mut got = Exec::BlockOn
            .run(async {
                let futs = (0..N).map(|_| q.get_async());
                within(Exec::BlockOn, LONG, futures::future::join_all(futs))
                    .await
                    .expect("a get_async hung")
            })
            .into_iter()
            .map(|v| v.unwrap())
            .collect::<Vec<_>>();
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        p.join_timeout(LONG).unwrap();
    });
}
