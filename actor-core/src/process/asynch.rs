//! The async face of [`Process`]: `join_async`.

use super::Process;
use crate::aio::FdWait;
use crate::error::Error;
use crate::{ExitStatus, Message};
use procactor_transports::watch::Interest;
use procactor_transports::AsFd;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Instant;

impl<R: Message> Process<R> {
    /// As [`join`](Process::join), as a future: waits for the child to exit without
    /// blocking a thread, on any executor, and returns how it ended. For a timeout,
    /// wrap it in the runtime's own (`tokio::time::timeout`).
    ///
    /// It reads the child's report as it comes (so that a child writing a large result
    /// can finish), then waits for the child's pidfd to become readable (the kernel
    /// makes it so when the process exits), through the process's one epoll thread.
    /// A child of the fork server ([`StartMethod::ForkServer`](crate::StartMethod))
    /// gets its status from the server: after its pidfd turned readable, that takes
    /// microseconds, during which the poll blocks.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what was read of the report stays in the handle, so a `join`,
    /// `join_async` or [`result`](Process::result) after a dropped `join_async` sees
    /// all of it; the child is not affected.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join): only an operating-system failure while reading the
    /// child's report (or while watching its descriptors).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{ExitStatus, Process};
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
    /// fn work(x: u32) -> u32 {
    ///     x + 1
    /// }
    ///
    /// fn main() {
    ///     procactor_core::init();
    ///     let mut p = Process::new(work, 41).start().unwrap();
    ///     assert_eq!(block_on(p.join_async()).unwrap(), ExitStatus::Code(0));
    ///     assert_eq!(p.result().unwrap(), 42);
    /// }
    /// ```
    pub async fn join_async(&mut self) -> Result<ExitStatus, Error> {
        let mut report = FdWait::default();
        let mut exit = FdWait::default();
        poll_fn(|cx| {
            if let Some(s) = self.state.exit_status() {
                if self.control.is_none() {
                    return Poll::Ready(Ok(s));
                }
            }
            // the report first: a large one must be read for the child to exit
            match self.drain_control(Some(Instant::now())) {
                Ok(true) => {}
                Ok(false) => {
                    let Some(ctl) = self.control.as_ref() else {
                        return Poll::Pending; // (drain_control said there is one)
                    };
                    return report
                        .poll_ready(cx, ctl.as_fd(), Interest::Read)
                        .map(|r| Err(Error::Io(r.err().unwrap_or_else(no_readiness))));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Some(s) = self.state.reap_now() {
                return Poll::Ready(Ok(s));
            }
            exit.poll_ready(cx, self.state.pidfd.as_fd(), Interest::Read)
                .map(|r| Err(Error::Io(r.err().unwrap_or_else(no_readiness))))
        })
        .await
    }
}

/// `FdWait::poll_ready` is `Pending` or an error, never `Ready(Ok)`.
fn no_readiness() -> std::io::Error {
    std::io::Error::other("descriptor wait ended without readiness")
}
