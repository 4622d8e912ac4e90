//! A task's panic in a worker is not printed: it goes back to the caller as
//! [`TaskError::Panicked`](procactor_core::TaskError::Panicked), as the local pool's (and
//! Python's pool, which sends the exception back). `PROCACTOR_LOG=debug` (or `trace`)
//! prints it too, as any panic.
//!
//! A worker started by the pool (`local_workers`) is a procactor child, whose panic hook
//! already keeps quiet inside [`runtime::quietly`]; [`run_worker`](crate::run_worker)
//! also runs in plain processes (a remote host's `main`), where nobody installed that
//! hook, so it installs [`install`]'s: it wraps whatever hook the process has, records a
//! task's panic (message and location, as the child's hook does) for [`run_task`], and
//! passes every other panic, and a task's when `PROCACTOR_LOG` asks, to the previous
//! hook.

use procactor_core::runtime;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a task.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// The message of the task panic just caught here (with its location).
    static TASK_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the quiet-for-tasks panic hook (once per process; later calls do nothing).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let msg = message(info);
                TASK_PANIC.with(|p| *p.borrow_mut() = Some(msg));
                if !runtime::log_debug() {
                    return;
                }
            }
            previous(info);
        }));
    });
}

/// `"<payload> at <file>:<line>:<column>"`, the text the child's hook records.
fn message(info: &PanicHookInfo<'_>) -> String {
    let p = info.payload();
    let text = if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    let loc = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    format!("{text}{loc}")
}

/// Runs one task: its panic is caught and returned as its message, not printed (see the
/// module docs).
pub(crate) fn run_task<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_TASK.with(|t| t.set(self.0));
        }
    }
    let _reset = Reset(IN_TASK.with(|t| t.replace(true)));
    runtime::quietly(|| std::panic::catch_unwind(AssertUnwindSafe(f))).map_err(|p| {
        // (both taken, so that neither record is left for a later panic)
        let ours = TASK_PANIC.with(|m| m.borrow_mut().take());
        let theirs = runtime::take_panic_message(&*p);
        ours.unwrap_or(theirs)
    })
}
