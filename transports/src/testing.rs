//! Helpers for tests of this crate and the crates above it (not part of the API).

/// Starts `sh -c script` with its standard output piped and reads the first line, which
/// the script must make the pid of a process it started (`cmd & echo $!`): a process that
/// is not our child, whose parent (the shell) decides when to reap it. Returns the shell
/// and that pid.
///
/// # Panics
///
/// `sh` cannot be started, or its first line is not a pid.
pub fn shell_and_its_child(script: &str) -> (std::process::Child, u32) {
    use std::io::BufRead;
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    std::io::BufReader::new(sh.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the pid line");
    let pid = line.trim().parse().expect("a pid");
    (sh, pid)
}

/// A global allocator for tests that measure allocations: it forwards every call to the
/// system allocator and counts the calling thread's live heap bytes and their peak (see
/// [`peak_during`]). A test binary installs it with
/// `#[global_allocator] static METER: AllocMeter = AllocMeter;`.
#[derive(Debug, Clone, Copy)]
pub struct AllocMeter;

thread_local! {
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn meter_add(n: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn meter_sub(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the meter only
// updates thread-local counters (const-initialized, no destructor: always accessible,
// and `try_with` never panics).
unsafe impl std::alloc::GlobalAlloc for AllocMeter {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        meter_add(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        meter_add(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        meter_sub(l.size());
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        meter_add(new);
        meter_sub(l.size());
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

/// Runs `f`; returns the peak of live heap bytes it added on this thread (counted only
/// when [`AllocMeter`] is the binary's global allocator, else 0).
pub fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(std::cell::Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(std::cell::Cell::get) - base
}
