//! `procactor::wait` and `wait_async` over everything: queues, events, pipe ends and
//! processes mixed, each becoming ready in turn from a child; the timeout; `wait_async`
//! under tokio and `block_on`.

procactor::test_support!();

mod common;

use common::aio::{on_each_executor, within, Exec};
use common::watchdog;
use procactor::{
    wait, wait_async, Connection, Event, ExitStatus, JoinableQueue, Pipe, Process, Queue,
    SimpleQueue, Waitable,
};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// Makes the objects ready one by one, each when told (`step` counts up to `n`): the
/// queue gets an item, the pipe a message, the event is set, and the process exits.
fn in_turn((q, conn, ev, step): (Queue<u32>, Connection<u32, u32>, Event, Queue<u32>)) {
    let next = || step.get_timeout(LONG).unwrap();
    assert_eq!(next(), 0);
    q.put(7).unwrap();
    assert_eq!(next(), 1);
    conn.send(&8).unwrap();
    assert_eq!(next(), 2);
    ev.set();
    assert_eq!(next(), 3);
    // and exits: the process is ready
}

/// One round of the mixed set: `waiter` is `wait` (blocking) or `wait_async` run on an
/// executor.
fn mixed_set_in_turn(mut waiter: impl FnMut(&[&dyn Waitable]) -> Vec<usize>) {
    let q: Queue<u32> = Queue::new().unwrap();
    let (mine, theirs) = Pipe::<u32>::new().unwrap();
    let ev = Event::new().unwrap();
    let step: Queue<u32> = Queue::new().unwrap();
    let mut p = Process::new(in_turn, (q.clone(), theirs, ev.clone(), step.clone()))
        .start()
        .unwrap();
    {
        let objs: [&dyn Waitable; 4] = [&q, &mine, &ev, &p];
        assert!(wait(&objs, Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty());
        step.put(0).unwrap();
        assert_eq!(waiter(&objs), vec![0]);
        assert_eq!(q.get_timeout(LONG).unwrap(), 7);
        step.put(1).unwrap();
        assert_eq!(waiter(&objs), vec![1]);
        assert_eq!(mine.recv_timeout(LONG).unwrap(), 8);
        step.put(2).unwrap();
        assert_eq!(waiter(&objs), vec![2]);
        ev.clear();
        step.put(3).unwrap();
        // the process exits; its end of the pipe closes with it (end of file: the
        // connection is ready too), and the queue's last other producer is gone (but
        // this process's own handle is still open: not disconnected)
        let mut last = waiter(&objs);
        if last == vec![1] {
            // the end of file came first: wait for the exit as well
            std::thread::sleep(Duration::from_millis(10));
            last = wait(&objs, Some(LONG)).unwrap();
        }
        assert!(last.contains(&3), "{last:?}");
        assert!(!last.contains(&0) && !last.contains(&2), "{last:?}");
    }
    assert_eq!(p.join_timeout(LONG).unwrap(), ExitStatus::Code(0));
}

#[test]
fn blocking_wait_on_a_mixed_set_each_ready_in_turn() {
    procactor::init();
    watchdog(120, || {
        mixed_set_in_turn(|objs| wait(objs, Some(LONG)).unwrap());
    });
}

#[test]
fn wait_async_on_a_mixed_set_each_ready_in_turn_under_each_executor() {
    procactor::init();
    watchdog(240, || {
        for e in [Exec::CurrentThread, Exec::MultiThread, Exec::BlockOn] {
            eprintln!("-- under {e:?}");
            mixed_set_in_turn(|objs| {
                e.run(within(e, LONG, wait_async(objs)))
                    .expect("wait_async hung")
                    .unwrap()
            });
        }
    });
}

#[test]
fn wait_with_a_timeout_returns_nothing_when_nothing_is_ready() {
    procactor::init();
    watchdog(60, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        let ev = Event::new().unwrap();
        let (_a, b) = Pipe::<u32>::new().unwrap();
        let objs: [&dyn Waitable; 5] = [&q, &sq, &jq, &ev, &b];
        let t = Instant::now();
        assert!(wait(&objs, Some(Duration::from_millis(100)))
            .unwrap()
            .is_empty());
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(wait(&objs, Some(Duration::ZERO)).unwrap().is_empty());
        // ready ones are all reported, in order
        jq.put(1).unwrap();
        ev.set();
        assert_eq!(wait(&objs, Some(Duration::ZERO)).unwrap(), vec![2, 3]);
        assert_eq!(wait(&objs, None).unwrap(), vec![2, 3]);
        sq.put(2).unwrap();
        assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![1, 2, 3]);
        // under an executor's timeout: nothing ready, the future is given up
        let (a2, b2) = Pipe::<u32>::new().unwrap();
        let objs: [&dyn Waitable; 2] = [&q, &b2];
        on_each_executor(|e| async move {
            assert!(within(e, Duration::from_millis(50), wait_async(&objs))
                .await
                .is_none());
        });
        a2.send(&1).unwrap();
        let r = Exec::BlockOn.run(within(Exec::BlockOn, LONG, wait_async(&objs)));
        assert_eq!(r.expect("hung").unwrap(), vec![1]);
    });
}

fn produce_and_exit(q: Queue<u32>) {
    q.put(1).unwrap();
}

#[test]
fn a_queue_whose_producers_are_gone_is_ready() {
    procactor::init();
    watchdog(60, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(produce_and_exit, q.clone()).start().unwrap();
        q.close();
        let objs: [&dyn Waitable; 1] = [&q];
        assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![0]);
        assert_eq!(q.get_timeout(LONG).unwrap(), 1);
        p.join_timeout(LONG).unwrap();
        // drained, no producer left: `get` would say Disconnected, so `wait` says ready
        let t = Instant::now();
        assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![0]);
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(q.get().is_err());
    });
}
