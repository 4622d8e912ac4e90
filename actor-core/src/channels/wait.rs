//! Python's `multiprocessing.connection.wait`: [`wait`] for any of several [`Waitable`]s
//! (pipe ends, processes). Re-exported as `procactor::pipe::wait` and `procactor::wait`.

use crate::error::Error;
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use procactor_transports::BorrowedFd;
use std::time::{Duration, Instant};

pub(crate) mod sealed {
    /// Only procactor types can be waited on.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// Something [`wait`] can wait for: a [`Connection`](crate::pipe::Connection) (ready
/// when a message, end of file or an error is there) or a [`Process`](crate::Process)
/// (ready when it has exited).
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
}

/// Waits until at least one of `objects` is ready or `timeout` passes, and returns the
/// indices of the ready ones, in order (Python's `multiprocessing.connection.wait`).
/// An empty vector means the timeout passed. `None` waits without limit.
///
/// A [`Connection`](crate::pipe::Connection) is ready when
/// [`recv`](crate::pipe::Connection::recv) would return at once: a complete message, end
/// of file, or an error (a partly arrived message does not count). A closed connection
/// is ready. A [`Process`](crate::Process) is ready once it has exited. An empty
/// `objects` returns an empty vector at once.
///
/// # Errors
///
/// An OS error from `poll`.
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
