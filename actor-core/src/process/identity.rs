//! Who this process is: its name and pid, its parent's, its place among its siblings
//! (Python's `_identity`), and the proof that it runs its parent's image.

use super::base::at_fork_in_child;
use crate::error::SpawnError;
use once_cell::sync::{Lazy, OnceCell};
use procactor_transports::os;
use procactor_transports::target::SameImage;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// A process's name and id, as `current_process()`, `parent_process()` and
/// `active_children()` report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
}

impl ProcessInfo {
    pub(crate) fn new(name: String, pid: u32) -> Self {
        Self { name, pid }
    }
    /// The process's name (`"MainProcess"` for the root, `"Process-N"` by default).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

#[derive(Debug)]
pub(super) struct Identity {
    current: ProcessInfo,
    parent: Option<ProcessInfo>,
    /// Python's `_identity`: empty in the root, the parent's plus this process's number
    /// among its siblings in a child (`Process-2:1` is the first child of `Process-2`).
    ids: Vec<u64>,
}

/// Set at start-up; replaced in a child made by `fork()` (which inherits its parent's).
static IDENTITY: Mutex<Option<Arc<Identity>>> = Mutex::new(None);
/// The proof, made at start-up, that this process runs its parent's image (in the root
/// process: trivially its own), so that function references the parent sent later (a
/// child supervisor's actor entries) can be resolved.
static IMAGE_PROOF: OnceCell<SameImage> = OnceCell::new();
static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);
static FINGERPRINT: Lazy<std::io::Result<[u64; 5]>> = Lazy::new(os::exe_fingerprint);

/// In a child made by `fork()`: the parent's identity and child counter are not ours
/// (the child's own identity is set from its bootstrap; see [`become_child`]).
fn forget_in_fork_child() {
    std::mem::forget(IDENTITY.lock().unwrap_or_else(|e| e.into_inner()).take());
    NAME_COUNTER.store(0, Ordering::Relaxed);
}

/// Registers [`forget_in_fork_child`] (once), before the identity is first set.
fn register_fork_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| at_fork_in_child(forget_in_fork_child));
}

pub(super) fn identity() -> Arc<Identity> {
    register_fork_hook();
    let mut slot = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| {
        Arc::new(Identity {
            current: ProcessInfo {
                name: "MainProcess".into(),
                pid: os::current_pid(),
            },
            parent: None,
            ids: Vec::new(),
        })
    })
    .clone()
}

/// This process's name and pid. In the root process the name is `"MainProcess"`.
///
/// # Examples
///
/// ```
/// let me = procactor_core::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    identity().current.clone()
}

/// The process that started this one, `None` in the root process.
pub fn parent_process() -> Option<ProcessInfo> {
    identity().parent.clone()
}

/// The identity of the next child this process starts (see `Identity::ids`).
pub(crate) fn next_child_ids() -> Vec<u64> {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut ids = identity().ids.clone();
    ids.push(n);
    ids
}

/// Python's default name for a child of identity `ids`: `Process-2`, `Process-2:1`, …
/// (numbers, never the parent's custom name).
pub(crate) fn default_name(ids: &[u64]) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("Process-{}", parts.join(":"))
}

/// See `IMAGE_PROOF`. Public (hidden) for `procactor-redis`, whose workers resolve the
/// function references their parent sent them in their start arguments, as `Pool` does.
#[doc(hidden)]
pub fn image_proof() -> Result<&'static SameImage, String> {
    IMAGE_PROOF.get_or_try_init(|| {
        let mine = fingerprint().map_err(|e| e.to_string())?;
        SameImage::verify(&mine).map_err(|e| e.to_string())
    })
}

/// In a child, from its bootstrap: the proof that it runs its parent's image, its name,
/// its parent and its identity numbers; the child is initialised from then on.
pub(super) fn become_child(proof: SameImage, name: String, parent: ProcessInfo, ids: Vec<u64>) {
    register_fork_hook();
    let _ = IMAGE_PROOF.set(proof);
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Identity {
        current: ProcessInfo::new(name, os::current_pid()),
        parent: Some(parent),
        ids,
    }));
    INITIALIZED.store(true, Ordering::SeqCst);
}

/// Whether [`init`](crate::init) has run (or this process is a child past its bootstrap).
pub(super) fn is_initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

/// Marks this process initialised; whether it was already.
pub(super) fn mark_initialized() -> bool {
    INITIALIZED.swap(true, Ordering::SeqCst)
}

pub(crate) fn ensure_initialized() -> Result<(), SpawnError> {
    if INITIALIZED.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(SpawnError::NotInitialized)
    }
}

pub(crate) fn fingerprint() -> std::io::Result<[u64; 5]> {
    match &*FINGERPRINT {
        Ok(f) => Ok(*f),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
}
