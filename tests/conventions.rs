//! Issue 22 (Rust conventions), part A: iterators over queues and connections, and
//! `Duration::MAX` as "wait for ever" in every public `_timeout(d)` family.
//!
//! The `Duration::MAX` tests call each family where the operation can complete at once
//! (an item already there, a free lock, a set event…): the answer must be the right one,
//! with no panic (`Instant::now() + Duration::MAX` overflows) and no wait.

procactor::test_support!();

mod common;

use common::watchdog;
use procactor::{
    process_actor, Actor, ActorError, Array, Barrier, BoundedSemaphore, Condition, Connection,
    Context, Event, ExitStatus, GetError, JoinableQueue, Lock, Manager, Pipe, Pool, Process, Queue,
    RLock, RecvError, Semaphore, SimpleQueue, Supervisor, Value,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const MAX: Duration = Duration::MAX;
const T: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ iterators

fn produce_queue(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn produce_simple(q: SimpleQueue<String>, n: u32) {
    for i in 0..n {
        q.put(format!("item {i}")).unwrap();
    }
}

fn produce_joinable(q: JoinableQueue<u64>, n: u64) {
    for i in 1..=n {
        q.put(i).unwrap();
    }
}

fn produce_pipe(tx: Connection<u32, ()>, n: u32) {
    for i in 0..n {
        tx.send(&i).unwrap();
    }
}

#[test]
fn queue_iter_reads_a_childs_items_to_the_end() {
    watchdog(60, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut child = Process::new(produce_queue, (q.clone(), 300))
            .start()
            .unwrap();
        q.close(); // the parent only consumes: the child is the last producer
        let mut it = q.iter();
        let got: Vec<u32> = it.by_ref().collect();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        assert!(matches!(it.error(), Some(GetError::Disconnected)), "{it:?}");
        assert_eq!(it.next(), None, "fused");
        assert_eq!(child.join_timeout(T).unwrap(), ExitStatus::Code(0));
        // `for x in &q` is the same iterator: the queue stays drained and disconnected
        assert_eq!((&q).into_iter().count(), 0);
    });
}

#[test]
fn simple_and_joinable_queues_iterate_to_the_end() {
    watchdog(60, || {
        let s: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let mut c1 = Process::new(produce_simple, (s.clone(), 50))
            .start()
            .unwrap();
        s.close();
        let mut n = 0;
        for x in &s {
            assert_eq!(x, format!("item {n}"));
            n += 1;
        }
        assert_eq!(n, 50);
        assert_eq!(c1.join_timeout(T).unwrap(), ExitStatus::Code(0));

        let j: JoinableQueue<u64> = JoinableQueue::new().unwrap();
        let mut c2 = Process::new(produce_joinable, (j.clone(), 40))
            .start()
            .unwrap();
        j.close();
        let mut sum = 0;
        for x in &j {
            sum += x;
            j.task_done().unwrap(); // iterating does not mark tasks done
        }
        assert_eq!(sum, 40 * 41 / 2);
        assert!(j.join_timeout(T).is_ok(), "every task done");
        assert_eq!(c2.join_timeout(T).unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn try_iter_on_an_empty_queue_yields_nothing_at_once() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let t0 = std::time::Instant::now();
        let mut it = q.try_iter();
        assert_eq!(it.next(), None);
        assert!(
            matches!(it.error(), Some(procactor::TryGetError::Empty)),
            "{it:?}"
        );
        let s: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        assert_eq!(s.try_iter().count(), 0);
        let j: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        assert_eq!(j.try_iter().count(), 0);
        let (_a, b) = Pipe::<u32>::new().unwrap();
        let mut pit = b.try_iter();
        assert_eq!(pit.next(), None);
        assert!(
            matches!(pit.error(), Some(procactor::RecvTimeoutError::Timeout)),
            "{pit:?}"
        );
        // generous: "at once" means no wait, not a precise figure
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

        // what a child put is there, then try_iter stops without waiting for more
        let mut c = Process::new(produce_queue, (q.clone(), 10))
            .start()
            .unwrap();
        assert_eq!(c.join_timeout(T).unwrap(), ExitStatus::Code(0));
        assert_eq!(
            q.try_iter().collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        j.put(7).unwrap();
        assert_eq!(j.try_iter().collect::<Vec<_>>(), [7]);
        assert_eq!(j.unfinished_tasks(), 1, "try_iter does not mark tasks done");
    });
}

#[test]
fn connection_iter_reads_a_childs_values_to_eof() {
    watchdog(60, || {
        let (rx, tx) = Pipe::<u32>::oneway().unwrap();
        let mut child = Process::new(produce_pipe, (tx, 200)).start().unwrap();
        let mut it = rx.iter();
        let got: Vec<u32> = it.by_ref().collect();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert!(matches!(it.error(), Some(RecvError::Eof)), "{it:?}");
        assert_eq!(it.next(), None, "fused");
        assert_eq!((&rx).into_iter().count(), 0);
        assert_eq!(child.join_timeout(T).unwrap(), ExitStatus::Code(0));
    });
}

/// A value whose encoding of 13 does not decode (serializes as a `u32`, refuses 13
/// when deserializing): an "undecodable item" without a hostile peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
struct Picky(u32);

impl TryFrom<u32> for Picky {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if n == 13 {
            Err("13 refused".into())
        } else {
            Ok(Picky(n))
        }
    }
}

impl From<Picky> for u32 {
    fn from(p: Picky) -> u32 {
        p.0
    }
}

#[test]
fn iterators_stop_at_an_undecodable_item_and_say_why() {
    watchdog(30, || {
        let q: Queue<Picky> = Queue::new().unwrap();
        for n in [1, 13, 2] {
            q.put(Picky(n)).unwrap();
        }
        let mut it = q.iter();
        assert_eq!(it.next(), Some(Picky(1)));
        assert_eq!(
            it.next(),
            None,
            "stops at the bad item instead of skipping it"
        );
        assert!(matches!(it.error(), Some(GetError::Decode(_))), "{it:?}");
        assert_eq!(it.next(), None, "fused: it stays ended");
        // the bad item was dropped (as `get` drops it); the queue stays usable
        assert_eq!(q.try_iter().collect::<Vec<_>>(), [Picky(2)]);

        let (a, b) = Pipe::<Picky>::new().unwrap();
        for n in [3, 13, 4] {
            a.send(&Picky(n)).unwrap();
        }
        let mut pit = b.try_iter();
        assert_eq!(pit.next(), Some(Picky(3)));
        assert_eq!(pit.next(), None);
        assert!(
            matches!(pit.error(), Some(procactor::RecvTimeoutError::Decode(_))),
            "{pit:?}"
        );
        // the frame was dropped; the connection stays usable
        assert_eq!(b.iter().next(), Some(Picky(4)));
    });
}

// ------------------------------------------------------------------ Duration::MAX

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn duration_max_queues_and_joinable_queues() {
    watchdog(30, || {
        let q: Queue<u32> = Queue::bounded(4).unwrap();
        q.put_timeout(1, MAX).unwrap();
        assert_eq!(q.get_timeout(MAX).unwrap(), 1);
        let j: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        j.put_timeout(2, MAX).unwrap();
        assert_eq!(j.get_timeout(MAX).unwrap(), 2);
        j.task_done().unwrap();
        assert!(j.join_timeout(MAX).is_ok());
    });
}

#[test]
fn duration_max_pipes_and_wait() {
    watchdog(30, || {
        let (a, b) = Pipe::<u32>::new().unwrap();
        a.send(&5).unwrap();
        assert!(b.poll(Some(MAX)).unwrap());
        assert_eq!(procactor::wait(&[&b], Some(MAX)).unwrap(), [0]);
        assert_eq!(b.recv_timeout(MAX).unwrap(), 5);
    });
}

#[test]
fn duration_max_process_join() {
    watchdog(30, || {
        let mut p = Process::new(exit_with, 3).start().unwrap();
        assert_eq!(p.join_timeout(MAX).unwrap(), ExitStatus::Code(3));
        // an ended process answers again at once
        assert_eq!(p.join_timeout(MAX).unwrap(), ExitStatus::Code(3));
    });
}

#[test]
fn duration_max_locks_and_semaphores() {
    watchdog(30, || {
        let l = Lock::new().unwrap();
        assert!(l.acquire_timeout(MAX).unwrap().is_some());
        let r = RLock::new().unwrap();
        let g1 = r.acquire_timeout(MAX).unwrap().unwrap();
        let g2 = r.acquire_timeout(MAX).unwrap().unwrap(); // re-entrant
        drop((g2, g1));
        let s = Semaphore::new(1).unwrap();
        assert!(s.acquire_timeout(MAX).unwrap().is_some());
        let b = BoundedSemaphore::new(1).unwrap();
        assert!(b.acquire_timeout(MAX).unwrap().is_some());
    });
}

#[test]
fn duration_max_value_and_array_locks() {
    watchdog(30, || {
        let v = Value::new(41i64).unwrap();
        {
            let mut g = v.lock_timeout(MAX).unwrap().unwrap();
            *g += 1;
        }
        assert_eq!(v.get().unwrap(), 42);
        let a = Array::from_slice(&[1u8, 2, 3]).unwrap();
        assert_eq!(&*a.lock_timeout(MAX).unwrap().unwrap(), &[1, 2, 3]);
    });
}

#[test]
fn duration_max_event_condition_barrier() {
    watchdog(30, || {
        let e = Event::new().unwrap();
        e.set();
        assert!(e.wait_timeout(MAX));
        let l = Lock::new().unwrap();
        let c = Condition::new(&l).unwrap();
        let g = l.acquire().unwrap();
        let (g, ok) = c.wait_timeout_while(g, MAX, || false).unwrap();
        assert!(ok, "the condition was already false");
        drop(g);
        let b = Barrier::new(1).unwrap();
        assert_eq!(b.wait_timeout(MAX).unwrap(), 0);
    });
}

#[test]
fn duration_max_pool_results() {
    watchdog(60, || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(double, 21).unwrap();
        assert!(r.wait_timeout(MAX));
        assert_eq!(r.get_timeout(MAX).unwrap(), 42);
        let mut it = pool.imap(double, [1u64, 2]).unwrap();
        assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 2);
        assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 4);
        assert!(it.next_timeout(MAX).is_none());
    });
}

#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Adder {
    total: u64,
}

impl Actor for Adder {
    type Msg = u64;
    type Reply = u64;

    fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<u64, ActorError> {
        self.total += n;
        Ok(self.total)
    }
}

#[test]
fn duration_max_actor_calls_and_supervisor_wait() {
    watchdog(60, || {
        let sup = Supervisor::builder().build().unwrap();
        let a = sup.spawn(Adder { total: 0 }).unwrap();
        a.send_timeout(1, MAX).unwrap();
        assert_eq!(a.call_timeout(2, MAX).unwrap(), 3);
        a.stop().unwrap();
        assert!(a.join_timeout(MAX).is_ok(), "the actor ends after stop");
        sup.shutdown(MAX);
        sup.wait_timeout(MAX).unwrap();
    });
}

#[test]
fn duration_max_manager() {
    watchdog(60, || {
        let m = Manager::start().unwrap();
        let q = m.queue::<u32>().unwrap();
        q.put(9).unwrap();
        assert_eq!(q.get_timeout(MAX).unwrap(), Some(9));
        let l = m.lock().unwrap();
        assert!(l.acquire_timeout(MAX).unwrap().is_some());
        let e = m.event().unwrap();
        e.set().unwrap();
        assert!(e.wait_timeout(MAX).unwrap());
    });
}

// ------------------------------------------------------------------ Value::get under its own lock

fn read_value(v: Value<u64>) -> u64 {
    v.get().unwrap()
}

#[test]
fn value_get_and_set_by_the_lock_holder_are_errors_not_deadlocks() {
    // the watchdog turns a regression (a wait for ever) into a failure
    watchdog(30, || {
        let v = Value::new(5u64).unwrap();
        let a = Array::from_slice(&[1u8, 2]).unwrap();
        {
            let mut g = v.lock().unwrap();
            *g += 1;
            assert!(matches!(v.get(), Err(procactor::Error::WouldDeadlock)));
            assert!(matches!(v.set(0), Err(procactor::Error::WouldDeadlock)));
            let clone = v.clone(); // a clone is the same handle: same answer
            assert!(matches!(clone.get(), Err(procactor::Error::WouldDeadlock)));
            *g += 1; // the guard still works, nothing was written by the refused set
            let ga = a.lock().unwrap();
            assert!(matches!(a.set(0, 9), Err(procactor::Error::WouldDeadlock)));
            drop(ga);
        }
        assert_eq!(v.get().unwrap(), 7);
        v.set(8).unwrap();
        assert_eq!(a.to_vec(), [1, 2]);

        // another thread of the same process is not the holder: it waits, then reads
        let g = v.lock().unwrap();
        let v2 = v.clone();
        let t = std::thread::spawn(move || v2.get().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "another thread waits for the lock");
        drop(g);
        assert_eq!(t.join().unwrap(), 8);

        // and so does another process
        let g = v.lock().unwrap();
        let mut child = Process::new(read_value, v.clone()).start().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            matches!(
                child.join_timeout(Duration::ZERO),
                Err(procactor::Error::Timeout)
            ),
            "the child waits"
        );
        drop(g);
        assert_eq!(child.join_timeout(T).unwrap(), ExitStatus::Code(0));
        assert_eq!(child.result().unwrap(), 8);
    });
}
