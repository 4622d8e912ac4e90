//! The exit monitor: one thread per process waits on every child's pidfd (epoll) and
//! reaps it as soon as it exits. No zombies, no `SIGCHLD` handler, no polling.
//!
//! Whoever owns a child (a [`crate::Process`] handle, later the Pool or a Supervisor)
//! holds an `Arc<ChildState>` and waits on its condition variable, or subscribes to the
//! exit stream with [`subscribe`].

use crate::status::ExitStatus;
use once_cell::sync::Lazy;
use procactor_transports::os::{self, ExitInfo, Poller};
use procactor_transports::{AsFd, OwnedFd};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// One child as the monitor and its owner see it.
#[derive(Debug)]
pub(crate) struct ChildState {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) pidfd: OwnedFd,
    exit: Mutex<Option<ExitStatus>>,
    cv: Condvar,
}

impl ChildState {
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the monitor has reaped the child or `deadline` passes.
    pub(crate) fn wait_exit(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return Some(s);
            }
            match deadline {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Whether the process has ended (reaping it if it just did).
    pub(crate) fn has_exited(&self) -> bool {
        self.reap_now().is_some()
    }

    /// Reaps the child if it has exited (whoever calls first: the monitor thread or a
    /// joiner that saw the exit itself, saving a cross-thread wake-up) and returns the
    /// status; `None` while it runs.
    pub(crate) fn reap_now(&self) -> Option<ExitStatus> {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            let status = match os::pidfd_try_reap(self.pidfd.as_fd()) {
                Ok(Some(ExitInfo::Code(c))) => ExitStatus::Code(c),
                Ok(Some(ExitInfo::Signal(s))) => ExitStatus::Signal(s),
                Ok(None) => return None,
                // reaped by someone else (a foreign waitpid(-1)): the status is lost
                Err(_) => ExitStatus::Code(-1),
            };
            *g = Some(status);
            self.cv.notify_all();
        }
        *g
    }

    /// Waits until the child has exited or `deadline` passes, reaping it from this
    /// thread when it sees the exit first.
    pub(crate) fn wait_exit_direct(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.reap_now() {
                return Some(s);
            }
            match os::poll_readable(&[self.pidfd.as_fd()], deadline) {
                Ok(r) if r[0] => continue,
                Ok(_) => return None, // deadline passed
                Err(_) => return self.wait_exit(deadline),
            }
        }
    }
}

/// An exit, as the exit stream reports it.
#[derive(Debug, Clone)]
pub(crate) struct ExitEvent {
    pub(crate) pid: u32,
    #[allow(dead_code)]
    pub(crate) status: ExitStatus,
}

struct Monitor {
    poller: Poller,
    children: Mutex<HashMap<u32, Arc<ChildState>>>,
    live: Mutex<Vec<Weak<ChildState>>>,
    subscribers: Mutex<Vec<crossbeam_channel::Sender<ExitEvent>>>,
}

static MONITOR: Lazy<std::io::Result<Arc<Monitor>>> = Lazy::new(|| {
    let m = Arc::new(Monitor {
        poller: Poller::new()?,
        children: Mutex::new(HashMap::new()),
        live: Mutex::new(Vec::new()),
        subscribers: Mutex::new(Vec::new()),
    });
    let m2 = m.clone();
    std::thread::Builder::new()
        .name("procactor-monitor".into())
        .spawn(move || m2.run())?;
    Ok(m)
});

fn monitor() -> std::io::Result<&'static Arc<Monitor>> {
    MONITOR
        .as_ref()
        .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
}

impl Monitor {
    fn run(&self) {
        let mut ready = Vec::new();
        loop {
            ready.clear();
            if self.poller.wait(&mut ready, None).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            for &token in &ready {
                let pid = token as u32;
                let child = self.lock_children().get(&pid).cloned();
                let Some(child) = child else { continue };
                let Some(status) = child.reap_now() else {
                    continue;
                };
                let _ = self.poller.delete(child.pidfd.as_fd());
                if self.lock_children().remove(&pid).is_none() {
                    continue;
                }
                tracing::debug!(pid, name = %child.name, ?status, "child exited");
                let ev = ExitEvent { pid, status };
                self.subscribers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|s| s.send(ev.clone()).is_ok());
            }
        }
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<ChildState>>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Registers a freshly started child with the monitor.
pub(crate) fn register(pid: u32, name: String, pidfd: OwnedFd) -> std::io::Result<Arc<ChildState>> {
    let m = monitor()?;
    let state = Arc::new(ChildState {
        pid,
        name,
        pidfd,
        exit: Mutex::new(None),
        cv: Condvar::new(),
    });
    m.lock_children().insert(pid, state.clone());
    {
        let mut live = m.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.upgrade().is_some_and(|c| c.exit_status().is_none()));
        live.push(Arc::downgrade(&state));
    }
    if let Err(e) = m.poller.add(state.pidfd.as_fd(), u64::from(pid)) {
        m.lock_children().remove(&pid);
        return Err(e);
    }
    Ok(state)
}

/// Children of this process that have not exited yet.
pub(crate) fn live_children() -> Vec<Arc<ChildState>> {
    let Ok(m) = monitor() else { return Vec::new() };
    let live = m.live.lock().unwrap_or_else(|e| e.into_inner());
    live.iter()
        .filter_map(Weak::upgrade)
        .filter(|c| !c.has_exited())
        .collect()
}

/// A stream of every child exit from now on.
pub(crate) fn subscribe() -> std::io::Result<crossbeam_channel::Receiver<ExitEvent>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    monitor()?
        .subscribers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tx);
    Ok(rx)
}

/// A thread that handles every exit of this process's children from now on (for the
/// owners of many children: a supervisor, a pool) until it is dropped. The subscription
/// is taken before `start` returns, so no exit of a child started afterwards is missed.
pub(crate) struct ExitWatcher {
    quit: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExitWatcher {
    pub(crate) fn start(
        name: &str,
        mut on_exit: impl FnMut(ExitEvent) + Send + 'static,
    ) -> std::io::Result<ExitWatcher> {
        let exits = subscribe()?;
        let (quit, quit_rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                crossbeam_channel::select! {
                    recv(exits) -> ev => match ev {
                        Ok(ev) => on_exit(ev),
                        Err(_) => return,
                    },
                    recv(quit_rx) -> _ => return,
                }
            })?;
        Ok(ExitWatcher {
            quit: Some(quit),
            thread: Some(thread),
        })
    }
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        self.quit.take();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
