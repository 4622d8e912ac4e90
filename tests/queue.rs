//! Cross-process tests of `Queue`, `SimpleQueue` and `JoinableQueue`: every row of the
//! API table, processes killed at random moments, and random schedules of producer and
//! consumer processes.

procactor::test_support!();

mod common;

use common::{wait_until, watchdog, Refuses};
use procactor::{
    Connection, ExitStatus, GetError, GetTimeoutError, JoinableQueue, Pipe, Process, PutError,
    PutTimeoutError, Queue, SendError, SimpleQueue, SpawnError, TaskDoneError, TryGetError,
    TryPutError,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ self-checking items

/// A message that says who wrote it and checks itself: `[producer, seq(8), pattern...]`.
fn message(producer: u8, seq: u64, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(9));
    m.push(producer);
    m.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(producer) ^ 1;
    while m.len() < len.max(9) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.push(x as u8);
    }
    m
}

/// `(producer, seq)` if `m` is intact, `None` if torn or garbled.
fn check(m: &[u8]) -> Option<(u8, u64)> {
    if m.len() < 9 {
        return None;
    }
    let p = m[0];
    let seq = u64::from_le_bytes(m[1..9].try_into().ok()?);
    (m == &message(p, seq, m.len())[..]).then_some((p, seq))
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

// ------------------------------------------------------------------ child targets

fn put_hello(q: Queue<String>) {
    q.put("Hello World".to_string()).unwrap();
}

fn put_range((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn put_messages((q, id, sizes): (Queue<Vec<u8>>, u8, Vec<usize>)) {
    for (i, len) in sizes.into_iter().enumerate() {
        q.put_timeout(message(id, i as u64, len), Duration::from_secs(30))
            .unwrap();
    }
}

/// Takes until `Disconnected`; returns `(producer, seq, len)` of every intact message
/// and the number of torn ones, and whether `len()` ever exceeded `maxsize`.
fn consume_all((q, maxsize): (Queue<Vec<u8>>, usize)) -> (Vec<(u8, u64, usize)>, usize, bool) {
    q.close(); // this process only consumes
    let (mut got, mut torn, mut over) = (Vec::new(), 0, false);
    loop {
        match q.get_timeout(Duration::from_secs(30)) {
            Ok(m) => match check(&m) {
                Some((p, s)) => got.push((p, s, m.len())),
                None => torn += 1,
            },
            Err(GetTimeoutError::Disconnected) => break,
            Err(e) => panic!("consumer: {e}"),
        }
        if maxsize > 0 && q.len() > maxsize {
            over = true;
        }
    }
    (got, torn, over)
}

/// Reports what a full bounded queue looks like from another process.
fn probe_full(q: Queue<u32>) -> (usize, bool, bool, bool, u128) {
    let full = q.is_full();
    let try_full = matches!(q.try_put(99), Err(TryPutError::Full(99)));
    let t0 = Instant::now();
    let timed_full = matches!(
        q.put_timeout(98, Duration::from_millis(50)),
        Err(PutTimeoutError::Timeout(98))
    );
    (
        q.len(),
        full,
        try_full,
        timed_full,
        t0.elapsed().as_millis(),
    )
}

fn get_one(q: Queue<u32>) -> u32 {
    q.get_timeout(Duration::from_secs(20)).unwrap()
}

fn try_get_on_empty(q: Queue<u32>) -> (bool, bool, bool, u128) {
    let empty = q.is_empty();
    let nowait = q.try_get() == Err(TryGetError::Empty);
    let t0 = Instant::now();
    let timed = q.get_timeout(Duration::from_millis(50)) == Err(GetTimeoutError::Timeout);
    (empty, nowait, timed, t0.elapsed().as_millis())
}

fn closed_then_put(q: Queue<u32>) -> (bool, bool) {
    q.put(1).unwrap();
    q.close();
    let closed = matches!(q.put(2), Err(PutError::Closed(2)));
    (closed, q.is_closed())
}

fn hold_open_forever(q: Queue<u32>) {
    q.put(7).unwrap();
    loop {
        std::thread::sleep(SEC);
        let _ = &q;
    }
}

fn simple_echo((inq, outq): (SimpleQueue<String>, SimpleQueue<String>)) {
    inq.close();
    while let Ok(s) = inq.get() {
        outq.put(s.to_uppercase()).unwrap();
    }
}

fn joinable_worker((tasks, results): (JoinableQueue<Option<u64>>, Queue<u64>)) {
    while let Ok(t) = tasks.get_timeout(Duration::from_secs(20)) {
        match t {
            Some(n) => {
                std::thread::sleep(Duration::from_millis(2));
                results.put(n * n).unwrap();
                tasks.task_done().unwrap();
            }
            None => {
                tasks.task_done().unwrap();
                break;
            }
        }
    }
}

fn round_trip((req, resp, n): (Queue<u64>, Queue<u64>, u64)) {
    for _ in 0..n {
        let x = req.get_timeout(Duration::from_secs(20)).unwrap();
        resp.put(x + 1).unwrap();
    }
}

/// Puts forever (until killed), self-checking messages of random sizes up to 4x the ring.
fn endless_producer((q, id, seed, max_len): (Queue<Vec<u8>>, u8, u64, usize)) {
    let mut s = seed | 1;
    let mut seq = 0u64;
    loop {
        let len = (rng(&mut s) % max_len as u64) as usize;
        match q.put_timeout(message(id, seq, len), Duration::from_millis(200)) {
            Ok(()) => seq += 1,
            Err(PutTimeoutError::Timeout(_)) => {} // no reader right now: retry the same seq
            Err(e) => panic!("producer: {e}"),
        }
    }
}

/// Gets forever (until killed); exits with code 3 on a torn message.
fn endless_consumer(q: Queue<Vec<u8>>) {
    q.close();
    loop {
        match q.get_timeout(Duration::from_millis(200)) {
            Ok(m) => {
                if check(&m).is_none() {
                    std::process::exit(3);
                }
            }
            Err(GetTimeoutError::Timeout) | Err(GetTimeoutError::Disconnected) => {}
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

// ------------------------------------------------------------------ rows of the table

#[test]
fn child_puts_hello_world_parent_gets_it() {
    watchdog(30, || {
        let q: Queue<String> = Queue::new().unwrap();
        let mut p = Process::new(put_hello, q.clone()).start().unwrap();
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), "Hello World");
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn child_exits_right_after_put_and_nothing_is_lost() {
    // Python's classic hang: joining a process that has put items nobody read yet.
    watchdog(30, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let mut p = Process::new(put_range, (q.clone(), 5000)).start().unwrap();
        // join FIRST: the child is not held back by a feeder thread
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        assert_eq!(q.len(), 5000);
        for i in 0..5000 {
            assert_eq!(q.try_get().unwrap(), i);
        }
        q.close();
        assert_eq!(q.try_get(), Err(TryGetError::Disconnected));
    });
}

#[test]
fn bounded_queue_is_full_in_another_process() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::bounded(3).unwrap();
        assert_eq!(q.maxsize(), 3);
        for i in 0..3 {
            q.put(i).unwrap();
        }
        let mut p = Process::new(probe_full, q.clone()).start().unwrap();
        let (len, full, try_full, timed_full, waited) = p.result().unwrap();
        assert_eq!(len, 3);
        assert!(full && try_full && timed_full);
        assert!(waited >= 50, "put_timeout returned after {waited} ms");
        assert_eq!(q.len(), 3);
    });
}

#[test]
fn blocked_put_is_released_by_a_get_in_another_process() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::bounded(1).unwrap();
        q.put(1).unwrap();
        let mut p = Process::new(get_one, q.clone()).start().unwrap();
        // blocks until the child takes item 1
        q.put_timeout(2, 10 * SEC).unwrap();
        assert_eq!(p.result().unwrap(), 1);
        assert_eq!(q.get().unwrap(), 2);
    });
}

#[test]
fn empty_queue_times_out_in_another_process() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(try_get_on_empty, q.clone()).start().unwrap();
        let (empty, nowait, timed, waited) = p.result().unwrap();
        assert!(empty && nowait && timed);
        assert!(waited >= 50, "get_timeout returned after {waited} ms");
    });
}

#[test]
fn blocked_get_is_released_by_a_put_in_another_process() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(get_one, q.clone()).start().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        q.put(42).unwrap();
        assert_eq!(p.result().unwrap(), 42);
    });
}

#[test]
fn close_refuses_puts_and_disconnects_when_drained() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::new().unwrap();
        q.close();
        assert!(matches!(q.put(0), Err(PutError::Closed(0))));
        assert!(matches!(q.clone().put(0), Err(PutError::Closed(0)))); // clones stay closed
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(closed_then_put, q.clone()).start().unwrap();
        assert_eq!(p.result().unwrap(), (true, true));
        q.close();
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), 1);
        // the child's handle is closed, ours too: nobody can put
        assert_eq!(q.get(), Err(GetError::Disconnected));
    });
}

#[test]
fn a_sigkilled_producer_disconnects_the_queue() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let p = Process::new(hold_open_forever, q.clone()).start().unwrap();
        q.close();
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), 7);
        // the child still holds an open handle: get waits
        assert_eq!(
            q.get_timeout(Duration::from_millis(100)),
            Err(GetTimeoutError::Timeout)
        );
        p.kill().unwrap();
        let t0 = Instant::now();
        assert_eq!(q.get(), Err(GetError::Disconnected));
        assert!(t0.elapsed() < 5 * SEC);
        drop(p);
    });
}

#[test]
fn disconnected_waits_for_every_producer_process() {
    watchdog(60, || {
        let q: Queue<Vec<u8>> = Queue::with_capacity_bytes(4096).unwrap();
        let ps: Vec<_> = (0..3u8)
            .map(|id| {
                Process::new(put_messages, (q.clone(), id, vec![100; 200]))
                    .start()
                    .unwrap()
            })
            .collect();
        q.close();
        let mut n = 0;
        loop {
            match q.get_timeout(20 * SEC) {
                Ok(m) => {
                    check(&m).expect("intact");
                    n += 1;
                }
                Err(GetTimeoutError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(n, 600);
        for mut p in ps {
            assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
        }
    });
}

#[test]
fn messages_four_times_the_ring_stream_between_processes() {
    watchdog(60, || {
        let q: Queue<Vec<u8>> = Queue::with_capacity_bytes(4096).unwrap();
        let sizes = vec![16_384, 0, 4095, 4097, 100, 65_536, 16_000];
        let mut p = Process::new(put_messages, (q.clone(), 1, sizes.clone()))
            .start()
            .unwrap();
        for (i, len) in sizes.iter().enumerate() {
            let m = q.get_timeout(20 * SEC).unwrap();
            assert_eq!(check(&m), Some((1, i as u64)));
            assert_eq!(m.len(), (*len).max(9));
        }
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn many_producers_and_consumers_each_message_once_in_order() {
    watchdog(60, || {
        let q: Queue<Vec<u8>> = Queue::bounded_with_capacity_bytes(16, 8192).unwrap();
        let producers: Vec<_> = (0..3u8)
            .map(|id| {
                let sizes = (0..300)
                    .map(|i| (i * 37 + usize::from(id)) % 3000)
                    .collect();
                Process::new(put_messages, (q.clone(), id, sizes))
                    .start()
                    .unwrap()
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| Process::new(consume_all, (q.clone(), 16)).start().unwrap())
            .collect();
        q.close();
        let mut seen = HashSet::new();
        for mut c in consumers {
            let (got, torn, over) = c.result().unwrap();
            assert_eq!(torn, 0);
            assert!(!over, "bounded queue exceeded maxsize");
            let mut last = BTreeMap::new();
            for (p, s, _) in got {
                if let Some(prev) = last.insert(p, s) {
                    assert!(s > prev, "producer {p}: {s} after {prev}");
                }
                assert!(seen.insert((p, s)), "duplicate {p}/{s}");
            }
        }
        assert_eq!(seen.len(), 900);
        for mut p in producers {
            assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
        }
    });
}

#[test]
fn round_trip_between_two_processes() {
    watchdog(30, || {
        let req: Queue<u64> = Queue::new().unwrap();
        let resp: Queue<u64> = Queue::new().unwrap();
        let mut p = Process::new(round_trip, (req.clone(), resp.clone(), 1000))
            .start()
            .unwrap();
        for i in 0..1000 {
            req.put(i).unwrap();
            assert_eq!(resp.get_timeout(10 * SEC).unwrap(), i + 1);
        }
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn simple_queue_across_processes() {
    watchdog(30, || {
        let inq: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let outq: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let mut p = Process::new(simple_echo, (inq.clone(), outq.clone()))
            .start()
            .unwrap();
        for w in ["a", "bc", "def"] {
            inq.put(w.to_string()).unwrap();
        }
        inq.close();
        assert!(matches!(inq.put("x".into()), Err(PutError::Closed(_))));
        // the child ends when every producer of `inq` is gone
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        assert!(!outq.is_empty());
        outq.close();
        let got: Vec<String> = std::iter::from_fn(|| outq.get().ok()).collect();
        assert_eq!(got, ["A", "BC", "DEF"]);
        assert!(outq.is_empty());
    });
}

#[test]
fn joinable_queue_join_waits_for_task_done_in_other_processes() {
    watchdog(30, || {
        let tasks: JoinableQueue<Option<u64>> = JoinableQueue::new().unwrap();
        let results: Queue<u64> = Queue::new().unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                Process::new(joinable_worker, (tasks.clone(), results.clone()))
                    .start()
                    .unwrap()
            })
            .collect();
        for i in 0..20 {
            tasks.put(Some(i)).unwrap();
        }
        for _ in 0..2 {
            tasks.put(None).unwrap();
        }
        assert!(tasks.join_timeout(20 * SEC).is_ok());
        assert_eq!(tasks.unfinished_tasks(), 0);
        // every result is already there: join means the work is done
        let mut got: Vec<u64> = (0..20).map(|_| results.try_get().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..20).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(tasks.task_done(), Err(TaskDoneError));
        for mut w in workers {
            assert_eq!(w.join().unwrap(), ExitStatus::Code(0));
        }
        tasks.join();
    });
}

#[test]
fn joinable_join_times_out_while_tasks_are_pending() {
    watchdog(30, || {
        let tasks: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        tasks.put(1).unwrap();
        let t0 = Instant::now();
        assert!(tasks.join_timeout(Duration::from_millis(50)).is_err());
        assert!(t0.elapsed() >= Duration::from_millis(50));
    });
}

#[test]
fn an_item_that_cannot_be_encoded_comes_back_and_the_queue_goes_on() {
    watchdog(30, || {
        let q: Queue<Queue<u8>> = Queue::new().unwrap();
        let inner: Queue<u8> = Queue::new().unwrap();
        match q.put(inner) {
            Err(e @ PutError::Encode(..)) => {
                assert!(format!("{e:?}").starts_with("Encode(.."));
                let _back: Queue<u8> = e.into_inner();
            }
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
    });
}

/// Either a good item, or one that fails to encode after a prefix of `Vec` bytes has
/// already gone into the encode buffer.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Item {
    Good(Vec<u8>),
    Bad(Vec<u8>, Refuses),
}

/// In a child: a failed put (with a large prefix already encoded), then good puts, on
/// the same handle. Returns whether the failed put gave the item back as `Encode`.
fn bad_put_then_good_puts(q: Queue<Item>) -> bool {
    let refused = match q.put(Item::Bad(vec![0xEE; 1 << 20], Refuses)) {
        Err(PutError::Encode(Item::Bad(prefix, Refuses), e)) => {
            prefix.len() == 1 << 20 && e.0.contains("refuses")
        }
        _ => false,
    };
    q.put(Item::Good(message(7, 0, 100))).unwrap();
    q.put(Item::Good(message(7, 1, 5000))).unwrap();
    refused
}

#[test]
fn after_an_item_fails_to_encode_the_same_handle_puts_and_gets() {
    watchdog(30, || {
        let q: Queue<Item> = Queue::with_capacity_bytes(4096).unwrap();
        // the failure comes after 1 MiB (256x the ring) of the item is already encoded
        for prefix in [0, 10, 1 << 20] {
            match q.put(Item::Bad(vec![0xEE; prefix], Refuses)) {
                Err(e @ PutError::Encode(..)) => {
                    assert!(!e.is_too_large() && !e.is_closed() && !e.is_broken());
                    assert!(e.to_string().contains("refuses"), "{e}");
                    assert_eq!(e.into_inner(), Item::Bad(vec![0xEE; prefix], Refuses));
                }
                other => panic!("{other:?}"),
            }
            assert!(q.is_empty());
            assert_eq!(q.len(), 0);
            // nothing of the refused item was written: the next get is the next put
            let good = Item::Good(message(1, prefix as u64, 50));
            q.put(good).unwrap();
            assert_eq!(q.len(), 1);
            assert_eq!(
                q.get_timeout(SEC).unwrap(),
                Item::Good(message(1, prefix as u64, 50))
            );
            assert_eq!(q.try_get(), Err(TryGetError::Empty));
        }
        // try_put and put_timeout refuse it the same way
        assert!(matches!(
            q.try_put(Item::Bad(vec![], Refuses)),
            Err(TryPutError::Encode(..))
        ));
        assert!(matches!(
            q.put_timeout(Item::Bad(vec![], Refuses), SEC),
            Err(PutTimeoutError::Encode(..))
        ));
        assert!(!q.is_broken());

        // the same from another process, on the handle it got in its arguments
        let mut p = Process::new(bad_put_then_good_puts, q.clone())
            .start()
            .unwrap();
        for i in 0..2 {
            match q.get_timeout(10 * SEC).unwrap() {
                Item::Good(m) => assert_eq!(check(&m), Some((7, i))),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            p.result().unwrap(),
            "the child's failed put was not an Encode error"
        );
        q.close();
        assert_eq!(q.get_timeout(10 * SEC), Err(GetTimeoutError::Disconnected));
    });
}

#[test]
fn a_joinable_put_that_fails_to_encode_counts_no_task() {
    watchdog(30, || {
        let q: JoinableQueue<Item> = JoinableQueue::new().unwrap();
        assert!(matches!(
            q.put(Item::Bad(vec![1; 1000], Refuses)),
            Err(PutError::Encode(..))
        ));
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.join_timeout(Duration::from_millis(10)).is_ok());
        q.put(Item::Good(vec![2])).unwrap();
        assert_eq!(q.unfinished_tasks(), 1);
        assert_eq!(q.get_timeout(SEC).unwrap(), Item::Good(vec![2]));
        q.task_done().unwrap();
        assert!(q.join_timeout(SEC).is_ok());
        assert_eq!(q.task_done(), Err(TaskDoneError));
    });
}

/// An item type with no `Debug` impl.
#[derive(Serialize, Deserialize, PartialEq)]
struct NoDebug(u32);

#[test]
fn put_errors_format_without_the_item_being_debug() {
    watchdog(30, || {
        let q: Queue<NoDebug> = Queue::bounded(1).unwrap();
        // `unwrap` needs `PutError<NoDebug>: Debug`: this line compiles only without `T: Debug`
        q.put(NoDebug(1)).unwrap();
        let e = q.try_put(NoDebug(2)).unwrap_err();
        assert_eq!(format!("{e:?}"), "Full(..)");
        assert_eq!(e.to_string(), "queue is full");
        assert!(e.is_full());
        assert!(e.into_inner() == NoDebug(2));
        q.close();
        let e = q.put(NoDebug(3)).unwrap_err();
        assert_eq!(format!("{e:?}"), "Closed(..)");
        assert!(e.is_closed() && !e.is_too_large() && !e.is_broken());
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        assert_eq!(boxed.to_string(), "queue is closed");
        let e: procactor::Error = q.put(NoDebug(4)).unwrap_err().into();
        assert!(
            matches!(e, procactor::Error::Put(ref m) if m == "queue is closed"),
            "{e:?}"
        );
        assert!(q.get().unwrap() == NoDebug(1));
    });
}

// ------------------------------------------------------------------ handles travel through a Pipe

/// Started with only a Pipe end; gets `(queue, word)` through it, puts the word in
/// capitals, says "done" through the pipe.
fn put_on_a_queue_from_the_pipe(control: Connection<String, (Queue<String>, String)>) {
    let (q, word) = control.recv_timeout(20 * SEC).unwrap();
    q.put(word.to_uppercase()).unwrap();
    control.send(&"done".to_string()).unwrap();
}

#[test]
fn a_queue_sent_through_a_pipe_after_start_carries_items_back() {
    watchdog(30, || {
        let (control, child_end) = Pipe::typed::<(Queue<String>, String), String>().unwrap();
        let mut p = Process::new(put_on_a_queue_from_the_pipe, child_end)
            .start()
            .unwrap();
        // the child is running before the queue even exists
        let q: Queue<String> = Queue::new().unwrap();
        control.send(&(q.clone(), "hello".to_string())).unwrap();
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), "HELLO");
        assert_eq!(control.recv_timeout(10 * SEC).unwrap(), "done");
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        // the handle's producer count moved to the child and left with it: once ours is
        // closed, nobody can put
        q.close();
        assert_eq!(q.get_timeout(10 * SEC), Err(GetTimeoutError::Disconnected));
    });
}

/// Gets a JoinableQueue through the pipe, takes one item, marks it done, and reports it.
fn take_a_task_from_the_pipe(control: Connection<u64, JoinableQueue<u64>>) {
    let q = control.recv_timeout(20 * SEC).unwrap();
    q.close(); // this process only takes
    let x = q.get_timeout(20 * SEC).unwrap();
    q.task_done().unwrap();
    control.send(&x).unwrap();
}

#[test]
fn a_joinable_queue_sent_through_a_pipe_after_start_is_joined_across_processes() {
    watchdog(30, || {
        let (control, child_end) = Pipe::typed::<JoinableQueue<u64>, u64>().unwrap();
        let mut p = Process::new(take_a_task_from_the_pipe, child_end)
            .start()
            .unwrap();
        let q: JoinableQueue<u64> = JoinableQueue::new().unwrap();
        q.put(41).unwrap();
        assert_eq!(q.unfinished_tasks(), 1);
        control.send(&q).unwrap();
        // returns only once the child has called task_done
        assert!(q.join_timeout(10 * SEC).is_ok());
        assert_eq!(q.unfinished_tasks(), 0);
        assert_eq!(control.recv_timeout(10 * SEC).unwrap(), 41);
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        q.close();
        assert_eq!(q.get_timeout(10 * SEC), Err(GetTimeoutError::Disconnected));
    });
}

/// Gets a SimpleQueue through the pipe and puts on it.
fn put_on_a_simple_queue_from_the_pipe(control: Connection<(), SimpleQueue<Vec<u8>>>) {
    let q = control.recv_timeout(20 * SEC).unwrap();
    q.put(message(3, 0, 10)).unwrap();
    // larger than the default ring: streamed
    q.put(message(3, 1, 600 * 1024)).unwrap();
}

#[test]
fn a_simple_queue_sent_through_a_pipe_after_start_carries_items_back() {
    watchdog(30, || {
        let (control, child_end) = Pipe::typed::<SimpleQueue<Vec<u8>>, ()>().unwrap();
        let mut p = Process::new(put_on_a_simple_queue_from_the_pipe, child_end)
            .start()
            .unwrap();
        let q: SimpleQueue<Vec<u8>> = SimpleQueue::new().unwrap();
        control.send(&q).unwrap();
        q.close(); // only the child's handle is a producer now
        assert_eq!(check(&q.get().unwrap()), Some((3, 0)));
        let big = q.get().unwrap();
        assert_eq!((check(&big), big.len()), (Some((3, 1)), 600 * 1024));
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        assert!(q.is_empty());
        assert_eq!(q.get(), Err(GetError::Disconnected));
    });
}

/// Makes a queue, hands it to the parent through the pipe, puts on it, and exits.
fn hand_a_queue_back(control: Connection<Queue<u32>, ()>) {
    let q: Queue<u32> = Queue::new().unwrap();
    control.send(&q).unwrap();
    q.put(5).unwrap();
    q.put(6).unwrap();
}

#[test]
fn a_queue_made_by_a_child_outlives_it_in_the_parent() {
    watchdog(30, || {
        let (control, child_end) = Pipe::typed::<(), Queue<u32>>().unwrap();
        let mut p = Process::new(hand_a_queue_back, child_end).start().unwrap();
        let q = control.recv_timeout(10 * SEC).unwrap();
        // the creator is gone; its shared memory lives on in our handle
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Code(0));
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), 5);
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), 6);
        q.put(7).unwrap();
        assert_eq!(q.get_timeout(10 * SEC).unwrap(), 7);
        q.close();
        assert_eq!(q.get_timeout(10 * SEC), Err(GetTimeoutError::Disconnected));
    });
}

fn never_runs((_q, _r): (Queue<u8>, Refuses)) {}

/// A `Queue` handle counts as a producer of the sender while it travels; when its
/// message does not go out after all (the rest fails to encode, the peer is gone, the
/// child cannot be given its arguments) that count is undone, so the sender's queue
/// still reports `Disconnected` once its own handles are closed.
#[test]
fn a_queue_in_a_message_that_is_not_sent_leaves_no_producer_behind() {
    watchdog(30, || {
        let disconnected = |q: &Queue<u8>, what: &str| {
            q.close();
            assert_eq!(
                q.get_timeout(10 * SEC),
                Err(GetTimeoutError::Disconnected),
                "{what}: a producer count was left behind"
            );
        };
        // 1. the rest of a Pipe message fails to encode
        let (a, b) = Pipe::typed::<(Queue<u8>, Refuses), ()>().unwrap();
        let q: Queue<u8> = Queue::new().unwrap();
        match a.send(&(q.clone(), Refuses)) {
            Err(SendError::Encode(e)) => assert!(e.0.contains("refuses"), "{e}"),
            other => panic!("{other:?}"),
        }
        disconnected(&q, "failed encode");
        // 2. the peer is gone: the encoded message cannot be written
        drop(b);
        let (a2, b2) = Pipe::typed::<Queue<u8>, ()>().unwrap();
        drop(b2);
        let q: Queue<u8> = Queue::new().unwrap();
        match a2.send(&q) {
            Err(SendError::Disconnected) => {}
            other => panic!("{other:?}"),
        }
        disconnected(&q, "send to a closed peer");
        // 3. a child's arguments fail to encode
        let q: Queue<u8> = Queue::new().unwrap();
        match Process::new(never_runs, (q.clone(), Refuses)).start() {
            Err(SpawnError::Encode(_)) => {}
            other => panic!("{:?}", other.map(|p| p.pid())),
        }
        disconnected(&q, "failed spawn");
        drop(a);
    });
}

// ------------------------------------------------------------------ killed processes

/// What the parent has taken so far: last sequence number per producer.
#[derive(Default)]
struct Tally {
    last: BTreeMap<u8, u64>,
    received: usize,
}

impl Tally {
    /// Takes one message (or times out): intact, in order per producer.
    fn take(&mut self, q: &Queue<Vec<u8>>, wait: Duration) {
        match q.get_timeout(wait) {
            Ok(m) => {
                let (p, s) = check(&m).expect("torn message");
                if let Some(prev) = self.last.insert(p, s) {
                    assert!(s > prev, "producer {p}: {s} after {prev}");
                }
                self.received += 1;
            }
            Err(GetTimeoutError::Timeout) => {}
            Err(e) => panic!("parent get: {e}"),
        }
    }
}

/// Producers and consumers (some streaming messages 4x the ring) are SIGKILLed at random
/// moments; the parent, taking messages too, never hangs and never sees a torn message,
/// per-producer order holds, and afterwards the queue still works.
#[test]
fn sigkill_at_random_moments_never_tears_or_hangs() {
    watchdog(240, || {
        const RING: usize = 4096;
        let mut seed = common::test_seed("sigkill test") | 1;
        let q: Queue<Vec<u8>> = Queue::with_capacity_bytes(RING).unwrap();
        let mut t = Tally::default();
        for round in 0..12u8 {
            let max_len = if round % 2 == 0 { 4 * RING } else { 600 };
            let prod = Process::new(
                endless_producer,
                (q.clone(), round, rng(&mut seed), max_len),
            )
            .start()
            .unwrap();
            let cons = Process::new(endless_consumer, q.clone()).start().unwrap();
            let until = Instant::now() + Duration::from_millis(50 + rng(&mut seed) % 150);
            while Instant::now() < until {
                t.take(&q, Duration::from_millis(20));
            }
            let mut kill_prod = !rng(&mut seed).is_multiple_of(3);
            let kill_cons = !rng(&mut seed).is_multiple_of(3);
            if !kill_prod && !kill_cons {
                kill_prod = true;
            }
            let (mut prod, mut cons) = (prod, cons);
            if kill_cons {
                cons.kill().unwrap();
            }
            if kill_prod {
                prod.kill().unwrap();
            }
            // keep taking for a moment with only the survivors
            let until = Instant::now() + Duration::from_millis(rng(&mut seed) % 60);
            while Instant::now() < until {
                t.take(&q, Duration::from_millis(10));
            }
            prod.kill().unwrap();
            cons.kill().unwrap();
            let st = prod.join_timeout(30 * SEC).expect("producer exit");
            assert_eq!(st, ExitStatus::Signal(9), "producer failed: {st}");
            let st = cons.join_timeout(30 * SEC).expect("consumer exit");
            assert_eq!(
                st,
                ExitStatus::Signal(9),
                "consumer saw a torn message: {st}"
            );
            assert!(!q.is_broken());
        }
        // after all that, the queue still works, big messages included
        let mut fresh = Process::new(put_messages, (q.clone(), 200, vec![3, 4 * RING, 50]))
            .start()
            .unwrap();
        let t0 = Instant::now();
        let mut fresh_seen = 0;
        while fresh_seen < 3 {
            assert!(t0.elapsed() < 60 * SEC, "queue did not recover");
            let before = t.last.get(&200).copied();
            t.take(&q, Duration::from_millis(100));
            if t.last.get(&200).copied() != before {
                fresh_seen += 1;
            }
        }
        assert_eq!(fresh.join_timeout(60 * SEC).unwrap(), ExitStatus::Code(0));
        assert!(t.received > 3);
        q.close();
        // drain what the killed producers left; then nobody can put any more
        loop {
            match q.get_timeout(10 * SEC) {
                Ok(m) => {
                    check(&m).expect("torn message");
                }
                Err(GetTimeoutError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
    });
}

fn put_big_then_small((q, big): (Queue<Vec<u8>>, usize)) {
    q.put(message(50, 0, big)).unwrap();
    q.put(message(50, 1, 20)).unwrap();
    loop {
        std::thread::sleep(SEC);
    }
}

fn signal_then_get((q, ready): (Queue<Vec<u8>>, Queue<String>)) {
    ready.put("reading".into()).unwrap();
    let m = q.get().unwrap();
    ready
        .put(if check(&m).is_some() { "done" } else { "torn" }.into())
        .unwrap();
    loop {
        std::thread::sleep(SEC);
    }
}

#[test]
fn a_writer_killed_while_streaming_leaves_no_torn_message() {
    watchdog(30, || {
        // bounded: an item larger than the ring is streamed (an unbounded queue puts it
        // in its overflow area instead)
        let q: Queue<Vec<u8>> = Queue::bounded_with_capacity_bytes(100, 4096).unwrap();
        // nobody reads: the child blocks in the middle of streaming 4x the ring
        let p = Process::new(put_big_then_small, (q.clone(), 4 * 4096))
            .start()
            .unwrap();
        wait_until(10 * SEC, "the producer to get going", || !q.is_empty());
        std::thread::sleep(Duration::from_millis(50));
        p.kill().unwrap();
        drop(p);
        // the half-streamed message is aborted, never delivered; the queue goes on
        assert_eq!(
            q.get_timeout(Duration::from_millis(300)),
            Err(GetTimeoutError::Timeout)
        );
        assert!(!q.is_broken());
        let mut c = Process::new(put_messages, (q.clone(), 9, vec![4 * 4096, 5]))
            .start()
            .unwrap();
        for i in 0..2 {
            let m = q.get_timeout(10 * SEC).unwrap();
            assert_eq!(check(&m), Some((9, i)));
        }
        assert_eq!(c.join().unwrap(), ExitStatus::Code(0));
        q.close();
        assert_eq!(q.get(), Err(GetError::Disconnected));
    });
}

fn put_two_tasks_then_big((q, big): (JoinableQueue<Vec<u8>>, usize)) {
    q.put(message(60, 0, 10)).unwrap();
    q.put(message(60, 1, 10)).unwrap();
    q.put(message(60, 2, big)).unwrap();
    loop {
        std::thread::sleep(SEC);
    }
}

#[test]
fn a_producer_killed_mid_put_leaves_no_task_for_join_to_wait_for() {
    watchdog(30, || {
        // bounded, so that an item larger than the ring is streamed
        let q: JoinableQueue<Vec<u8>> = JoinableQueue::bounded(100).unwrap();
        let big = 4 * procactor::DEFAULT_CAPACITY_BYTES;
        // two small tasks, then a task 4x the ring that blocks mid-stream (nobody reads)
        let p = Process::new(put_two_tasks_then_big, (q.clone(), big))
            .start()
            .unwrap();
        wait_until(10 * SEC, "the producer to get going", || {
            q.unfinished_tasks() >= 2 && q.len() >= 3
        });
        std::thread::sleep(Duration::from_millis(50));
        // the big item is half in the ring, and not counted as a task
        assert_eq!(q.unfinished_tasks(), 2);
        p.kill().unwrap();
        drop(p);
        for i in 0..2 {
            let m = q.get_timeout(10 * SEC).unwrap();
            assert_eq!(check(&m), Some((60, i)));
            q.task_done().unwrap();
        }
        // the killed put left neither its item nor a task
        assert!(q.join_timeout(10 * SEC).is_ok());
        assert_eq!(
            q.get_timeout(Duration::from_millis(200)),
            Err(GetTimeoutError::Timeout)
        );
        assert_eq!(q.task_done(), Err(TaskDoneError));
    });
}

#[test]
fn a_reader_killed_while_reassembling_leaves_no_torn_message() {
    watchdog(240, || {
        const BIG: usize = 64 << 20;
        // bounded, so that the big item is streamed and reassembled
        let q: Queue<Vec<u8>> = Queue::bounded_with_capacity_bytes(100, 4096).unwrap();
        let ready: Queue<String> = Queue::new().unwrap();
        let p = Process::new(put_big_then_small, (q.clone(), BIG))
            .start()
            .unwrap();
        // (the producer builds and encodes 64 MiB first: on a loaded machine, with the
        // suite's other tests beside it, that took over 20 s once)
        wait_until(60 * SEC, "the producer to get going", || !q.is_empty());
        let c = Process::new(signal_then_get, (q.clone(), ready.clone()))
            .start()
            .unwrap();
        assert_eq!(ready.get_timeout(30 * SEC).unwrap(), "reading");
        std::thread::sleep(Duration::from_millis(10));
        c.kill().unwrap();
        drop(c);
        let got = ready.try_get();
        let m = q.get_timeout(30 * SEC).unwrap();
        match (check(&m), got.as_deref()) {
            // the dead reader took part of the big message (the rest is skipped) or all
            // of it: the next message arrives intact
            (Some((50, 1)), Err(TryGetError::Empty) | Ok("done")) => {}
            // on a loaded machine the reader may be killed before it took anything: the
            // big message is still whole, then the small one
            (Some((50, 0)), Err(TryGetError::Empty)) => {
                let next = q.get_timeout(30 * SEC).unwrap();
                assert_eq!(check(&next), Some((50, 1)), "expected the small message");
            }
            (seen, got) => panic!("torn or out of order: {seen:?}, the reader said {got:?}"),
        }
        p.kill().unwrap();
    });
}

// ------------------------------------------------------------------ random schedules

fn run_schedule(ring: usize, maxsize: usize, producers: Vec<Vec<usize>>, consumers: usize) {
    let q: Queue<Vec<u8>> = Queue::bounded_with_capacity_bytes(maxsize, ring).unwrap();
    let total: usize = producers.iter().map(Vec::len).sum();
    let expected: BTreeMap<(u8, u64), usize> = producers
        .iter()
        .enumerate()
        .flat_map(|(p, sizes)| {
            sizes
                .iter()
                .enumerate()
                .map(move |(i, len)| ((p as u8, i as u64), (*len).max(9)))
        })
        .collect();
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            Process::new(consume_all, (q.clone(), maxsize))
                .start()
                .unwrap()
        })
        .collect();
    let ps: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(id, sizes)| {
            Process::new(put_messages, (q.clone(), id as u8, sizes))
                .start()
                .unwrap()
        })
        .collect();
    q.close();
    let mut seen = BTreeMap::new();
    for mut c in cs {
        let (got, torn, over) = c.result().unwrap();
        assert_eq!(torn, 0, "torn messages");
        assert!(!over, "more than maxsize items");
        let mut last = BTreeMap::new();
        for (p, s, len) in got {
            if let Some(prev) = last.insert(p, s) {
                assert!(s > prev, "producer {p}: {s} after {prev}");
            }
            assert!(seen.insert((p, s), len).is_none(), "duplicate {p}/{s}");
        }
    }
    assert_eq!(seen.len(), total);
    assert_eq!(seen, expected);
    for mut p in ps {
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    }
}

proptest! {
    #![proptest_config(common::proptest_config(6))]
    #[test]
    fn any_schedule_of_processes_delivers_everything_once_intact_in_order(
        producers in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![0usize..64, 0usize..2048, 0usize..4 * 2048], 0..25),
            1..=4),
        consumers in 1usize..=4,
        maxsize in prop_oneof![Just(0usize), 1usize..6],
    ) {
        watchdog(60, move || run_schedule(2048, maxsize, producers, consumers));
    }
}

// ------------------------------------------------------------------ unbounded queues

/// Python's classic worker: squares jobs until a poison pill, one `task_done` per item.
fn squaring_worker((tasks, results): (JoinableQueue<Option<u64>>, Queue<u64>)) {
    tasks.close();
    while let Ok(t) = tasks.get_timeout(Duration::from_secs(60)) {
        match t {
            Some(n) => {
                results.put(n * n).unwrap();
                tasks.task_done().unwrap();
            }
            None => {
                tasks.task_done().unwrap();
                break;
            }
        }
    }
}

/// 50 000 jobs, 2 consumers, poison pills: the parent puts everything, then joins the
/// tasks queue, and only then reads the results (which pile up past the hot ring while
/// it waits in `join`, where a byte-bounded ring would hang both sides).
fn fifty_thousand_jobs(consumers_first: bool) {
    const JOBS: u64 = 50_000;
    const WORKERS: usize = 2;
    let tasks: JoinableQueue<Option<u64>> = JoinableQueue::new().unwrap();
    let results: Queue<u64> = Queue::new().unwrap();
    let start = || -> Vec<Process> {
        (0..WORKERS)
            .map(|_| {
                Process::new(squaring_worker, (tasks.clone(), results.clone()))
                    .start()
                    .unwrap()
            })
            .collect()
    };
    let mut workers = if consumers_first { start() } else { Vec::new() };
    let t0 = Instant::now();
    for i in 0..JOBS {
        tasks.put(Some(i)).unwrap();
    }
    for _ in 0..WORKERS {
        tasks.put(None).unwrap();
    }
    let put_time = t0.elapsed();
    if !consumers_first {
        // everything is in the queue before any consumer exists
        assert_eq!(tasks.len() as u64, JOBS + WORKERS as u64);
        assert_eq!(tasks.unfinished_tasks(), JOBS + WORKERS as u64);
        workers = start();
    }
    assert!(tasks.join_timeout(120 * SEC).is_ok(), "join never returned");
    let mut sum = 0u64;
    for _ in 0..JOBS {
        sum += results.get_timeout(10 * SEC).unwrap();
    }
    assert_eq!(sum, (0..JOBS).map(|i| i * i).sum::<u64>());
    assert_eq!(results.try_get(), Err(TryGetError::Empty));
    for mut w in workers {
        assert_eq!(w.join_timeout(20 * SEC).unwrap(), ExitStatus::Code(0));
    }
    eprintln!(
        "50k jobs (consumers first: {consumers_first}): puts {put_time:?}, all {:?}",
        t0.elapsed()
    );
}

#[test]
fn fifty_thousand_joinable_jobs_with_consumers_started_first() {
    watchdog(180, || fifty_thousand_jobs(true));
}

#[test]
fn fifty_thousand_joinable_jobs_all_put_before_any_consumer_starts() {
    watchdog(180, || fifty_thousand_jobs(false));
}

/// Takes exactly `n` items; returns their sum.
fn sum_of((q, n): (Queue<u64>, u64)) -> u64 {
    q.close();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(q.get_timeout(Duration::from_secs(30)).unwrap());
    }
    sum
}

#[test]
fn ten_million_u64_put_before_any_consumer_then_drained_by_a_child() {
    watchdog(300, || {
        const N: u64 = 10_000_000;
        let q: Queue<u64> = Queue::new().unwrap();
        let t0 = Instant::now();
        for i in 0..N {
            // try_put: an unbounded queue never needs to wait for room
            q.try_put(i * 3).unwrap();
        }
        let put_time = t0.elapsed();
        assert_eq!(q.len() as u64, N);
        assert!(!q.is_full());
        let mut c = Process::new(sum_of, (q.clone(), N)).start().unwrap();
        assert_eq!(c.result().unwrap(), 3 * N * (N - 1) / 2);
        assert!(q.is_empty());
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
        eprintln!("10M u64: puts {put_time:?}, all {:?}", t0.elapsed());
    });
}

#[test]
fn an_item_four_times_the_ring_is_put_and_got_on_one_thread() {
    watchdog(60, || {
        let q: Queue<procactor::Bytes> = Queue::new().unwrap();
        let big: Vec<u8> = (0..4 * procactor::DEFAULT_CAPACITY_BYTES)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        q.try_put(procactor::Bytes::from(big.clone())).unwrap();
        q.try_put(procactor::Bytes::from(vec![1, 2, 3])).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(&q.try_get().unwrap()[..], &big[..]);
        assert_eq!(&q.try_get().unwrap()[..], &[1, 2, 3]);
        // a SimpleQueue and a JoinableQueue too
        let s: SimpleQueue<procactor::Bytes> = SimpleQueue::new().unwrap();
        s.put(procactor::Bytes::from(big.clone())).unwrap();
        assert_eq!(&s.get().unwrap()[..], &big[..]);
        let j: JoinableQueue<procactor::Bytes> = JoinableQueue::new().unwrap();
        j.put(procactor::Bytes::from(big.clone())).unwrap();
        assert_eq!(&j.get().unwrap()[..], &big[..]);
        j.task_done().unwrap();
        assert!(j.join_timeout(SEC).is_ok());
    });
}

/// Puts self-checking messages until killed, never waiting (the queue is unbounded).
fn endless_unbounded_producer((q, id, max_len): (Queue<Vec<u8>>, u8, usize)) {
    let mut s = (u64::from(id) * 0x9e37_79b9) | 1;
    let mut seq = 0u64;
    loop {
        let len = (rng(&mut s) % max_len as u64) as usize;
        q.try_put(message(id, seq, len)).unwrap();
        seq += 1;
    }
}

#[test]
fn a_producer_killed_while_the_queue_is_in_overflow_mode_loses_nothing_else() {
    watchdog(120, || {
        const RING: usize = 4096;
        let q: Queue<Vec<u8>> = Queue::with_capacity_bytes(RING).unwrap();
        // nobody reads: the killed producer has filled the hot ring many times over, so
        // it is writing into the overflow area when it dies
        let mut p = Process::new(endless_unbounded_producer, (q.clone(), 1, 2 * RING))
            .start()
            .unwrap();
        // 200 messages of 4 KiB on average: some 200 times the hot ring
        wait_until(30 * SEC, "a backlog far larger than the ring", || {
            q.len() > 200
        });
        p.kill().unwrap();
        assert_eq!(p.join_timeout(10 * SEC).unwrap(), ExitStatus::Signal(9));
        // another producer goes on after it, through the same overflow area
        let sizes: Vec<usize> = (0..300).map(|i| (i * 37) % (3 * RING)).collect();
        let mut p2 = Process::new(put_messages, (q.clone(), 2, sizes.clone()))
            .start()
            .unwrap();
        assert_eq!(p2.join_timeout(30 * SEC).unwrap(), ExitStatus::Code(0));
        q.close();
        // everything the dead producer finished putting, then all of the second's
        let mut last1 = None;
        let mut second = Vec::new();
        loop {
            match q.get_timeout(10 * SEC) {
                Ok(m) => match check(&m).expect("torn message") {
                    (1, s) => {
                        assert!(second.is_empty(), "producer 1 after producer 2");
                        assert_eq!(s, last1.map_or(0, |l| l + 1), "gap in producer 1");
                        last1 = Some(s);
                    }
                    (2, s) => second.push(s),
                    other => panic!("{other:?}"),
                },
                Err(GetTimeoutError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(last1.is_some_and(|l| l > 100), "{last1:?}");
        assert_eq!(second, (0..300).collect::<Vec<u64>>());
        assert!(!q.is_broken());
    });
}

/// Each operation's error names only what it can return (issue 22): the matches below
/// are exhaustive without a wildcard, so a variant added to (or an `Empty`/`Full` put
/// back into) a blocking operation's error stops this file from compiling.
#[test]
fn each_operation_has_its_own_error_type() {
    watchdog(30, || {
        let q: Queue<u8> = Queue::bounded(1).unwrap();
        let what_get = |r: Result<u8, GetError>| match r {
            Ok(x) => format!("item {x}"),
            Err(GetError::Disconnected) => "disconnected".into(),
            Err(GetError::Broken) => "broken".into(),
            Err(GetError::Decode(_)) => "decode".into(),
        };
        let what_try_get = |r: Result<u8, TryGetError>| match r {
            Ok(x) => format!("item {x}"),
            Err(TryGetError::Empty) => "empty".into(),
            Err(TryGetError::Disconnected) => "disconnected".into(),
            Err(TryGetError::Broken) => "broken".into(),
            Err(TryGetError::Decode(_)) => "decode".into(),
        };
        let what_get_timeout = |r: Result<u8, GetTimeoutError>| match r {
            Ok(x) => format!("item {x}"),
            Err(GetTimeoutError::Timeout) => "timeout".into(),
            Err(GetTimeoutError::Disconnected) => "disconnected".into(),
            Err(GetTimeoutError::Broken) => "broken".into(),
            Err(GetTimeoutError::Decode(_)) => "decode".into(),
        };
        let what_put = |r: Result<(), PutError<u8>>| match r {
            Ok(()) => "ok".to_string(),
            Err(PutError::Closed(x)) => format!("closed {x}"),
            Err(PutError::Broken(x)) => format!("broken {x}"),
            Err(PutError::Encode(x, _)) => format!("encode {x}"),
            Err(PutError::TooLarge(x)) => format!("too large {x}"),
        };
        let what_try_put = |r: Result<(), TryPutError<u8>>| match r {
            Ok(()) => "ok".to_string(),
            Err(TryPutError::Full(x)) => format!("full {x}"),
            Err(TryPutError::Closed(x)) => format!("closed {x}"),
            Err(TryPutError::Broken(x)) => format!("broken {x}"),
            Err(TryPutError::Encode(x, _)) => format!("encode {x}"),
            Err(TryPutError::TooLarge(x)) => format!("too large {x}"),
        };
        let what_put_timeout = |r: Result<(), PutTimeoutError<u8>>| match r {
            Ok(()) => "ok".to_string(),
            Err(PutTimeoutError::Timeout(x)) => format!("timeout {x}"),
            Err(PutTimeoutError::Closed(x)) => format!("closed {x}"),
            Err(PutTimeoutError::Broken(x)) => format!("broken {x}"),
            Err(PutTimeoutError::Encode(x, _)) => format!("encode {x}"),
            Err(PutTimeoutError::TooLarge(x)) => format!("too large {x}"),
        };
        let ms = Duration::from_millis(5);
        assert_eq!(what_try_get(q.try_get()), "empty");
        assert_eq!(what_get_timeout(q.get_timeout(ms)), "timeout");
        assert_eq!(what_put(q.put(1)), "ok");
        assert_eq!(what_try_put(q.try_put(2)), "full 2");
        assert_eq!(what_put_timeout(q.put_timeout(3, ms)), "timeout 3");
        assert_eq!(what_get(q.get()), "item 1");
        q.close();
        assert_eq!(what_put(q.put(4)), "closed 4");
        assert_eq!(what_try_put(q.try_put(5)), "closed 5");
        assert_eq!(what_put_timeout(q.put_timeout(6, ms)), "closed 6");
        assert_eq!(what_get(q.get()), "disconnected");
        assert_eq!(what_try_get(q.try_get()), "disconnected");
        assert_eq!(what_get_timeout(q.get_timeout(ms)), "disconnected");
        // `?` carries a blocking get's error into the timed one's
        fn first_or_timeout(q: &Queue<u8>) -> Result<u8, GetTimeoutError> {
            Ok(q.get()?)
        }
        assert_eq!(first_or_timeout(&q), Err(GetTimeoutError::Disconnected));
    });
}

/// In a child: lowers the file-size limit (`ulimit -f`, which memory files count
/// against) to `limit` bytes, then creates an unbounded queue and puts `n` items before
/// reading any. Returns the sum read back, or the creation error's kind and message.
fn backlog_under_a_file_size_limit((limit, n): (u64, u64)) -> Result<u64, (String, String)> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the live local `old`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut old) }, 0);
    let low = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads one live `rlimit`; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &low) }, 0);
    let q: Queue<u64> = match Queue::new() {
        Ok(q) => q,
        Err(e) => {
            let kind = match &e {
                procactor::Error::Io(io) => format!("{:?}", io.kind()),
                other => format!("not Io: {other:?}"),
            };
            return Err((kind, e.to_string()));
        }
    };
    for i in 0..n {
        q.put(i).unwrap();
    }
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get_timeout(Duration::from_secs(20)).unwrap();
    }
    Ok(sum)
}

#[test]
fn a_file_size_limit_shrinks_the_overflow_area_or_refuses_clearly_never_sigxfsz() {
    // Without the check, sizing the 64 GiB sparse overflow file raised SIGXFSZ: the
    // child died with signal 25 before its first put.
    watchdog(60, || {
        let n = 100_000u64; // ~2 MB of backlog: past the 256 KiB hot ring
        let mut p = Process::new(backlog_under_a_file_size_limit, (64 << 20, n))
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), Ok(n * (n - 1) / 2));
        let mut p = Process::new(backlog_under_a_file_size_limit, (100 << 10, 10))
            .start()
            .unwrap();
        let (kind, msg) = p.result().unwrap().unwrap_err();
        assert_eq!(kind, "FileTooLarge", "{msg}");
        assert!(msg.contains("ulimit -f"), "{msg}");
    });
}
