//! The Redis queues' async face (`get_async`, `put_async`, `join_async`) against a real
//! redis-server, under tokio (`current_thread`, `multi_thread`) and
//! `futures::executor::block_on`: each method, a producer in another process,
//! cancellation (every item exactly once through repeated timeouts; a dropped get's
//! entry recovered by another consumer), a thousand pending gets on a 2-worker runtime
//! without a thread each, a server killed under a waiting future, the waiting room's
//! check handed over when its checker is dropped, and a churn of pending futures.
procactor::test_support!();

mod common;
mod redis_support;
use common::aio::{on_each_executor, poll_once, within, Exec, Woken};
use common::watchdog;
use procactor::redis::{RedisJoinableQueue, RedisQueue};
use procactor::{GetError, Process, PutError};
use redis_support::{
    blocked_clients, have_binary, info_number, pending_in_group, private_server,
    private_server_with, require_redis, slow_proxy, unique, until_a_client_is_blocked, url,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// The skip rule itself (issue 17): see `redis_support::check_the_skip_rule`.
/// Skips the test (saying so) when there is no `redis-server` binary to start a server
/// of the test's own (e.g. only a server given by `PROCACTOR_REDIS_URL`).
macro_rules! require_binary {
    ($test:literal) => {
        if !have_binary() {
            eprintln!("{}: skipped (no redis-server binary to start)", $test);
            return;
        }
    };
}

#[test]
fn without_redis_the_tests_skip_visibly_unless_required() {
    watchdog(120, || {
        redis_support::check_the_skip_rule("without_redis_the_tests_skip_visibly_unless_required")
    });
}

#[test]
fn put_async_get_async_and_join_async_on_each_executor() {
    require_redis!();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let q = RedisQueue::<(u32, String)>::connect(&url(), &unique("async")).unwrap();
            for i in 0..20 {
                q.put_async((i, format!("item {i}"))).await.unwrap();
            }
            assert_eq!(q.len(), 20);
            for i in 0..20 {
                let v = within(e, T, q.get_async()).await.expect("get_async hung");
                assert_eq!(v.unwrap(), (i, format!("item {i}")));
            }
            // nothing left: a get_async waits (and is cancelled by the timeout)
            assert!(within(e, Duration::from_millis(100), q.get_async())
                .await
                .is_none());
            // the sync and async faces share the handle
            q.put((99, "sync".to_string())).unwrap();
            let d = within(e, T, q.get_delivery_async()).await.unwrap().unwrap();
            assert_eq!((d.value.0, d.deliveries), (99, 1));

            let j = RedisJoinableQueue::<u32>::connect(&url(), &unique("ajoin")).unwrap();
            j.put_async(1).await.unwrap();
            j.put_async(2).await.unwrap();
            assert_eq!(within(e, T, j.get_async()).await.unwrap().unwrap(), 1);
            // one item undelivered, one not done: join_async waits
            assert!(within(e, Duration::from_millis(100), j.join_async())
                .await
                .is_none());
            j.task_done().unwrap();
            assert_eq!(within(e, T, j.get_async()).await.unwrap().unwrap(), 2);
            assert!(within(e, Duration::from_millis(50), j.join_async())
                .await
                .is_none());
            j.task_done().unwrap();
            within(e, T, j.join_async()).await.unwrap().unwrap();
            assert_eq!(j.unfinished_tasks(), 0);
        });
    });
}

/// An entry `get_async` cannot decode is dropped (acknowledged with the handle's next
/// round trip): `join_async` sends that acknowledgement, and returns.
#[test]
fn join_async_after_an_undecodable_entry_returns() {
    require_redis!();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let name = unique("ajoinbad");
            let j = RedisJoinableQueue::<u32>::connect(&url(), &name).unwrap();
            let other = RedisQueue::<String>::connect(&url(), &name).unwrap();
            other.put("not a number".into()).unwrap();
            let got = within(e, T, j.get_async()).await.expect("get_async hung");
            assert!(got.is_err(), "{got:?}");
            within(e, T, j.join_async())
                .await
                .expect("join_async hung: the dropped entry was never acknowledged")
                .unwrap();
            assert_eq!(j.len(), 0);
        });
    });
}

#[test]
fn a_bounded_put_async_waits_for_room_and_close_refuses() {
    require_redis!();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let q = RedisQueue::<u8>::builder(&url(), &unique("abound"))
                .maxsize(2)
                .connect()
                .unwrap();
            q.put_async(1).await.unwrap();
            q.put_async(2).await.unwrap();
            // full: the third waits (cancelled by the timeout: nothing put)
            assert!(within(e, Duration::from_millis(150), q.put_async(3))
                .await
                .is_none());
            assert_eq!(q.len(), 2);
            assert_eq!(q.get_async().await.unwrap(), 1);
            within(e, T, q.put_async(3)).await.unwrap().unwrap();
            assert_eq!(q.get_async().await.unwrap(), 2);
            assert_eq!(q.get_async().await.unwrap(), 3);
            q.close();
            assert!(matches!(q.put_async(4).await, Err(PutError::Closed(4))));
            assert_eq!(q.get_async().await, Err(GetError::Disconnected));
        });
    });
}

/// A sync method waiting on one thread (a bounded `put` waiting for room, a `get`
/// blocked in `XREADGROUP`) holds up no async method of the same handle: their polls do
/// not wait for it (a get_async frees the room the sync put waits for).
#[test]
fn a_waiting_sync_put_or_get_holds_up_no_async_method_of_the_handle() {
    require_redis!();
    watchdog(60, || {
        let e = Exec::CurrentThread;
        let q = RedisQueue::<u32>::builder(&url(), &unique("asyncsync"))
            .maxsize(2)
            .connect()
            .unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        std::thread::scope(|s| {
            // full: the sync put waits for room (up to 8 s)
            let putter = s.spawn(|| q.put_timeout(3, Duration::from_secs(8)));
            std::thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            let first = e.run(within(e, T, q.get_async())).expect("get_async hung");
            assert_eq!(first.unwrap(), 1);
            putter.join().unwrap().expect("the sync put found no room");
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "{:?}: the get_async waited for the sync put",
                t.elapsed()
            );
        });
        assert_eq!(e.run(within(e, T, q.get_async())).unwrap().unwrap(), 2);
        assert_eq!(e.run(within(e, T, q.get_async())).unwrap().unwrap(), 3);
        std::thread::scope(|s| {
            // empty: the sync get is blocked in XREADGROUP (up to 6 s)
            let getter = s.spawn(|| q.get_timeout(Duration::from_secs(6)));
            until_a_client_is_blocked();
            let t = Instant::now();
            e.run(async {
                // nothing for it: its polls return, and the timeout cancels it
                assert!(within(e, Duration::from_millis(200), q.get_async())
                    .await
                    .is_none());
                within(e, T, q.put_async(7))
                    .await
                    .expect("put_async hung")
                    .unwrap();
            });
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "{:?}: the async methods waited for the sync get",
                t.elapsed()
            );
            // 7 went to the sync get (blocked first), or to the dropped get_async's read
            // round, whose entries the handle's next get returns
            match getter.join().unwrap() {
                Ok(v) => assert_eq!(v, 7),
                Err(_) => assert_eq!(q.get_timeout(T).unwrap(), 7),
            }
        });
        assert_eq!(q.len(), 0);
    });
}

fn produce((q, n): (RedisQueue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn an_async_consumer_takes_what_a_producer_process_puts() {
    require_redis!();
    watchdog(90, || {
        on_each_executor(|e| async move {
            let q = RedisQueue::<u64>::connect(&url(), &unique("axproc")).unwrap();
            let n = 300;
            let mut p = Process::new(produce, (q.clone(), n)).start().unwrap();
            for i in 0..n {
                let v = within(e, T, q.get_async()).await.expect("get_async hung");
                assert_eq!(v.unwrap(), i);
            }
            p.join_timeout(T).unwrap();
            assert!(within(e, Duration::from_millis(50), q.get_async())
                .await
                .is_none());
        });
    });
}

/// Every item exactly once, in order, through a `get_async` cancelled over and over by
/// tokio's timeout (and by `within` under `block_on`) while a producer process puts.
#[test]
fn repeatedly_cancelled_get_async_delivers_every_item_exactly_once() {
    require_redis!();
    watchdog(120, || {
        on_each_executor(|e| async move {
            let q = RedisQueue::<u64>::connect(&url(), &unique("acancel")).unwrap();
            let n = 300;
            let mut p = Process::new(produce, (q.clone(), n)).start().unwrap();
            let mut got = Vec::new();
            let mut cancelled = 0;
            let t = Instant::now();
            while got.len() < n as usize {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "stuck at {}",
                    got.len()
                );
                match within(e, Duration::from_micros(300), q.get_async()).await {
                    Some(v) => got.push(v.unwrap()),
                    None => cancelled += 1,
                }
            }
            p.join_timeout(T).unwrap();
            assert_eq!(got, (0..n).collect::<Vec<_>>());
            assert!(
                cancelled > 0,
                "no get_async was cancelled: the test tested nothing"
            );
            assert!(within(e, Duration::from_millis(50), q.get_async())
                .await
                .is_none());
            // nothing left pending in the group either (the acknowledgements owed go
            // with the last round, or at the latest when the handle is dropped)
            let name = q.name().to_string();
            drop(q);
            assert_eq!(pending_in_group(&name), 0, "entries left pending");
        });
    });
}

/// A `get_async` dropped while its read round is under way, then its handle dropped:
/// the entry the server delivered to that consumer stays pending and another consumer
/// takes it over after the visibility timeout.
#[test]
fn an_entry_read_for_a_dropped_get_async_of_a_dropped_handle_is_taken_over() {
    require_redis!();
    watchdog(60, || {
        let name = unique("aorphan");
        // a: rounds of `XREADGROUP … BLOCK 1000` after its first (claim) round
        let a = RedisQueue::<String>::connect(&url(), &name).unwrap();
        // b: takes over what has been pending for 300 ms
        let b = RedisQueue::<String>::builder(&url(), &name)
            .visibility_timeout(Duration::from_millis(300))
            .connect()
            .unwrap();
        {
            let mut f = std::pin::pin!(a.get_async());
            let t = Instant::now();
            // polled until the claim round's reply is in and the blocking round sent:
            // at least 50 ms, and until the server counts a client blocked (which, the
            // server being shared with the binary's other tests, may be another's: the
            // 50 ms are kept for that case)
            while t.elapsed() < Duration::from_millis(50) || blocked_clients() == 0 {
                assert!(poll_once(f.as_mut()).is_pending());
                assert!(t.elapsed() < T, "no blocked XREADGROUP within {T:?}");
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(poll_once(f.as_mut()).is_pending());
        } // dropped with its XREADGROUP … BLOCK under way
        b.put("precious".into()).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // delivered to a's consumer
        assert_eq!(b.len(), 0, "a's read round had taken it");
        drop(a);
        let d = b.get_delivery(T).unwrap();
        assert_eq!(d.value, "precious");
        assert!(d.deliveries >= 2, "{d:?}");
    });
}

/// Dropped puts: before their first poll, or waiting in line behind another put,
/// nothing is put; after a poll that wrote their `XADD`, the item is put, once; puts
/// cancelled by tokio's timeout are each there once or not at all. Order is kept.
#[test]
fn a_dropped_put_async_put_its_item_once_or_not_at_all_as_documented() {
    require_redis!();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let name = unique("aputdrop");
            let q = RedisQueue::<u32>::connect(&url(), &name).unwrap();
            // completed, or dropped after writing: put
            let mut sure = Vec::new();
            // the write lane connected and its handshake answered first, so that the
            // first poll of each put below writes its XADD
            within(e, T, q.put_async(0)).await.unwrap().unwrap();
            sure.push(0);
            for i in 1..100 {
                let mut f = std::pin::pin!(q.put_async(i));
                match poll_once(f.as_mut()) {
                    std::task::Poll::Ready(r) => r.unwrap(),
                    std::task::Poll::Pending => {} // dropped with its XADD written
                }
                sure.push(i);
            }
            // never polled: nothing put
            drop(q.put_async(1000));
            // waiting in line behind another put: nothing put. The line is made on a
            // second handle whose server answers 20 ms late (a proxy): its first put is
            // still waiting for its reply when the second is polled. (On the shared
            // server itself, a loaded machine can have the reply in before the first
            // poll ends, every time: the writer preempted by the server it woke.) Every
            // put of `q` so far is done first (one awaited after them, on their
            // connection), so the order stays that of the calls.
            within(e, T, q.put_async(100)).await.unwrap().unwrap();
            sure.push(100);
            let slow =
                RedisQueue::<u32>::connect(&slow_proxy(Duration::from_millis(20)), &name).unwrap();
            within(e, T, slow.put_async(101)).await.unwrap().unwrap();
            sure.push(101);
            let mut next = 102;
            loop {
                assert!(next < 500, "every first put was done in its first poll");
                let mut first = Box::pin(slow.put_async(next));
                sure.push(next);
                next += 1;
                if let std::task::Poll::Ready(r) = poll_once(first.as_mut()) {
                    r.unwrap();
                    continue;
                }
                let mut second = Box::pin(slow.put_async(1001));
                assert!(poll_once(second.as_mut()).is_pending());
                drop(second);
                within(e, T, first).await.unwrap().unwrap();
                break;
            }
            let mut maybe = Vec::new(); // cancelled by a timeout: there or not
            for i in next..next + 99 {
                let d = Duration::from_micros(if i % 2 == 0 { 1 } else { 300 });
                match within(e, d, q.put_async(i)).await {
                    Some(r) => {
                        r.unwrap();
                        sure.push(i);
                    }
                    None => maybe.push(i),
                }
            }
            q.put_async(5000).await.unwrap();
            let mut got = Vec::new();
            loop {
                let v = within(e, T, q.get_async()).await.unwrap().unwrap();
                if v == 5000 {
                    break;
                }
                got.push(v);
            }
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "order or duplicate: {got:?}"
            );
            for c in &sure {
                assert!(got.contains(c), "put {c} missing");
            }
            assert!(!got.contains(&1000) && !got.contains(&1001), "{got:?}");
            let landed = got.iter().filter(|v| maybe.contains(v)).count();
            eprintln!(
                "{} puts cancelled by a timeout, {landed} of them put",
                maybe.len()
            );
        });
    });
}

/// A put dropped with its command partly written (8 MiB: more than a poll writes)
/// closes its connection: the item is put whole or not at all, and the handle goes on.
#[test]
fn a_put_async_dropped_mid_write_leaves_a_whole_item_or_none() {
    require_redis!();
    watchdog(60, || {
        let q = RedisQueue::<Vec<u8>>::connect(&url(), &unique("apartial")).unwrap();
        let big = vec![7u8; 8 << 20];
        {
            let mut f = std::pin::pin!(q.put_async(big.clone()));
            assert!(poll_once(f.as_mut()).is_pending());
        }
        futures::executor::block_on(async {
            q.put_async(vec![1]).await.unwrap();
            let first = q.get_async().await.unwrap();
            if first == big {
                eprintln!("the dropped put had been written whole: put");
                assert_eq!(q.get_async().await.unwrap(), vec![1]);
            } else {
                eprintln!("the dropped put was cut: not put");
                assert_eq!(first, vec![1]);
            }
        });
        assert!(q.get_timeout(Duration::from_millis(50)).is_err());
    });
}

fn threads() -> u64 {
    procactor_transports::os::thread_count().expect("the thread count (/proc)") as u64
}

/// In a process of its own (the test binary's other tests change its thread count):
/// 1000 `get_async` tasks pending on one handle on a 2-worker runtime, then fed.
/// Returns `(threads before, threads while pending, items each got once)`.
fn thousand_pending((url, name): (String, String)) -> (u64, u64, bool) {
    const N: u64 = 1000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let q = Arc::new(
            RedisQueue::<u64>::builder(&url, &name)
                .prefetch(16)
                .connect()
                .unwrap(),
        );
        // warm: the epoll and watcher threads exist before counting
        assert!(
            tokio::time::timeout(Duration::from_millis(50), q.get_async())
                .await
                .is_err()
        );
        let before = threads();
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { tokio::time::timeout(T * 3, q.get_async()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pending = threads();
        let producer = RedisQueue::<u64>::connect(&url, &name).unwrap();
        producer.put_many((0..N).collect()).unwrap();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().expect("a get_async hung").unwrap());
        }
        got.sort_unstable();
        (before, pending, got == (0..N).collect::<Vec<_>>())
    })
}

#[test]
fn a_thousand_pending_get_async_on_two_workers_take_no_thread_each() {
    require_redis!();
    watchdog(120, || {
        let mut p = Process::new(thousand_pending, (url(), unique("athousand")))
            .start()
            .unwrap();
        p.join_timeout(Duration::from_secs(100)).unwrap();
        let (before, pending, each_once) = p.result().unwrap();
        eprintln!("threads: {before} before, {pending} with 1000 get_async pending");
        assert!(
            pending <= before + 2,
            "threads went from {before} to {pending} with 1000 gets pending"
        );
        assert!(each_once, "the 1000 gets did not get each item once");
    });
}

#[test]
fn a_server_killed_under_waiting_futures_ends_them_with_an_error() {
    require_redis!();
    require_binary!("a_server_killed_under_waiting_futures_ends_them_with_an_error");
    watchdog(60, || {
        for e in [Exec::CurrentThread, Exec::MultiThread, Exec::BlockOn] {
            let (mut server, url) = private_server();
            let q = RedisQueue::<u32>::connect(&url, "killed").unwrap();
            let j = RedisJoinableQueue::<u32>::connect(&url, "killed-j").unwrap();
            j.put(1).unwrap(); // never done: join_async waits
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                server.kill().unwrap();
                server.wait().unwrap();
            });
            let t = Instant::now();
            let (g, jn) = e.run(async {
                futures::join!(within(e, T, q.get_async()), within(e, T, j.join_async()))
            });
            killer.join().unwrap();
            assert_eq!(g.expect("get_async hung"), Err(GetError::Broken), "{e:?}");
            assert!(jn.expect("join_async hung").is_err(), "{e:?}");
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            assert!(q.last_error().is_some());
            // and after: at once, an error (connection refused), not a hang
            let again = e.run(async { within(e, T, q.put_async(2)).await });
            assert!(matches!(again, Some(Err(PutError::Broken(2)))), "{again:?}");
        }
    });
}

/// A handle used only through `put_async` (a clone: no sync connection of its own)
/// opens no connection when it is dropped: it owes no acknowledgement and made no
/// consumer.
#[test]
fn a_handle_that_only_put_async_connects_for_nothing_when_dropped() {
    require_redis!();
    require_binary!("a_handle_that_only_put_async_connects_for_nothing_when_dropped");
    watchdog(60, || {
        let (mut server, url) = private_server();
        let q = RedisQueue::<u32>::connect(&url, "putonly").unwrap();
        let c = q.clone();
        let e = Exec::BlockOn;
        let put = e.run(within(e, T, c.put_async(1)));
        let connections = || info_number(&url, "stats", "total_connections_received");
        let before = connections();
        drop(c);
        let after = connections();
        let len = q.len();
        server.kill().unwrap();
        server.wait().unwrap();
        put.expect("put_async hung").unwrap();
        assert_eq!(len, 1);
        // (each count's own redis-cli connection is counted: one between the two)
        assert_eq!(after, before + 1, "the dropped handle connected");
    });
}

/// The async methods over a `redis+unix://` URL (a Unix socket, connected without
/// blocking the poll).
#[test]
fn the_async_methods_work_over_a_unix_socket() {
    require_redis!();
    require_binary!("the_async_methods_work_over_a_unix_socket");
    watchdog(60, || {
        let path =
            std::env::temp_dir().join(format!("procactor-redis-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (mut server, _) = private_server_with(&["--unixsocket", path.to_str().unwrap()]);
        let t = Instant::now();
        while !path.exists() && t.elapsed() < T {
            std::thread::sleep(Duration::from_millis(10));
        }
        let url = format!("redis+unix://{}", path.display());
        let q = RedisQueue::<u32>::connect(&url, "unix");
        let e = Exec::BlockOn;
        let got = q.as_ref().ok().map(|q| {
            e.run(async {
                within(e, T, q.put_async(5))
                    .await
                    .expect("put_async hung")
                    .unwrap();
                within(e, T, q.get_async()).await.expect("get_async hung")
            })
        });
        server.kill().unwrap();
        server.wait().unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.expect("no connection over the Unix socket").unwrap(), 5);
    });
}

/// `calls` of `cmdstat_<command>` in the server's `INFO commandstats` (0 before the
/// first call).
fn command_calls(url: &str, command: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(["INFO", "commandstats"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running redis-cli");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("# Commandstats"), "{info}");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A hundred bounded `put_async` waiting for room on one handle share one check per
/// pause (the handle's waiting room), and once a consumer drains the stream every one of
/// them puts its items, each once, in its own order, without overfilling the stream.
#[test]
fn waiting_bounded_puts_of_a_handle_share_one_check() {
    require_redis!();
    require_binary!("waiting_bounded_puts_of_a_handle_share_one_check");
    watchdog(60, || {
        // a server of our own: the only client sending XPENDING is this handle
        let (mut server, url) = private_server();
        const MAX: usize = 10;
        const PRODUCERS: u64 = 100;
        const EACH: u64 = 3;
        let q = RedisQueue::<u64>::builder(&url, "room")
            .maxsize(MAX)
            .connect()
            .unwrap();
        for i in 0..MAX as u64 {
            q.put(u64::MAX - i).unwrap();
        }
        let (got, puts) = std::thread::scope(|s| {
            let producers = s.spawn(|| {
                let e = Exec::CurrentThread;
                e.run(within(
                    e,
                    Duration::from_secs(40),
                    futures::future::join_all((0..PRODUCERS).map(|p| {
                        let q = &q;
                        async move {
                            for i in 0..EACH {
                                q.put_async(p * 1000 + i).await.unwrap();
                            }
                        }
                    })),
                ))
                .expect("the puts did not all complete")
                .len()
            });
            // all hundred wait (the stream is full); what they send over a fixed time
            let xpending = || command_calls(&url, "xpending");
            let t = Instant::now();
            while xpending() < 5 {
                assert!(t.elapsed() < T, "no check of the stream");
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(100));
            let before = xpending();
            let t = Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            let checks = xpending() - before;
            let window = t.elapsed();
            eprintln!("{checks} room checks in {window:?} with {PRODUCERS} puts waiting");
            assert_eq!(q.len(), MAX, "a put went in while the stream was full");
            // one check per pause (20 ms once they have waited a little): about 50 in
            // a second; a check each would be a hundred times that (about 4800 were
            // counted so). (No lower bound: that they go on checking is shown by the
            // drain below, with no timing in it.)
            let most = window.as_millis() as u64 / 20 + 20;
            assert!(
                checks <= most,
                "{checks} checks in {window:?} by {PRODUCERS} waiting puts (at most {most})"
            );
            // the consumer: another handle on the stream
            let c = RedisQueue::<u64>::builder(&url, "room")
                .maxsize(MAX)
                .connect()
                .unwrap();
            let mut got = Vec::new();
            let mut fullest = 0;
            for _ in 0..MAX as u64 + PRODUCERS * EACH {
                got.push(c.get_timeout(T).unwrap());
                fullest = fullest.max(c.len());
            }
            assert!(fullest <= MAX, "the stream held {fullest} > {MAX}");
            (got, producers.join().unwrap())
        });
        assert_eq!(puts, PRODUCERS as usize);
        let (fill, items): (Vec<u64>, Vec<u64>) =
            got.into_iter().partition(|&v| v > u64::MAX - 100);
        assert_eq!(
            fill,
            (0..MAX as u64).map(|i| u64::MAX - i).collect::<Vec<_>>()
        );
        for p in 0..PRODUCERS {
            let mine: Vec<u64> = items.iter().copied().filter(|v| v / 1000 == p).collect();
            assert_eq!(
                mine,
                (0..EACH).map(|i| p * 1000 + i).collect::<Vec<_>>(),
                "producer {p}: each item once, in order"
            );
        }
        assert_eq!(items.len() as u64, PRODUCERS * EACH);
        assert_eq!(q.len(), 0);
        server.kill().unwrap();
        server.wait().unwrap();
    });
}

/// The checker hands its part over when it is dropped: three bounded `put_async` wait
/// on one handle of a full queue, the first polled being the one that checks the
/// stream for all of them (the first in an empty room); it is dropped (once with its
/// first check in flight, once after it has checked for a while and the others were
/// woken by its answers), then a consumer makes room. The two left, polled only when
/// their wakers are called, must put their items: nothing else would ever check for
/// them. The dropped one's item is never put.
#[test]
fn a_dropped_checker_hands_the_check_over_to_the_waiting_puts() {
    require_redis!();
    watchdog(90, || {
        const MAX: usize = 2;
        let name = unique("ahandover");
        let q = RedisQueue::<u32>::builder(&url(), &name)
            .maxsize(MAX)
            .connect()
            .unwrap();
        let c = RedisQueue::<u32>::connect(&url(), &name).unwrap();
        for (round, checked_for) in [Duration::ZERO, Duration::from_millis(300)]
            .into_iter()
            .enumerate()
        {
            let round = round as u32;
            q.put(100 + round).unwrap();
            q.put(200 + round).unwrap(); // full
            let mut w = Woken::new();
            let checker = w.add("checker", q.put_async(1));
            let second = w.add("second", q.put_async(10 + round));
            let third = w.add("third", q.put_async(20 + round));
            // (each polled once, pending: no room)
            assert!(w.pending(checker) && w.pending(second) && w.pending(third));
            w.run_for(checked_for);
            // (round 1: until the checker has been woken again at least, as a loaded
            // machine may take longer than 300 ms to answer its first check)
            let t = Instant::now();
            while !checked_for.is_zero() && w.polls(checker) < 2 {
                assert!(
                    t.elapsed() < T,
                    "round {round}: the checker was not woken to check again"
                );
                w.run_for(Duration::from_millis(20));
            }
            assert!(w.pending(checker), "round {round}: put in a full queue");
            w.drop_task(checker);
            // room for both
            assert_eq!(c.get_timeout(T).unwrap(), 100 + round);
            assert_eq!(c.get_timeout(T).unwrap(), 200 + round);
            if let Err(still) = w.run_until_done(Duration::from_secs(20)) {
                panic!("round {round}: {still:?} still waiting 20 s after room was made");
            }
            w.take(second).unwrap().unwrap();
            w.take(third).unwrap().unwrap();
            let mut got = [c.get_timeout(T).unwrap(), c.get_timeout(T).unwrap()];
            got.sort_unstable();
            assert_eq!(got, [10 + round, 20 + round], "round {round}");
            // the dropped checker's item was never put
            assert!(c.get_timeout(Duration::from_millis(100)).is_err());
        }
    });
}

/// `(VmRSS KiB, threads, open descriptors)` of this process.
fn footprint() -> (u64, u64, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let field = |name| common::proc_status_field("self", name);
    (field("VmRSS"), field("Threads"), fds)
}

/// Rounds of [`churn_redis_async`]: a `get_async` and a bounded `put_async` each.
const REDIS_CHURN: u64 = 100_000;
/// The bounded queue's size in [`churn_redis_async`].
const CHURN_MAX: u64 = 5;

type Footprint = (u64, u64, u64);

/// Creates, polls once (pending) and drops a `get_async` of an empty stream and a
/// bounded `put_async` of a full queue, [`REDIS_CHURN`] times each (after a tenth as
/// many to warm up); then checks that both handles still work and that no item was
/// lost, duplicated or put by a dropped future. In a process of its own (the test
/// binary's other tests would change the counts). Returns the footprint before and
/// after, and what went wrong afterwards (nothing, when all is well).
fn churn_redis_async((url, name): (String, String)) -> (Footprint, Footprint, Vec<String>) {
    let gets = RedisQueue::<u64>::connect(&url, &format!("{name}-get")).unwrap();
    let puts = RedisQueue::<u64>::builder(&url, &format!("{name}-put"))
        .maxsize(CHURN_MAX as usize)
        .connect()
        .unwrap();
    let fill: Vec<u64> = (0..CHURN_MAX).map(|i| 1_000_000 + i).collect();
    puts.put_many(fill.clone()).unwrap(); // full
    let churn = |n: u64| {
        for i in 0..n {
            let mut g = std::pin::pin!(gets.get_async());
            assert!(
                poll_once(g.as_mut()).is_pending(),
                "get {i} of an empty stream"
            );
            let mut p = std::pin::pin!(puts.put_async(i));
            assert!(
                poll_once(p.as_mut()).is_pending(),
                "put {i} in a full queue"
            );
        }
    };
    let e = Exec::BlockOn;
    churn(REDIS_CHURN / 10);
    // (and the test's timer thread, which `within` starts under `block_on`)
    assert!(e
        .run(within(
            e,
            Duration::from_millis(1),
            std::future::pending::<()>()
        ))
        .is_none());
    let before = footprint();
    let t0 = Instant::now();
    churn(REDIS_CHURN);
    let took = t0.elapsed();
    let after = footprint();
    eprintln!(
        "{REDIS_CHURN} get_async and {REDIS_CHURN} put_async polled once and dropped in {took:?}"
    );
    let mut wrong = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    let n = 50u64;
    // the unbounded stream: n items put, the same n got, in order, and nothing more
    let got: Vec<Option<u64>> = e.run(async {
        for i in 0..n {
            within(e, T, gets.put_async(i))
                .await
                .expect("put_async hung after the churn")
                .unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..n {
            let g = within(e, T, gets.get_async()).await.map(|r| r.unwrap());
            got.push(g);
            if g.is_none() {
                break; // (hung: the rest would too)
            }
        }
        got
    });
    expect(
        got == (0..n).map(Some).collect::<Vec<_>>(),
        format!("got {got:?} for 0..{n}"),
    );
    let more = e.run(within(e, Duration::from_millis(300), gets.get_async()));
    expect(more.is_none(), format!("more than was put: {more:?}"));
    expect(gets.is_empty(), format!("{} items left", gets.len()));
    // a get_async woken by a put 50 ms later
    let late = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            gets.put(77).unwrap();
        });
        e.run(within(e, T, gets.get_async()))
    });
    expect(
        late == Some(Ok(77)),
        format!("a waiting get_async got {late:?}"),
    );
    // the bounded queue: no dropped put went in; the fill is there, then room for n
    // more, each once
    expect(
        puts.len() == CHURN_MAX as usize,
        format!(
            "{} items in a queue of {CHURN_MAX} filled before",
            puts.len()
        ),
    );
    let got: Vec<Option<u64>> = e.run(async {
        let mut got = Vec::new();
        for _ in 0..CHURN_MAX {
            got.push(within(e, T, puts.get_async()).await.map(|r| r.unwrap()));
        }
        for i in 0..CHURN_MAX {
            within(e, T, puts.put_async(i))
                .await
                .expect("a bounded put_async hung after the churn")
                .unwrap();
        }
        for _ in 0..CHURN_MAX {
            got.push(within(e, T, puts.get_async()).await.map(|r| r.unwrap()));
        }
        got
    });
    let want: Vec<Option<u64>> = fill.iter().copied().chain(0..CHURN_MAX).map(Some).collect();
    expect(
        got == want,
        format!("the bounded queue gave {got:?}, not {want:?}"),
    );
    let more = e.run(within(e, Duration::from_millis(300), puts.get_async()));
    expect(
        more.is_none(),
        format!("the bounded queue had more: {more:?}"),
    );
    (before, after, wrong)
}

/// See [`churn_redis_async`]: threads and descriptors back exactly, memory within
/// 2 MiB (a pending future left behind, its waker in a line or a room, is some tens of
/// bytes: 40 000 of them a few megabytes).
#[test]
fn redis_async_churn_frees_what_it_made_and_loses_no_item() {
    require_redis!();
    watchdog(120, || {
        let mut p = Process::new(churn_redis_async, (url(), unique("achurn")))
            .start()
            .unwrap();
        p.join_timeout(Duration::from_secs(100)).unwrap();
        let (before, after, wrong) = p.result().unwrap();
        eprintln!("redis async churn: before {before:?}, after {after:?}");
        assert!(wrong.is_empty(), "after the churn: {wrong:#?}");
        assert_eq!(after.1, before.1, "threads grew");
        assert_eq!(after.2, before.2, "descriptors grew");
        assert!(
            after.0 < before.0 + 2 * 1024,
            "memory grew from {} to {} KiB",
            before.0,
            after.0
        );
    });
}
