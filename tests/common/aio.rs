//! Helpers of the async tests: the three executors every async method is tested under,
//! and a timeout that works under all of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The executors an async test runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// tokio, `new_current_thread`.
    CurrentThread,
    /// tokio, `new_multi_thread` (2 workers).
    MultiThread,
    /// `futures::executor::block_on`: no tokio at all.
    BlockOn,
}

impl Exec {
    /// Whether tokio's timers and tasks are available.
    pub fn tokio(self) -> bool {
        self != Exec::BlockOn
    }

    /// Runs `f` to completion on this executor.
    pub fn run<F: Future>(self, f: F) -> F::Output {
        match self {
            Exec::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f),
            Exec::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(f),
            Exec::BlockOn => futures::executor::block_on(f),
        }
    }
}

/// Runs the test body `body(exec)` under each of the three executors in turn.
pub fn on_each_executor<F, Fut>(mut body: F)
where
    F: FnMut(Exec) -> Fut,
    Fut: Future<Output = ()>,
{
    for e in [Exec::CurrentThread, Exec::MultiThread, Exec::BlockOn] {
        eprintln!("-- under {e:?}");
        e.run(body(e));
    }
}

struct TimerState {
    done: bool,
    waker: Option<Waker>,
}

/// A runtime-free sleep: one timer thread (shared by every `Sleep`) wakes the task.
pub struct Sleep(Arc<Mutex<TimerState>>);

type Timers = (Mutex<Vec<(Instant, Arc<Mutex<TimerState>>)>>, Condvar);

fn timers() -> &'static Timers {
    static T: OnceLock<&'static Timers> = OnceLock::new();
    T.get_or_init(|| {
        let t: &'static Timers = Box::leak(Box::new((Mutex::new(Vec::new()), Condvar::new())));
        std::thread::spawn(move || {
            let mut list = t.0.lock().unwrap();
            loop {
                let now = Instant::now();
                list.retain(|(at, s)| {
                    if *at > now {
                        // a dropped `Sleep` is forgotten
                        return Arc::strong_count(s) > 1;
                    }
                    let mut g = s.lock().unwrap();
                    g.done = true;
                    if let Some(w) = g.waker.take() {
                        w.wake();
                    }
                    false
                });
                let next = list.iter().map(|(at, _)| *at).min();
                list = match next {
                    Some(at) => t.1.wait_timeout(list, at - now).unwrap().0,
                    None => t.1.wait(list).unwrap(),
                };
            }
        });
        t
    })
}

/// Sleeps `d` on any executor.
pub fn sleep(d: Duration) -> Sleep {
    let s = Arc::new(Mutex::new(TimerState {
        done: false,
        waker: None,
    }));
    let t = timers();
    t.0.lock().unwrap().push((Instant::now() + d, s.clone()));
    t.1.notify_one();
    Sleep(s)
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.0.lock().unwrap();
        if g.done {
            Poll::Ready(())
        } else {
            g.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// `f`, given up (dropped: cancelled) after `d`: `None` then. The executor's own timeout
/// (`tokio::time::timeout`) under tokio, a timer thread under `block_on`.
pub async fn within<F: Future>(exec: Exec, d: Duration, f: F) -> Option<F::Output> {
    if exec.tokio() {
        return tokio::time::timeout(d, f).await.ok();
    }
    let mut f = std::pin::pin!(f);
    let mut t = sleep(d);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(&mut t).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Polls `f` once with a waker that does nothing.
pub fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
}

/// A waker that records its call and unparks the thread that polls.
struct Flag {
    woken: std::sync::atomic::AtomicBool,
    thread: std::thread::Thread,
}

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.unpark();
    }
}

struct Task<'a, T> {
    name: String,
    f: Option<Pin<Box<dyn Future<Output = T> + 'a>>>,
    flag: Arc<Flag>,
    out: Option<T>,
    polls: u32,
}

/// Futures polled as an executor polls its tasks, on the thread that made this: each
/// once when added, then only after its own waker was called. No poll of the test's
/// own can hide a wake-up that never came (a future that is not woken stays pending).
pub struct Woken<'a, T> {
    tasks: Vec<Task<'a, T>>,
}

impl<'a, T> Woken<'a, T> {
    pub fn new() -> Self {
        Woken { tasks: Vec::new() }
    }

    /// Adds `f`, polled once now; its index.
    pub fn add(&mut self, name: &str, f: impl Future<Output = T> + 'a) -> usize {
        self.tasks.push(Task {
            name: name.to_string(),
            f: Some(Box::pin(f)),
            flag: Arc::new(Flag {
                woken: true.into(),
                thread: std::thread::current(),
            }),
            out: None,
            polls: 0,
        });
        let i = self.tasks.len() - 1;
        self.poll_woken();
        i
    }

    /// Whether task `i` is still pending (its future held, not ended).
    pub fn pending(&self, i: usize) -> bool {
        self.tasks[i].f.is_some()
    }

    /// How many times task `i` was polled.
    pub fn polls(&self, i: usize) -> u32 {
        self.tasks[i].polls
    }

    /// Drops task `i`'s future (pending: cancelled).
    pub fn drop_task(&mut self, i: usize) {
        self.tasks[i].f = None;
    }

    /// Task `i`'s output, once it ended.
    pub fn take(&mut self, i: usize) -> Option<T> {
        self.tasks[i].out.take()
    }

    fn poll_woken(&mut self) {
        for t in &mut self.tasks {
            let Some(f) = t.f.as_mut() else { continue };
            if !t
                .flag
                .woken
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                continue;
            }
            t.polls += 1;
            let waker = Waker::from(t.flag.clone());
            if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
                t.out = Some(v);
                t.f = None;
            }
        }
    }

    /// Polls the woken tasks for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            std::thread::park_timeout(left.min(Duration::from_millis(20)));
            self.poll_woken();
        }
    }

    /// Polls the woken tasks until none is pending, for `limit` at most: `Err` with the
    /// names of those still pending then.
    pub fn run_until_done(&mut self, limit: Duration) -> Result<(), Vec<String>> {
        let until = Instant::now() + limit;
        loop {
            self.poll_woken();
            let pending: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| t.f.is_some())
                .map(|t| t.name.clone())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(pending);
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}
