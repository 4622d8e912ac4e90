//! Actor workloads: procactor's side of sending to a queue actor, calling a pipe actor
//! and restarting a crashed actor. Each function starts its own supervisor (and through
//! it the actors' processes), runs the workload once and returns the figure named in its
//! doc. The Python twins are in `bench/actor_bench.py`.

use crate::workloads::queue::Small;
use procactor::{process_actor, Actor, ActorError, ActorRef, Context, Queue, Supervisor};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// Counts the messages it is sent; when it has handled `n` it puts the count on `done`.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Sink {
    n: u64,
    seen: u64,
    done: Queue<u64>,
}

impl Actor for Sink {
    type Msg = Small;
    type Reply = ();

    fn started(&mut self, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        // "ready": the parent starts its clock after this
        self.done.put(0)?;
        Ok(())
    }

    fn handle(&mut self, _msg: Small, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.seen += 1;
        if self.seen == self.n {
            self.done.put(self.seen)?;
        }
        Ok(())
    }
}

/// One queue actor; the parent sends it `n` small `(u64, 32-byte String)` messages with
/// `ActorRef::send`. Timed from the first send until the actor reports (on a `Queue`)
/// that it has handled all `n`. Returns messages per second.
pub(crate) fn actor_send(n: u64) -> f64 {
    let sup = Supervisor::builder().build().expect("supervisor");
    let done: Queue<u64> = Queue::new().expect("queue");
    let sink = sup
        .spawn(Sink {
            n,
            seen: 0,
            done: done.clone(),
        })
        .expect("spawn");
    assert_eq!(done.get_timeout(LONG).expect("ready"), 0);
    let payload = "abcdefghijklmnopqrstuvwxyz012345";
    let t0 = Instant::now();
    for i in 0..n {
        sink.send((i, payload.to_string())).expect("send");
    }
    assert_eq!(done.get_timeout(LONG).expect("done"), n);
    let dt = t0.elapsed().as_secs_f64();
    sup.shutdown(LONG);
    n as f64 / dt
}

/// Answers every request with the request plus one.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Echo;

impl Actor for Echo {
    type Msg = u64;
    type Reply = u64;

    fn handle(&mut self, x: u64, _ctx: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok(x + 1)
    }
}

/// At most `n` calls (a `u64` request, a `u64` reply) to a pipe actor, one after the
/// other, after 1000 untimed ones; the timed loop stops after the call under way once
/// `budget` has passed (see [`super::budget`]). Returns microseconds per call and the
/// timed calls done.
pub(crate) fn actor_call_rtt(n: u64, budget: Duration) -> (f64, u64) {
    call_loop(n, budget, |echo, i| echo.call(i).expect("call"))
}

/// The loop of the call round-trip rows: 1000 untimed calls, then at most `n` timed
/// ones until `budget` has passed.
fn call_loop(n: u64, budget: Duration, call: impl Fn(&ActorRef<Echo>, u64) -> u64) -> (f64, u64) {
    let sup = Supervisor::builder().build().expect("supervisor");
    let echo = sup.spawn(Echo).expect("spawn");
    for i in 0..1000 {
        assert_eq!(call(&echo, i), i + 1);
    }
    let t0 = Instant::now();
    let mut done = 0;
    while done < n {
        let r = call(&echo, done);
        debug_assert_eq!(r, done + 1);
        done += 1;
        if t0.elapsed() >= budget {
            break;
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    sup.shutdown(LONG);
    (dt * 1e6 / done as f64, done)
}

/// As [`actor_call_rtt`], with `ActorRef::call_async` awaited on a minimal
/// current-thread executor (the calling thread polls, parks while the future is
/// pending, and is unparked by its waker): the cost of the async path itself
/// (registration with the watcher thread, its wake-up, the executor's), as on tokio's
/// current-thread runtime, without a runtime dependency in the benchmark.
pub(crate) fn actor_call_async_rtt(n: u64, budget: Duration) -> (f64, u64) {
    call_loop(n, budget, |echo, i| {
        block_on(echo.call_async(i)).expect("call")
    })
}

/// Runs `f` on this thread: polls it, parks while it is pending.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return v;
        }
        std::thread::park();
    }
}

/// Puts `(incarnation, message)` on `out` for every message.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Phoenix {
    out: Queue<(u64, u64)>,
}

impl Actor for Phoenix {
    type Msg = u64;
    type Reply = ();

    fn handle(&mut self, x: u64, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.out.put((ctx.restarts(), x))?;
        Ok(())
    }
}

/// How long the replacement runs undisturbed before the next crash in
/// [`actor_restart_isolated_ms`] (untimed; the Python twin pauses as long).
pub(crate) const RESTART_PAUSE: Duration = Duration::from_millis(10);

/// A queue actor is killed (`ActorRef::kill`, SIGKILL) `n` times, each kill as soon as
/// the replacement before has answered; each time the clock runs from the kill until the
/// supervisor's replacement has handled a message (sent right after the kill: it waits
/// in the mailbox, which survives the crash) and put its answer on a `Queue`. Returns the
/// median milliseconds. A burst of crashes: each restart also meets the previous one's
/// aftermath (the next spare's fork, the dead process's memory being torn down).
pub(crate) fn actor_restart_ms(n: u32) -> f64 {
    restarts(n, Duration::ZERO)
}

/// As [`actor_restart_ms`], the crashes [`RESTART_PAUSE`] apart: one crash at a time,
/// each meeting a machine gone quiet (idle cores asleep, caches cold).
pub(crate) fn actor_restart_isolated_ms(n: u32) -> f64 {
    restarts(n, RESTART_PAUSE)
}

fn restarts(n: u32, pause: Duration) -> f64 {
    let sup = Supervisor::builder()
        .max_restarts(n + 10, Duration::from_secs(3600))
        .build()
        .expect("supervisor");
    let out: Queue<(u64, u64)> = Queue::new().expect("queue");
    let a = sup.spawn(Phoenix { out: out.clone() }).expect("spawn");
    // untimed: the first incarnation is up and answering
    a.send(0).expect("send");
    assert_eq!(out.get_timeout(LONG).expect("first answer"), (0, 0));
    let mut times: Vec<f64> = (1..=u64::from(n.max(1)))
        .map(|k| {
            std::thread::sleep(pause);
            let t0 = Instant::now();
            a.kill().expect("kill");
            a.send(k).expect("send");
            loop {
                match out.get_timeout(LONG).expect("an answer") {
                    (inc, x) if inc == k && x == k => break,
                    // the dying incarnation took the message before the signal landed:
                    // ask again, the replacement must answer
                    (inc, _) if inc < k => a.send(k).expect("send"),
                    other => panic!("unexpected answer {other:?} in round {k}"),
                }
            }
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    sup.shutdown(LONG);
    crate::median(&mut times)
}
