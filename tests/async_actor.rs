//! The async face of connections, processes, actors, supervisors and pool results
//! (issue 23): every method under tokio (current_thread and multi_thread) and under
//! `futures::executor::block_on`, across processes, with cancellation.
procactor::test_support!();

mod common;

use futures::FutureExt;
use procactor::{
    process_actor, Actor, ActorError, CallError, Connection, Context, ExitStatus, Pipe, Pool,
    Process, Queue, RecvError, Supervisor,
};
use serde::{Deserialize, Serialize};
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// Runs the future `make` gives on tokio's current_thread runtime, on a task of a
/// 2-worker multi_thread runtime, and on `futures::executor::block_on`.
fn on_every_executor<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(make());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rt.spawn(make())).unwrap();
    futures::executor::block_on(make());
}

// ------------------------------------------------------------------ connections

/// Echoes every value back, doubled, until the end of file.
fn doubler(conn: Connection<u64, u64>) {
    while let Ok(x) = conn.recv() {
        conn.send(&(2 * x)).unwrap();
    }
}

#[test]
fn connection_send_async_recv_async_across_processes() {
    procactor::init();
    common::watchdog(120, || {
        let (mine, theirs) = Pipe::<u64>::new().unwrap();
        let mut child = Process::new(doubler, theirs).start().unwrap();
        let mine = Arc::new(mine);
        on_every_executor(|| {
            let c = mine.clone();
            async move {
                for i in 0..200u64 {
                    c.send_async(&i).await.unwrap();
                    assert_eq!(c.recv_async().await.unwrap(), 2 * i);
                }
            }
        });
        drop(mine);
        assert_eq!(child.join_timeout(T).unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn a_dropped_recv_async_loses_no_frame_even_half_arrived() {
    procactor::init();
    common::watchdog(120, || {
        let (a, b) = Pipe::<procactor::Bytes>::new().unwrap();
        let big: Vec<u8> = (0..(24usize << 20)).map(|i| (i % 251) as u8).collect();
        let sent = procactor::Bytes::from(big.clone());
        let writer = std::thread::spawn(move || {
            a.send(&sent).unwrap();
            a.send(&procactor::Bytes::from(vec![1u8, 2, 3])).unwrap();
            a
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (got, dropped) = rt.block_on(async {
            let mut dropped = 0;
            loop {
                // short enough to be dropped while the 24 MiB frame is arriving
                match tokio::time::timeout(Duration::from_micros(300), b.recv_async()).await {
                    Ok(v) => break (v.unwrap(), dropped),
                    Err(_) => dropped += 1,
                }
            }
        });
        assert!(
            dropped > 0,
            "no recv_async was dropped: the test proved nothing"
        );
        assert_eq!(got.len(), big.len());
        assert!(got[..] == big[..], "the frame came back corrupted");
        let next = futures::executor::block_on(b.recv_async()).unwrap();
        assert_eq!(&next[..], &[1, 2, 3]);
        let a = writer.join().unwrap();
        drop(a);
        assert!(matches!(
            futures::executor::block_on(b.recv_async()),
            Err(RecvError::Eof)
        ));
        eprintln!("{dropped} recv_async futures dropped while the frame arrived");
    });
}

#[test]
fn a_send_async_dropped_mid_frame_is_finished_by_the_next_send() {
    procactor::init();
    common::watchdog(120, || {
        let (a, b) = Pipe::<procactor::Bytes>::new().unwrap();
        let big: Vec<u8> = (0..(24usize << 20)).map(|i| (i % 253) as u8).collect();
        let value = procactor::Bytes::from(big.clone());
        // nobody reads: the first poll writes what the socket takes, then would wait
        assert!(a.send_async(&value).now_or_never().is_none());
        // the rest stays in the connection; the next send writes it first
        let reader = std::thread::spawn(move || {
            let first = b.recv().unwrap();
            let second = b.recv().unwrap();
            (first, second)
        });
        a.send(&procactor::Bytes::from(vec![9u8])).unwrap();
        let (first, second) = reader.join().unwrap();
        assert!(
            first[..] == big[..],
            "the half-sent frame came back corrupted"
        );
        assert_eq!(&second[..], &[9]);
    });
}

#[test]
fn a_send_async_dropped_mid_frame_is_finished_by_the_next_send_async() {
    procactor::init();
    common::watchdog(120, || {
        let (a, b) = Pipe::<procactor::Bytes>::new().unwrap();
        let big: Vec<u8> = (0..(24usize << 20)).map(|i| (i % 241) as u8).collect();
        let value = procactor::Bytes::from(big.clone());
        assert!(a.send_async(&value).now_or_never().is_none());
        let reader = std::thread::spawn(move || (b.recv().unwrap(), b.recv().unwrap()));
        let small = procactor::Bytes::from(vec![4u8, 5]);
        futures::executor::block_on(a.send_async(&small)).unwrap();
        let (first, second) = reader.join().unwrap();
        assert!(first[..] == big[..]);
        assert_eq!(&second[..], &[4, 5]);
    });
}

// ------------------------------------------------------------------ processes

fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms + 1
}

/// Waits for `go` (at most a minute), then returns 7.
fn wait_for_go(go: procactor::Event) -> u64 {
    assert!(go.wait_timeout(Duration::from_secs(60)));
    7
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

#[test]
fn process_join_async_on_every_executor() {
    procactor::init();
    common::watchdog(120, || {
        on_every_executor(|| async {
            let mut p = Process::new(sleep_then, 30).start().unwrap();
            assert_eq!(p.join_async().await.unwrap(), ExitStatus::Code(0));
            assert_eq!(p.result().unwrap(), 31);
            // again: the same status at once
            assert_eq!(p.join_async().await.unwrap(), ExitStatus::Code(0));
            let mut q = Process::new(exit_with, 3).start().unwrap();
            assert_eq!(q.join_async().await.unwrap(), ExitStatus::Code(3));
        });
    });
}

#[test]
fn a_dropped_join_async_leaves_the_process_joinable() {
    procactor::init();
    common::watchdog(120, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // (the child waits for an event, not for a time: however slow this machine,
            // it is still running when the dropped join is checked)
            let go = procactor::Event::new().unwrap();
            let mut p = Process::new(wait_for_go, go.clone()).start().unwrap();
            let r = tokio::time::timeout(Duration::from_millis(50), p.join_async()).await;
            assert!(r.is_err(), "the child waits for the event");
            assert!(p.is_alive());
            go.set();
            let s = tokio::time::timeout(T, p.join_async()).await.unwrap();
            assert_eq!(s.unwrap(), ExitStatus::Code(0));
            assert_eq!(p.result().unwrap(), 7);
        });
    });
}

// ------------------------------------------------------------------ actors

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Ask {
    Double(u64),
    /// Sleeps this many milliseconds, then answers it.
    Slow(u64),
}

#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Calc;

impl Actor for Calc {
    type Msg = Ask;
    type Reply = u64;
    fn handle(&mut self, a: Ask, _: &mut Context<Self>) -> Result<u64, ActorError> {
        match a {
            Ask::Double(x) => Ok(2 * x),
            Ask::Slow(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(ms)
            }
        }
    }
}

/// A queue actor that forwards what it gets to `out`.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Forward {
    out: Queue<u64>,
}

impl Actor for Forward {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        self.out.put(x)?;
        Ok(())
    }
}

#[test]
fn call_async_and_send_async_on_every_executor() {
    procactor::init();
    common::watchdog(180, || {
        let sup = Supervisor::builder().build().unwrap();
        let calc = sup.spawn(Calc).unwrap();
        let pool = sup.spawn_pool(3, || Calc).unwrap();
        let out: Queue<u64> = Queue::new().unwrap();
        let fwd = sup.spawn(Forward { out: out.clone() }).unwrap();
        on_every_executor(|| {
            let (calc, pool, fwd, out) = (calc.clone(), pool.clone(), fwd.clone(), out.clone());
            async move {
                for i in 0..50 {
                    assert_eq!(calc.call_async(Ask::Double(i)).await.unwrap(), 2 * i);
                    assert_eq!(pool.call_async(Ask::Double(i)).await.unwrap(), 2 * i);
                }
                // concurrent calls on one pool: all answered, each with its own reply
                let calls = (0..100).map(|i| pool.call_async(Ask::Double(i)));
                let got = futures::future::join_all(calls).await;
                for (i, r) in got.into_iter().enumerate() {
                    assert_eq!(r.unwrap(), 2 * i as u64);
                }
                for i in 0..20 {
                    fwd.send_async(i).await.unwrap();
                }
                for i in 0..20 {
                    assert_eq!(out.get_async().await.unwrap(), i);
                }
                pool.send_async(Ask::Double(1)).await.unwrap(); // no reply asked
            }
        });
        sup.shutdown(T);
    });
}

#[test]
fn a_call_async_dropped_after_its_request_leaves_no_stale_reply() {
    procactor::init();
    common::watchdog(120, || {
        let sup = Supervisor::builder().build().unwrap();
        let calc = sup.spawn(Calc).unwrap();
        on_every_executor(|| {
            let calc = calc.clone();
            async move {
                // the request is sent and taken; the caller gives up before the reply
                let r =
                    tokio_timeout(Duration::from_millis(50), calc.call_async(Ask::Slow(300))).await;
                assert!(r.is_none(), "the actor sleeps 300 ms");
                // the next call on the same reference (the same lane) gets its own
                // reply, not the late one (300)
                assert_eq!(calc.call_async(Ask::Double(21)).await.unwrap(), 42);
                assert_eq!(calc.call_async(Ask::Double(5)).await.unwrap(), 10);
                // and the dropped call held no lane: a blocking call goes through too
                assert_eq!(calc.call_timeout(Ask::Double(7), T).unwrap(), 14);
            }
        });
        sup.shutdown(T);
    });
}

/// A timeout that works on every executor (tokio's needs a tokio runtime): `None` if
/// `fut` did not complete within `d`.
async fn tokio_timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    let timer = async_sleep(d);
    futures::pin_mut!(fut);
    futures::pin_mut!(timer);
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(((), _)) => None,
    }
}

/// A sleep for any executor: a thread wakes the task.
async fn async_sleep(d: Duration) {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    let _ = rx.await;
}

#[test]
fn an_actor_killed_during_call_async_gives_died() {
    procactor::init();
    common::watchdog(120, || {
        // (killed once per executor: more restarts than the default intensity allows)
        let sup = Supervisor::builder()
            .max_restarts(10, Duration::from_secs(60))
            .build()
            .unwrap();
        let calc = sup.spawn(Calc).unwrap();
        on_every_executor(|| {
            let calc = calc.clone();
            async move {
                // (a restarted actor: wait for its pid)
                let t0 = Instant::now();
                let pid = loop {
                    if let Some(p) = calc.pid() {
                        if calc.call_async(Ask::Double(1)).await.is_ok() {
                            break p;
                        }
                    }
                    assert!(t0.elapsed() < T, "the actor did not come back");
                    async_sleep(Duration::from_millis(10)).await;
                };
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    let killed = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status()
                        .unwrap();
                    assert!(killed.success());
                });
                let t0 = Instant::now();
                let r = tokio_timeout(T, calc.call_async(Ask::Slow(10_000))).await;
                assert!(
                    matches!(r, Some(Err(CallError::Died))),
                    "{r:?} after {:?}",
                    t0.elapsed()
                );
                // the supervisor restarts it; calls are served again
                let t0 = Instant::now();
                loop {
                    match tokio_timeout(T, calc.call_async(Ask::Double(4))).await {
                        Some(Ok(8)) => break,
                        other => assert!(t0.elapsed() < T, "{other:?}"),
                    }
                    async_sleep(Duration::from_millis(10)).await;
                }
            }
        });
        sup.shutdown(T);
    });
}

// ------------------------------------------------------------------ supervisor

#[test]
fn supervisor_wait_async_returns_after_a_shutdown() {
    procactor::init();
    common::watchdog(120, || {
        on_every_executor(|| async {
            let sup = Arc::new(Supervisor::builder().build().unwrap());
            let calc = sup.spawn(Calc).unwrap();
            assert_eq!(calc.call_async(Ask::Double(2)).await.unwrap(), 4);
            let s2 = sup.clone();
            let done = Arc::new(AtomicU64::new(0));
            let d2 = done.clone();
            let stopper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                d2.store(1, Ordering::SeqCst);
                s2.shutdown(T);
            });
            let r = tokio_timeout(T, sup.wait_async()).await;
            assert!(matches!(r, Some(Ok(()))), "{r:?}");
            assert_eq!(
                done.load(Ordering::SeqCst),
                1,
                "returned before the shutdown"
            );
            stopper.join().unwrap();
        });
    });
}

// ------------------------------------------------------------------ pool results

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn async_result_is_a_future_on_every_executor() {
    procactor::init();
    common::watchdog(120, || {
        let pool = Arc::new(Pool::new(2).unwrap());
        on_every_executor(|| {
            let pool = pool.clone();
            async move {
                assert_eq!(pool.apply_async(square, 9).unwrap().await.unwrap(), 81);
                let v = pool
                    .map_async(square, (0..50).collect::<Vec<u64>>())
                    .unwrap()
                    .await;
                assert_eq!(v.unwrap(), (0..50).map(|x| x * x).collect::<Vec<u64>>());
                // many at once
                let rs: Vec<_> = (0..40)
                    .map(|i| pool.apply_async(square, i).unwrap().into_future())
                    .collect();
                let got = futures::future::join_all(rs).await;
                for (i, r) in got.into_iter().enumerate() {
                    assert_eq!(r.unwrap(), (i * i) as u64);
                }
                // dropped before its result: nothing breaks
                let r = pool.apply_async(sleep_then, 100).unwrap();
                assert!(tokio_timeout(Duration::from_millis(10), r.into_future())
                    .await
                    .is_none());
                assert_eq!(pool.apply_async(square, 3).unwrap().await.unwrap(), 9);
            }
        });
    });
}

#[test]
fn an_awaited_result_ends_when_its_pool_is_dropped() {
    procactor::init();
    common::watchdog(120, || {
        on_every_executor(|| async {
            let pool = Pool::new(1).unwrap();
            let r = pool.apply_async(sleep_then, 10_000).unwrap();
            let dropper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                drop(pool);
            });
            // the drop fails the task (its worker killed): the awaiting task is woken
            let got = tokio_timeout(T, r.into_future()).await;
            assert!(matches!(got, Some(Err(_))), "{got:?}");
            dropper.join().unwrap();
        });
    });
}
