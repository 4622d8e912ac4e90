//! Python's `multiprocessing.connection.wait`: [`wait`] (and [`wait_async`]) for any of
//! several [`Waitable`]s (pipe ends, processes, queues, events). Re-exported as
//! `procactor::pipe::wait` and `procactor::wait`.
//!
//! Two kinds of object: those with a descriptor (a connection, a process's pidfd), and
//! those announced by a word in shared memory (a queue, an event), which give a poll
//! function ([`sealed::WordReady`]). A set of descriptors only is waited for with one
//! `poll(2)`, as before; a set with a word-based object runs [`wait_async`] on a
//! minimal parking executor (the words are watched by the watcher threads of
//! `procactor_transports::watch`, the descriptors by its epoll thread).

use crate::aio::FdWait;
use crate::error::Error;
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use procactor_transports::watch::Interest;
use procactor_transports::BorrowedFd;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

pub(crate) mod sealed {
    use std::task::{Context, Poll};

    /// Only procactor types can be waited on.
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    /// One poll of a word-based object's readiness.
    pub(crate) type PollReady<'a> = Box<dyn FnMut(&mut Context<'_>) -> Poll<()> + 'a>;

    /// A word-based object's readiness, as a poll function: `Ready` once the object is
    /// ready; otherwise the context's waker is registered (with a watcher thread) and
    /// woken when it may have become ready.
    #[allow(unreachable_pub, missing_debug_implementations)]
    pub struct WordReady<'a>(pub(crate) PollReady<'a>);
}

/// Something [`wait`] can wait for: a [`Connection`](crate::pipe::Connection) (ready
/// when a message, end of file or an error is there), a [`Process`](crate::Process)
/// (ready when it has exited), a [`Queue`](crate::Queue), [`SimpleQueue`](
/// crate::SimpleQueue) or [`JoinableQueue`](crate::JoinableQueue) (ready when `get`
/// would not wait: an item is there, or it would report `Disconnected` or `Broken`), or
/// an [`Event`](crate::Event) (ready when set).
///
/// This trait is sealed: it is implemented by procactor types only.
pub trait Waitable: sealed::Sealed {
    /// Ready without asking the kernel (buffered frame, end of file seen, exit known).
    #[doc(hidden)]
    fn ready_cached(&self) -> bool;
    /// The descriptor that becomes readable when the object may be ready; `None`: ready.
    #[doc(hidden)]
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Called when `ready_fd` is readable: whether the object is really ready.
    #[doc(hidden)]
    fn confirm_ready(&self) -> bool;
    /// For an object announced by a word in shared memory (not a descriptor): its
    /// readiness as a poll function. `ready_fd` and `confirm_ready` are then unused.
    #[doc(hidden)]
    fn word_ready(&self) -> Option<sealed::WordReady<'_>> {
        None
    }
}

/// Waits until at least one of `objects` is ready or `timeout` passes, and returns the
/// indices of the ready ones, in order (Python's `multiprocessing.connection.wait`).
/// An empty vector means the timeout passed. `None` waits without limit.
///
/// A [`Connection`](crate::pipe::Connection) is ready when
/// [`recv`](crate::pipe::Connection::recv) would return at once: a complete message, end
/// of file, or an error (a partly arrived message does not count). A closed connection
/// is ready. A [`Process`](crate::Process) is ready once it has exited. A queue
/// ([`Queue`](crate::Queue), [`SimpleQueue`](crate::SimpleQueue),
/// [`JoinableQueue`](crate::JoinableQueue)) is ready when `get` would not wait: an item
/// is there, or `get` would say `Disconnected` (drained, no producer left: noticed
/// within 50 ms of the last producer's death) or `Broken`. An [`Event`](crate::Event) is
/// ready while it is set. Being ready takes nothing: another consumer may still take a
/// queue's item first. An empty `objects` returns an empty vector at once.
///
/// A set of connections and processes only is waited for with one `poll(2)`; a set
/// with a queue or an event is waited for with [`wait_async`] on a small parking
/// executor (which uses procactor's watcher threads: see [`wait_async`]).
///
/// # Errors
///
/// An OS error from `poll`, or a descriptor that could not be watched.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use procactor_core::{wait, Pipe, Process};
///
/// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
///
/// fn main() {
///     procactor_core::init();
///     let (a, b) = Pipe::<u8>::new().unwrap();
///     let mut p = Process::new(nap, 50).start().unwrap();
///     // nothing is ready yet
///     assert!(wait(&[&b, &p], Some(Duration::ZERO)).unwrap().is_empty());
///     a.send(&1).unwrap();
///     assert_eq!(wait(&[&b, &p], Some(Duration::from_secs(5))).unwrap(), vec![0]);
///     assert_eq!(b.recv().unwrap(), 1);
///     assert_eq!(wait(&[&b, &p], Some(Duration::from_secs(5))).unwrap(), vec![1]);
///     p.join().unwrap();
/// }
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>, Error> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Deadline::after_opt(timeout).instant();
    if objects.iter().any(|o| o.word_ready().is_some()) {
        return Ok(block_on_until(wait_async(objects), deadline)
            .transpose()?
            .unwrap_or_default());
    }
    loop {
        // Ready without a system call (buffered frame, known exit, closed)…
        let cached: Vec<bool> = objects
            .iter()
            .map(|o| o.ready_cached() || o.ready_fd().is_none())
            .collect();
        // …and the others, asked of the kernel: at once if something is ready already.
        let (index, fds): (Vec<usize>, Vec<BorrowedFd<'_>>) = objects
            .iter()
            .enumerate()
            .filter(|&(i, _)| !cached[i])
            .filter_map(|(i, o)| o.ready_fd().map(|fd| (i, fd)))
            .unzip();
        let any_cached = cached.iter().any(|&c| c);
        let readable = if fds.is_empty() {
            Vec::new()
        } else {
            os::poll_readable(
                &fds,
                if any_cached {
                    Some(Instant::now())
                } else {
                    deadline
                },
            )?
        };
        let mut ready = cached;
        for (i, r) in index.into_iter().zip(readable) {
            ready[i] = r && objects[i].confirm_ready();
        }
        let ready: Vec<usize> = (0..objects.len()).filter(|&i| ready[i]).collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Vec::new());
        }
    }
}

/// As [`wait`], as a future and without a timeout: completes with the indices of the
/// ready objects (at least one), in order. On any executor (tokio, `block_on`, …); for
/// a timeout, wrap it in the runtime's own (`tokio::time::timeout(d, wait_async(&objs))`,
/// whose `Err` is [`wait`]'s empty vector). An empty `objects` gives an empty vector at
/// once.
///
/// Descriptors (connections, processes) are watched by procactor's epoll thread, words
/// (queues, events) by its watcher threads: a process that has used it is
/// multi-threaded from then on (the `Fork` start method needs a single-threaded
/// parent). The future is not `Send` (it borrows `&dyn Waitable`s): await it in the
/// task that owns the objects, or under `block_on`.
///
/// # Cancel safety
///
/// Cancel safe: it takes nothing from the objects (readiness only), so dropping it
/// changes nothing.
///
/// # Errors
///
/// An OS error from `poll`, or a descriptor that could not be watched.
///
/// # Examples
///
/// ```
/// use procactor_core::{wait_async, Event, Pipe, Queue, Waitable};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Wake, Waker};
/// #     use std::sync::Arc;
/// #     struct T(std::thread::Thread);
/// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
/// #     let w = Waker::from(Arc::new(T(std::thread::current())));
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
/// let q: Queue<u8> = Queue::new().unwrap();
/// let (_a, b) = Pipe::<u8>::new().unwrap();
/// let e = Event::new().unwrap();
/// let q2 = q.clone();
/// let t = std::thread::spawn(move || q2.put(1).unwrap());
/// let objs: [&dyn Waitable; 3] = [&b, &q, &e];
/// // any executor: tokio's `block_on` or `futures::executor::block_on` alike
/// assert_eq!(block_on(wait_async(&objs)).unwrap(), vec![1]);
/// t.join().unwrap();
/// ```
pub async fn wait_async(objects: &[&dyn Waitable]) -> Result<Vec<usize>, Error> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let mut words: Vec<Option<sealed::WordReady<'_>>> =
        objects.iter().map(|o| o.word_ready()).collect();
    let mut fds: Vec<FdWait> = objects.iter().map(|_| FdWait::default()).collect();
    poll_fn(|cx| poll_all(objects, &mut words, &mut fds, cx)).await
}

/// One look at every object: `Ready` with the ready ones' indices, else every object
/// is armed (its watch will wake `cx`'s waker).
fn poll_all(
    objects: &[&dyn Waitable],
    words: &mut [Option<sealed::WordReady<'_>>],
    fds: &mut [FdWait],
    cx: &mut Context<'_>,
) -> Poll<Result<Vec<usize>, Error>> {
    let mut ready = vec![false; objects.len()];
    let mut pending: Vec<(usize, BorrowedFd<'_>)> = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        match &mut words[i] {
            Some(w) => ready[i] = (w.0)(cx).is_ready(),
            None if o.ready_cached() => ready[i] = true,
            None => match o.ready_fd() {
                None => ready[i] = true,
                Some(fd) => pending.push((i, fd)),
            },
        }
    }
    if !pending.is_empty() {
        let list: Vec<BorrowedFd<'_>> = pending.iter().map(|&(_, fd)| fd).collect();
        let readable = os::poll_readable(&list, Some(Instant::now()))?;
        for (&(i, _), r) in pending.iter().zip(readable) {
            ready[i] = r && objects[i].confirm_ready();
        }
    }
    if ready.iter().any(|&r| r) {
        return Poll::Ready(Ok((0..objects.len()).filter(|&i| ready[i]).collect()));
    }
    for (i, fd) in pending {
        // one-shot, level-triggered: a descriptor readable since the look fires at once
        if let Poll::Ready(Err(e)) = fds[i].poll_ready(cx, fd, Interest::Read) {
            return Poll::Ready(Err(e.into()));
        }
    }
    Poll::Pending
}

/// Wakes a parked thread.
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Runs `f` on this thread until it completes (`Some`) or `deadline` passes (`None`):
/// the minimal executor behind a blocking [`wait`] on word-based objects.
fn block_on_until<F: Future>(f: F, deadline: Option<Instant>) -> Option<F::Output> {
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        while !unpark.woken.swap(false, Ordering::Acquire) {
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }
}
