pub use super::keeper::start_memory_keeper;
use rustix::event::{epoll, poll, PollFd, PollFlags};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use rustix::io::{fcntl_getfd, Errno};
use rustix::process::{
    pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions,
};
use std::io;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `SIGTERM`'s number.
pub const SIGTERM: i32 = Signal::TERM.as_raw();
/// `SIGKILL`'s number.
pub const SIGKILL: i32 = Signal::KILL.as_raw();

/// A child started by [`spawn_self`]: its pid and a pidfd that refers to it for as long
/// as the fd is open (no pid reuse races).
#[derive(Debug)]
pub struct SpawnedChild {
    /// The child's process id.
    pub pid: u32,
    /// A pidfd for the child: signal it, poll it for exit, reap it.
    pub pidfd: OwnedFd,
}

/// The descriptor number a child finds its control socket at: its standard input.
/// (Python's children do not read the parent's stdin either: they get `/dev/null`.)
/// Handing the socket over as stdin lets the standard library start the child with
/// `posix_spawn` (a vfork: no page-table copy), instead of `fork` plus a pre-exec hook.
pub const CHILD_CONTROL_FD: RawFd = 0;

/// Re-executes the current binary (`/proc/self/exe`, same `argv`) as a child whose
/// standard input is `child_fd` (see [`CHILD_CONTROL_FD`]) and which has `env` set. None
/// of our close-on-exec descriptors leak into it.
///
/// Standard output and error are inherited, as Python's `spawn` does.
///
/// # Errors
///
/// `fork`/`exec` failing (out of processes or memory, binary deleted and unreadable).
///
/// The child also gets this process tree's target key (see [`crate::target`]), which it
/// takes out of its environment before `main`.
pub fn spawn_self(child_fd: OwnedFd, env: &[(&str, &str)]) -> io::Result<SpawnedChild> {
    let key = crate::target::key_for_child();
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push((crate::target::KEY_ENV, &key));
    spawn_exe(std::path::Path::new("/proc/self/exe"), child_fd, &all)
}

/// Like [`spawn_self`] but executes `exe` (same `argv`). Used to check that a child
/// running another binary refuses its bootstrap.
///
/// # Errors
///
/// As [`spawn_self`].
pub fn spawn_exe(
    exe: &std::path::Path,
    child_fd: OwnedFd,
    env: &[(&str, &str)],
) -> io::Result<SpawnedChild> {
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(arg0)
        .args(args)
        .stdin(std::process::Stdio::from(child_fd));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    // The child is not reaped by anyone until a pidfd waiter does, so the pid cannot be
    // recycled between spawn and pidfd_open. Dropping `Child` neither kills nor reaps.
    drop(child);
    let pidfd = pidfd_open(to_pid(pid)?, PidfdFlags::empty())?;
    Ok(SpawnedChild { pid, pidfd })
}

fn to_pid(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))
}

/// Identifies the running binary: device, inode, size and modification time of
/// `/proc/self/exe`. Two processes running the same image give the same value; a
/// rebuilt or different binary does not.
///
/// Taken once per image: a forked child, which runs its parent's image, inherits the
/// parent's (an `exec` starts the statics afresh). A fork server's children thus prove
/// their image without a `stat` each.
///
/// # Errors
///
/// `/proc` is not mounted.
pub fn exe_fingerprint() -> io::Result<[u64; 5]> {
    static TAKEN: std::sync::OnceLock<[u64; 5]> = std::sync::OnceLock::new();
    if let Some(f) = TAKEN.get() {
        return Ok(*f);
    }
    let f = exe_fingerprint_now()?;
    Ok(*TAKEN.get_or_init(|| f))
}

fn exe_fingerprint_now() -> io::Result<[u64; 5]> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok([
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
    ])
}

static CONTROL_FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the control descriptor a parent passed by number, moves it to a
/// fresh close-on-exec descriptor (so that grandchildren do not inherit it) and, when it
/// came in as standard input, puts `/dev/null` there instead.
///
/// Only the first call in a process can succeed: the number comes from the environment
/// the parent set for this process, and taking it twice would make two owners.
///
/// # Errors
///
/// A second call, a negative number, or a number that is not an open descriptor.
pub fn take_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative fd"));
    }
    if CONTROL_FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the inherited control descriptor was already taken",
        ));
    }
    // SAFETY: borrowed only for the duration of these calls; `raw` is checked to be
    // open by the first of them, and nothing else in the process claims it.
    let inherited = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl_getfd(inherited)?;
    let control = rustix::io::fcntl_dupfd_cloexec(inherited, 3)?;
    if raw == 0 {
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::stdio::dup2_stdin(&null)?;
    } else {
        // SAFETY: `raw` is open (checked above), was created for this process by its
        // parent and announced only through the environment; the flag above makes this
        // the only place that claims it, so closing it here double-closes nothing.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(control)
}

/// Asks the kernel to send `SIGKILL` to this process when the thread that forked it
/// exits, then checks that the parent is still `expected_parent` (closing the race where
/// it died before the request). Returns `false` if the parent is already gone.
///
/// # Errors
///
/// `prctl` failing.
pub fn set_parent_death_kill(expected_parent: u32) -> io::Result<bool> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(parent_pid() == Some(expected_parent))
}

/// This process's id.
pub fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The parent's id, `None` if it is the kernel's init reaper of orphans or unknown.
pub fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Sends `signal` through a pidfd. `Ok(false)` if the process has already exited (and
/// been reaped): signalling a finished process is not an error.
///
/// # Errors
///
/// An invalid signal number, or no permission.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<bool> {
    let sig = match signal {
        s if s == SIGTERM => Signal::TERM,
        s if s == SIGKILL => Signal::KILL,
        s if s == Signal::INT.as_raw() => Signal::INT,
        s if s == Signal::HUP.as_raw() => Signal::HUP,
        s if s == Signal::USR1.as_raw() => Signal::USR1,
        s if s == Signal::USR2.as_raw() => Signal::USR2,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported signal {signal}"),
            ))
        }
    };
    match pidfd_send_signal(pidfd, sig) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to process `pid` (not necessarily our child) through a pidfd opened
/// for the occasion. `Ok(false)` if no such process exists. A pid names a process only
/// while it lives: the caller must know `pid` is still the process it means (actor
/// references check the actor's recorded state first).
///
/// # Errors
///
/// An invalid pid or signal number, or no permission.
pub fn signal_pid(pid: u32, signal: i32) -> io::Result<bool> {
    match pidfd_open(to_pid(pid)?, PidfdFlags::empty()) {
        Ok(fd) => pidfd_signal(fd.as_fd(), signal),
        Err(Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Reaps the child behind `pidfd` if it has exited; `Ok(None)` while it runs.
///
/// # Errors
///
/// The pidfd is not our child's, or it was already reaped (`ECHILD`).
pub fn pidfd_try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<ExitInfo>> {
    let st = loop {
        match waitid(
            WaitId::PidFd(pidfd),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(st) => break st,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    Ok(st.and_then(|st| {
        if let Some(sig) = st.terminating_signal() {
            Some(ExitInfo::Signal(sig))
        } else {
            st.exit_status().map(ExitInfo::Code)
        }
    }))
}

/// Reaps one ended child of this process, any of them: its pid and how it ended, or
/// `Ok(None)` when no child has ended (or there is none).
///
/// # Errors
///
/// `waitpid` failing other than with `ECHILD` (no children) or `EINTR` (retried).
pub fn reap_any() -> io::Result<Option<(u32, ExitInfo)>> {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(None) | Err(Errno::CHILD) => return Ok(None),
            // (an exit or a killing signal: stops and continues are not reported without
            // WUNTRACED / WCONTINUED)
            Ok(Some((pid, st))) => {
                let pid = pid.as_raw_nonzero().get() as u32;
                return Ok(Some((pid, decode_wait_status(st.as_raw()))));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The kernel's `struct pidfd_info` (`linux/pidfd.h`), its first version (64 bytes):
/// the fields `PIDFD_GET_INFO` fills. Only `mask` and `exit_code` are read here.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// `PIDFD_INFO_EXIT`: asks for (and, in the answer, marks) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `PIDFD_GET_INFO` = `_IOWR(0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read_write::<PidfdInfo>(0xFF, 11);

/// Set once the kernel has said it has no `PIDFD_GET_INFO` (before Linux 6.15): no
/// further call is made.
static NO_PIDFD_INFO: AtomicBool = AtomicBool::new(false);

/// How the process behind `pidfd` ended, once its parent has reaped it, asked of the
/// kernel (`PIDFD_GET_INFO`, Linux 6.15 and later). Unlike [`pidfd_try_reap`] this works
/// for any process, not only a child: it is how a fork server's children are seen to
/// end without waiting for the server to say so. `Ok(None)` while the process runs, or
/// has ended and is not reaped yet.
///
/// # Errors
///
/// [`io::ErrorKind::Unsupported`] on kernels without `PIDFD_GET_INFO` or its exit status
/// (before 6.15; asked once, then answered at once with no system call);
/// [`io::ErrorKind::InvalidInput`] if `pidfd` is not a pidfd.
pub fn pidfd_reaped_status(pidfd: BorrowedFd<'_>) -> io::Result<Option<ExitInfo>> {
    if NO_PIDFD_INFO.load(Ordering::Relaxed) {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the opcode is `_IOWR(0xFF, 11, struct pidfd_info)` and `PidfdInfo` is that
    // struct's first version, `repr(C)`, 64 bytes (checked at compile time above), which
    // the kernel accepts (it copies at most the size the opcode names). `info` is a live,
    // exclusively borrowed value for the whole call; the kernel only writes plain integers
    // into it. A descriptor that is not a pidfd makes the call fail, touching nothing.
    let r = unsafe {
        rustix::ioctl::ioctl(
            pidfd,
            rustix::ioctl::Updater::<{ PIDFD_GET_INFO }, PidfdInfo>::new(&mut info),
        )
    };
    match r {
        Ok(()) if info.mask & PIDFD_INFO_EXIT != 0 => Ok(Some(decode_wait_status(info.exit_code))),
        Ok(()) => Ok(None),
        // ENOTTY: no such ioctl on pidfds (before 6.13, or not a pidfd); EINVAL: 6.11
        // and 6.12's smaller struct
        Err(Errno::NOTTY) | Err(Errno::INVAL) => {
            if !is_pidfd(pidfd) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pidfd"));
            }
            NO_PIDFD_INFO.store(true, Ordering::Relaxed);
            Err(io::ErrorKind::Unsupported.into())
        }
        // ESRCH: reaped, and no exit status kept: 6.13 and 6.14 have the call but not
        // PIDFD_INFO_EXIT (they answer a live process without the bit, a reaped one so)
        Err(Errno::SRCH) => {
            NO_PIDFD_INFO.store(true, Ordering::Relaxed);
            Err(io::ErrorKind::Unsupported.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `fd` is a pidfd: on its own file system (pidfs, Linux 6.9+) or an anonymous
/// inode (before). Only asked when the kernel refused `PIDFD_GET_INFO`, to tell "this
/// kernel has no such call" from "this is not a pidfd".
fn is_pidfd(fd: BorrowedFd<'_>) -> bool {
    /// `PID_FS_MAGIC` ("PIDF") and `ANON_INODE_FS_MAGIC`, from `linux/magic.h`.
    const PIDFS: i64 = 0x5049_4446;
    const ANON_INODE: i64 = 0x0904_1934;
    rustix::fs::fstatfs(fd).is_ok_and(|st| {
        // (`f_type`'s width differs between architectures)
        #[allow(clippy::unnecessary_cast)]
        let t = st.f_type as i64;
        t == PIDFS || t == ANON_INODE
    })
}

/// A `wait` status word (`WIFEXITED`/`WEXITSTATUS`, `WTERMSIG`) as an [`ExitInfo`].
fn decode_wait_status(status: i32) -> ExitInfo {
    let sig = status & 0x7f;
    if sig == 0 {
        ExitInfo::Code((status >> 8) & 0xff)
    } else {
        ExitInfo::Signal(sig)
    }
}

/// An epoll set that reports which registered descriptor (by token) became readable.
#[derive(Debug)]
pub struct Poller {
    ep: OwnedFd,
}

impl Poller {
    /// A new, empty set.
    ///
    /// # Errors
    ///
    /// Out of descriptors.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            ep: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` for readability (a pidfd becomes readable when its process exits);
    /// `token` comes back from [`Poller::wait`]. Level-triggered.
    ///
    /// # Errors
    ///
    /// `fd` already registered, or not pollable.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        epoll::add(
            &self.ep,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )?;
        Ok(())
    }

    /// Watches `fd`, already registered, for a hang-up only (no longer for readability),
    /// under the same `token`. A pidfd hangs up when its process has been *reaped* (by
    /// whichever process is its parent), which comes after it became readable (ended):
    /// so the owner of a fork server's child learns the moment the server has reaped it
    /// and `PIDFD_GET_INFO` can give the status ([`pidfd_reaped_status`]), without
    /// polling and without waiting for the server to say so. (Seen on Linux 6.18; where
    /// a kernel does not wake the pidfd at the reap, no event comes: callers keep a
    /// timed fallback.)
    ///
    /// # Errors
    ///
    /// `fd` not registered.
    pub fn watch_hangup(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        epoll::modify(
            &self.ep,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::empty(),
        )?;
        Ok(())
    }

    /// Stops watching `fd`.
    ///
    /// # Errors
    ///
    /// `fd` not registered.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        epoll::delete(&self.ep, fd)?;
        Ok(())
    }

    /// Waits until something is ready or `timeout` passes; appends ready tokens to `out`.
    ///
    /// # Errors
    ///
    /// Only unexpected kernel errors; `EINTR` returns with nothing appended.
    pub fn wait(&self, out: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = Vec::with_capacity(32);
        let ts = timeout.map(duration_to_timespec);
        match epoll::wait(&self.ep, spare(&mut events), ts.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        out.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }
}

fn spare(v: &mut Vec<epoll::Event>) -> rustix::buffer::SpareCapacity<'_, epoll::Event> {
    rustix::buffer::spare_capacity(v)
}

fn duration_to_timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Waits until at least one of `fds` is readable (data, end of stream, hang-up, error)
/// or `deadline` passes. Returns one flag per descriptor; all `false` on timeout.
///
/// # Errors
///
/// Unexpected kernel errors (`EINTR` is retried with the remaining time).
pub fn poll_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    loop {
        let ts =
            deadline.map(|d| duration_to_timespec(d.saturating_duration_since(Instant::now())));
        match poll(&mut pfds, ts.as_ref()) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pfds.iter().map(|p| !p.revents().is_empty()).collect())
}

/// The raw number of a descriptor (for the environment variable naming the control fd).
pub fn raw_fd(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// Reads an environment variable and, only while this process is provably
/// single-threaded (the kernel counts one thread, [`thread_count`]), removes it, so that
/// programs this one starts do not inherit it.
///
/// With other threads running (an async runtime started before `init()`, a library's
/// worker) the variable is left in place: `setenv`/`unsetenv` racing with another
/// thread's `getenv` (C code does not take Rust's environment lock) is undefined
/// behaviour in glibc. Readers of such variables therefore check that a value is
/// addressed to them (procactor's carry the pid of the process that set them).
pub fn take_env(key: &str) -> Option<String> {
    let v = std::env::var(key).ok()?;
    if thread_count().is_ok_and(|n| n == 1) {
        // SAFETY (edition 2021: `remove_var` is a safe fn): the kernel counts one thread
        // in this process, and only this thread can start another, so nothing reads the
        // environment concurrently.
        std::env::remove_var(key);
    }
    Some(v)
}

/// Whether process `pid` may be alive. It counts as dead only when the kernel says so:
/// `kill(pid, 0)` fails with `ESRCH`, or `/proc/<pid>/stat` was read and shows a zombie
/// (`Z`) or dead (`X`) process (one that died but is not reaped yet). Any other outcome —
/// including a failure to read `/proc` (out of descriptors, out of memory, `hidepid`,
/// another pid namespace) — counts as *alive*: mistaking a living process for a dead one
/// hands its lock to a second owner, while the opposite mistake only delays a recovery
/// until the next check. A stopped (`SIGSTOP`) process is alive.
///
/// This cannot tell a process from a later one that got the same pid; see
/// [`incarnation_alive`] for that.
pub fn process_alive(pid: u32) -> bool {
    incarnation_alive(pid, 0)
}

/// As [`process_alive`], for the process with id `pid` whose start tag (see
/// `start_tag`) was `tag` (`0`: unknown): it also counts as dead when `pid` now belongs
/// to a process with a different start tag (the pid was reused after it died).
///
/// A reused pid whose new process happens to have the same tag (one chance in 511) still
/// counts as alive: liveness errs on the side of "alive", never the other way.
pub fn incarnation_alive(pid: u32, tag: u32) -> bool {
    let Ok(p) = to_pid(pid) else { return false };
    // only "no such process" means gone; EPERM and any other error: it may be there
    if let Err(Errno::SRCH) = rustix::process::test_kill_process(p) {
        return false;
    }
    // it exists (or we could not tell); a zombie still answers kill(0), so look at its
    // state, and at its start time for a reused pid
    match read_stat(pid) {
        Some(stat) => match stat_fields(&stat) {
            Some((state, start)) => {
                !matches!(state, b'Z' | b'X') && (tag == 0 || start_tag(start) == tag)
            }
            None => true, // not what the kernel writes: we cannot tell, so alive
        },
        None => true,
    }
}

/// A 9-bit tag (1..=511) of a process's start time (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`): with the pid, it tells a process from a later one that reused its
/// pid (a robust lock word stores both).
pub(crate) fn start_tag(start_ticks: u64) -> u32 {
    (start_ticks % 511) as u32 + 1
}

/// This process's start tag (see [`start_tag`]), or `0` when `/proc/self/stat` cannot be
/// read (then peers identify this process by its pid alone).
pub(crate) fn current_start_tag() -> u32 {
    read_stat_path("/proc/self/stat")
        .and_then(|s| stat_fields(&s))
        .map_or(0, |(_, start)| start_tag(start))
}

/// The start tag (see [`start_tag`]) of process `pid`, if its `/proc/<pid>/stat` can be
/// read.
#[cfg(test)]
pub(crate) fn start_tag_of(pid: u32) -> Option<u32> {
    read_stat(pid)
        .and_then(|s| stat_fields(&s))
        .map(|(_, start)| start_tag(start))
}

fn read_stat(pid: u32) -> Option<Vec<u8>> {
    read_stat_path(&format!("/proc/{pid}/stat"))
}

/// Reads a `stat` file with one open and a few reads into a stack buffer; `None` on any
/// error.
fn read_stat_path(path: &str) -> Option<Vec<u8>> {
    read_stat_file(path).ok()
}

/// As [`read_stat_path`], saying why it failed. (Reads at most 1 KiB: a `stat` line is
/// a few hundred bytes; the fields read from it are all in its first half.)
pub(crate) fn read_stat_file(path: &str) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf[..len].to_vec())
}

/// Field `n` (numbered as in proc(5): 3 is the state, `n >= 3`) of a `/proc/<pid>/stat`
/// line. `comm` (field 2) may contain anything, spaces and parentheses included, so
/// fields are counted from the last `)`. The one reader of `stat` fields in the crate.
pub(crate) fn stat_field(stat: &[u8], n: usize) -> Option<&str> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}

/// The state letter (field 3) and start time (field 22) of a `stat` line.
fn stat_fields(stat: &[u8]) -> Option<(u8, u64)> {
    let state = *stat_field(stat, 3)?.as_bytes().first()?;
    let start = stat_field(stat, 22)?.parse().ok()?;
    Some((state, start))
}

static PID_CACHE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static LOCK_ID_CACHE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// This process's id, cached after the first call (lock words store it on every
/// acquisition). A child made by this crate's fork (the only fork procactor does,
/// [`fork_single_threaded`]) refreshes the cache before it returns.
#[inline]
pub fn current_pid_cached() -> u32 {
    match PID_CACHE.load(Ordering::Relaxed) {
        0 => refresh_pid_cache(),
        p => p,
    }
}

/// How many low bits of a lock identity hold the pid: Linux pids are below
/// `PID_MAX_LIMIT` = 2²² (`/proc/sys/kernel/pid_max` cannot be set higher).
pub(crate) const PID_BITS: u32 = 22;

/// This process's lock identity, cached: its pid in the low 22 bits (`PID_BITS`) and its
/// start tag (9 bits) above them. Bit 31 is always clear.
#[inline]
pub fn current_lock_id_cached() -> u32 {
    match LOCK_ID_CACHE.load(Ordering::Relaxed) {
        0 => take_lock_id(),
        id => id,
    }
}

/// Computes and caches this process's lock identity (first use; after a fork).
#[cold]
#[inline(never)]
fn take_lock_id() -> u32 {
    let pid = current_pid_cached();
    let id = if pid < 1 << PID_BITS {
        pid | current_start_tag() << PID_BITS
    } else {
        pid // (not Linux as we know it) identified by pid alone
    };
    // the first identity taken is this process's for good (two threads could compute
    // different ones if one of them cannot read /proc)
    match LOCK_ID_CACHE.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => id,
        Err(first) => first,
    }
}

/// Re-reads this process's id into the cache (after `fork()`), and forgets the cached
/// lock identity (recomputed on first use).
pub(crate) fn refresh_pid_cache() -> u32 {
    let p = current_pid();
    PID_CACHE.store(p, Ordering::Relaxed);
    LOCK_ID_CACHE.store(0, Ordering::Relaxed);
    p
}

/// Whether the calling thread is the process's main thread (its exit ends the process).
pub fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// A pidfd for process `pid` (not necessarily our child), for a caller that knows the
/// pid cannot have been reused yet (its parent has not reaped it).
///
/// # Errors
///
/// No such process (`ESRCH`), or an invalid pid.
pub fn pidfd_of(pid: u32) -> io::Result<OwnedFd> {
    Ok(pidfd_open(to_pid(pid)?, PidfdFlags::empty())?)
}

/// Whether the process behind `pidfd` has ended (its pidfd is readable), asked without
/// waiting. Any process can be asked about, not only a child.
pub fn pidfd_ended(pidfd: BorrowedFd<'_>) -> bool {
    poll_readable(&[pidfd], Some(Instant::now())).is_ok_and(|r| r[0])
}

/// The number of threads of this process, as the kernel counts them (`num_threads`,
/// field 20 of `/proc/self/stat`: one open, one read, no allocation).
///
/// # Errors
///
/// `/proc` is not mounted, or the line is not what the kernel writes.
pub fn thread_count() -> io::Result<usize> {
    let stat = read_stat_file("/proc/self/stat")?;
    parse_num_threads(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/stat"))
}

/// `num_threads` (field 20) from a `/proc/PID/stat` line.
fn parse_num_threads(stat: &[u8]) -> Option<usize> {
    stat_field(stat, 20)?.parse().ok()
}

/// What [`fork_single_threaded`] returns on each side of the fork.
#[derive(Debug)]
pub enum Forked {
    /// In the new child process.
    Child,
    /// In the parent: the child's pid and a pidfd for it.
    Parent(SpawnedChild),
}

/// `fork()`: the calling process is duplicated; returns once in each.
///
/// Only a single-threaded process may fork: in a child of a multi-threaded process every
/// lock another thread held (a `Mutex`, the standard output's lock) stays locked forever.
/// The threads are counted first and the call is refused otherwise.
///
/// # Errors
///
/// [`io::ErrorKind::Unsupported`] when the process has more than one thread; `fork`
/// failing (out of processes or memory).
pub fn fork_single_threaded() -> io::Result<Forked> {
    // one function-reference key for the whole tree: drawn before the copy is made
    crate::target::ensure_key();
    if !never_threaded() {
        // A thread that was just joined still counts for a moment: `pthread_join`
        // returns when the thread is as good as gone, the kernel drops it from the count
        // a little later. So a count over 1 is taken again for up to a millisecond.
        let deadline = Instant::now() + Duration::from_millis(1);
        loop {
            let threads = thread_count()?;
            if threads == 1 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("fork() refused: this process has {threads} threads, not 1"),
                ));
            }
            std::thread::yield_now();
        }
    }
    // SAFETY: `fork` takes no arguments and touches no memory of ours. The process has
    // exactly one thread (glibc says none was ever started, or counted just above; only
    // this thread could have started another since, and it is here), so no lock can be
    // held by a thread that the child lacks: the child's copy of the address space is
    // consistent. It is glibc's fork(), which also runs glibc's own at-fork handlers
    // (malloc arenas, stdio).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            refresh_pid_cache();
            Ok(Forked::Child)
        }
        p => {
            let pid = p as u32;
            // not reaped by anyone yet: the pid still names our child
            match pidfd_of(pid) {
                Ok(pidfd) => Ok(Forked::Parent(SpawnedChild { pid, pidfd })),
                Err(e) => {
                    // a child we could not hold: end it rather than leave it unowned
                    if let Some(p) = Pid::from_raw(p) {
                        let _ = rustix::process::kill_process(p, Signal::KILL);
                        let _ = rustix::process::waitpid(
                            Some(p),
                            rustix::process::WaitOptions::empty(),
                        );
                    }
                    Err(e)
                }
            }
        }
    }
}

/// `SIGINT`'s disposition as it was before [`ignore_interrupts`], to give back to a
/// process forked afterwards ([`SavedInterrupt::restore`]).
pub struct SavedInterrupt(libc::sigaction);

impl std::fmt::Debug for SavedInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedInterrupt")
            .field("handler", &self.0.sa_sigaction)
            .finish()
    }
}

/// Makes this process ignore `SIGINT` (Ctrl-C at a terminal reaches the whole process
/// group): for a process that forks others and must outlive an interrupt its owner
/// handles, as Python's forkserver does. Returns the disposition it had.
///
/// # Errors
///
/// `sigaction` failing.
pub fn ignore_interrupts() -> io::Result<SavedInterrupt> {
    // SAFETY: `sigaction` reads `ign` and writes `old`, both live, properly aligned
    // values of the type it expects; `SIG_IGN` installs no handler code. A zeroed
    // `sigaction` is a valid value (empty mask, no flags).
    unsafe {
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, &ign, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SavedInterrupt(old))
    }
}

impl SavedInterrupt {
    /// Gives `SIGINT` back its disposition from before [`ignore_interrupts`] (in a
    /// process forked from the one that ignored it, whose memory holds the same handler
    /// code, if there was one).
    ///
    /// # Errors
    ///
    /// `sigaction` failing.
    pub fn restore(&self) -> io::Result<()> {
        // SAFETY: `self.0` is the disposition `sigaction` itself returned in this image
        // (or in the process this one was forked from: same memory, same handler
        // addresses); passing it back installs exactly that.
        if unsafe { libc::sigaction(libc::SIGINT, &self.0, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Where glibc's `__libc_single_threaded` is (glibc 2.32 and later), looked up once (an
/// address; 0 when this libc has none). The address is the same in a forked child.
static SINGLE_THREADED_FLAG: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Whether glibc says this process has never started a second thread: its
/// `__libc_single_threaded` flag, which `pthread_create` (every Rust thread, every C
/// library's thread) clears before the new thread exists and which is never set again.
/// `false` means "maybe threaded": count them (threads may have ended since). Costs a
/// byte read, where counting reads `/proc` (a tenth of a fork-server start).
pub fn never_threaded() -> bool {
    let p = *SINGLE_THREADED_FLAG.get_or_init(|| {
        // SAFETY: `dlsym` with the pseudo-handle RTLD_DEFAULT and a NUL-terminated name
        // only looks the symbol up; it returns its address or null.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) as usize }
    }) as *const libc::c_char;
    if p.is_null() {
        return false;
    }
    // SAFETY: `p` is the address of glibc's `char __libc_single_threaded`, a global that
    // lives as long as the process. A byte read; glibc writes it only on the thread that
    // starts a thread, before that thread exists, so when it reads nonzero no other
    // thread exists to write it concurrently (and a stale zero only makes us count).
    unsafe { std::ptr::read_volatile(p) != 0 }
}

/// Ends the process at once with `code`: no `atexit` handlers, no destructors, no flush
/// (`_exit`). What a forked child calls, so that it does not run handlers that its parent
/// registered. Flush what must be flushed first.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes an integer, touches no memory of ours and does not return.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;

    #[test]
    fn take_env_leaves_the_environment_alone_while_threads_run() {
        // libtest runs this test on a thread of its own: the process has several
        assert!(thread_count().unwrap() > 1);
        let (key, value) = std::env::vars().next().expect("some environment variable");
        assert_eq!(take_env(&key), Some(value.clone()));
        assert_eq!(
            std::env::var(&key).ok(),
            Some(value),
            "removed with threads running"
        );
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"123 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 99 100\n";
        assert_eq!(stat_fields(line), Some((b'R', 4242)));
        assert_eq!(stat_fields(b"123 (x"), None);
        assert_eq!(stat_fields(b"123 (x) S 1 2"), None);
    }

    #[test]
    fn a_stopped_process_is_alive_a_zombie_and_a_reaped_one_are_not() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = c.id();
        let tag = start_tag_of(pid).unwrap();
        assert!(process_alive(pid) && incarnation_alive(pid, tag));
        assert!(
            !incarnation_alive(pid, tag % 511 + 1),
            "another start tag: reused pid"
        );
        rustix::process::kill_process(to_pid(pid).unwrap(), Signal::STOP).unwrap();
        assert!(incarnation_alive(pid, tag), "a frozen process is alive");
        c.kill().unwrap();
        // a zombie until reaped
        let t = Instant::now();
        while incarnation_alive(pid, tag) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        c.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(current_start_tag() != 0);
        assert_eq!(start_tag_of(current_pid()), Some(current_start_tag()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(exe_fingerprint().unwrap(), exe_fingerprint().unwrap());
    }

    #[test]
    fn signal_pid_reaches_a_live_process_and_not_a_gone_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(signal_pid(child.id(), SIGKILL).unwrap());
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(SIGKILL));
        // reaped: the pid names nothing now (or, at worst, an unrelated new process we
        // must not signal: so only check that an invalid pid is refused)
        assert!(signal_pid(0, SIGTERM).is_err());
    }

    #[test]
    fn a_process_that_started_a_thread_is_never_again_called_never_threaded() {
        // (libtest runs this test on a thread of its own; a thread of ours makes sure)
        std::thread::spawn(|| ()).join().unwrap();
        assert!(!never_threaded());
        assert!(SINGLE_THREADED_FLAG.get().is_some(), "looked up once");
        // and fork is still refused: counted, not assumed
        assert!(fork_single_threaded().is_err());
    }

    #[test]
    fn interrupts_are_ignored_then_given_back() {
        // in a child of our own, not to touch this test process's handling
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::linux::os::tests::interrupt_child",
                "--ignored",
            ])
            .env("PROCACTOR_INTERRUPT_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    #[ignore = "run by interrupts_are_ignored_then_given_back"]
    fn interrupt_child() {
        if std::env::var_os("PROCACTOR_INTERRUPT_CHILD").is_none() {
            return;
        }
        let saved = ignore_interrupts().unwrap();
        // ignored: the process survives its own SIGINT
        rustix::process::kill_process(rustix::process::getpid(), Signal::INT).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        saved.restore().unwrap();
        // given back (the default here): the next one ends the process, so the check is
        // the disposition itself
        // SAFETY: reading the current disposition into a live, zeroed value.
        let now = unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(libc::SIGINT, std::ptr::null(), &mut cur), 0);
            cur.sa_sigaction
        };
        assert_eq!(now, libc::SIG_DFL);
    }

    #[test]
    fn wait_statuses_decode_as_waitpid_does() {
        assert_eq!(decode_wait_status(0), ExitInfo::Code(0));
        assert_eq!(decode_wait_status(7 << 8), ExitInfo::Code(7));
        assert_eq!(decode_wait_status(255 << 8), ExitInfo::Code(255));
        assert_eq!(decode_wait_status(9), ExitInfo::Signal(9));
        assert_eq!(decode_wait_status(0x80 | 11), ExitInfo::Signal(11)); // core dumped
    }

    /// Says, past the harness's capture, that the pidfd status test checked only the
    /// fallback flag on this kernel (a visible skip, not a silent pass).
    fn skipped_for_this_kernel() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "pidfd exit-status check skipped: this kernel gives no exit status through \
             PIDFD_GET_INFO (Linux 6.15+); only the fallback was checked"
        );
    }

    #[test]
    fn a_non_childs_status_is_read_from_its_pidfd_once_reaped() {
        // `sh` is the parent of a `sleep` it reaps later: its exit status reaches us
        // through the pidfd although it is not our child
        let (mut sh, pid) =
            crate::testing::shell_and_its_child("sleep 0.2 & echo $!; wait; sleep 0.3");
        let fd = pidfd_of(pid).unwrap();
        match pidfd_reaped_status(fd.as_fd()) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                // a kernel before 6.15: asked once, and never again
                assert!(NO_PIDFD_INFO.load(Ordering::Relaxed));
                let _ = sh.wait();
                skipped_for_this_kernel();
                return;
            }
            r => assert_eq!(r.unwrap(), None, "running"),
        }
        // not our child: waitid refuses it
        assert!(pidfd_try_reap(fd.as_fd()).is_err());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match pidfd_reaped_status(fd.as_fd()) {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                // 6.13 and 6.14: the call, without the exit status
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    assert!(NO_PIDFD_INFO.load(Ordering::Relaxed));
                    let _ = sh.wait();
                    skipped_for_this_kernel();
                    return;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < deadline, "no status within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status, ExitInfo::Code(0));
        assert!(pidfd_ended(fd.as_fd()));
        // a killed process: its signal
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_of(c.id()).unwrap();
        assert!(pidfd_signal(fd.as_fd(), SIGKILL).unwrap());
        let _ = c.wait();
        assert_eq!(
            pidfd_reaped_status(fd.as_fd()).unwrap(),
            Some(ExitInfo::Signal(SIGKILL))
        );
        assert!(sh.wait().unwrap().success());
        // not a pidfd: an error, not a status, and the call stays on for pidfds
        let (a, _b) = rustix::pipe::pipe().unwrap();
        let e = pidfd_reaped_status(a.as_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(!NO_PIDFD_INFO.load(Ordering::Relaxed));
        assert!(is_pidfd(fd.as_fd()));
    }

    /// A pidfd first becomes readable (ended); watched for a hang-up only, it reports
    /// nothing while its process is unreaped, and one when its parent reaps it (here we
    /// are the parent, so we decide when): then the status is there for anyone.
    #[test]
    fn a_pidfd_watched_for_a_hangup_reports_the_reap() {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let fd = pidfd_of(c.id()).unwrap();
        if matches!(pidfd_reaped_status(fd.as_fd()), Err(e) if e.kind() == io::ErrorKind::Unsupported)
        {
            let _ = c.wait();
            skipped_for_this_kernel();
            return;
        }
        let p = Poller::new().unwrap();
        p.add(fd.as_fd(), 7).unwrap();
        let mut ready = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ready.is_empty() {
            assert!(Instant::now() < deadline, "never ended");
            p.wait(&mut ready, Some(Duration::from_millis(100)))
                .unwrap();
        }
        assert_eq!(ready, [7]);
        assert!(pidfd_ended(fd.as_fd()));
        p.watch_hangup(fd.as_fd(), 8).unwrap();
        // ended but not reaped (we have not waited for it): no event, however long
        ready.clear();
        p.wait(&mut ready, Some(Duration::from_millis(50))).unwrap();
        assert!(ready.is_empty(), "a hang-up before the reap: {ready:?}");
        assert_eq!(pidfd_reaped_status(fd.as_fd()).unwrap(), None);
        assert!(c.wait().unwrap().success());
        while ready.is_empty() {
            assert!(Instant::now() < deadline, "no hang-up after the reap");
            p.wait(&mut ready, Some(Duration::from_millis(100)))
                .unwrap();
        }
        assert_eq!(ready, [8]);
        assert_eq!(
            pidfd_reaped_status(fd.as_fd()).unwrap(),
            Some(ExitInfo::Code(0))
        );
        p.delete(fd.as_fd()).unwrap();
    }

    #[test]
    fn take_inherited_fd_rejects_closed_numbers() {
        // a number far above anything open in the test process
        assert!(take_inherited_fd(-1).is_err());
    }

    #[test]
    fn poll_times_out_and_sees_data() {
        let (a, b) = crate::fdpass::socketpair().unwrap();
        let d = Instant::now() + Duration::from_millis(10);
        assert_eq!(poll_readable(&[b.as_fd()], Some(d)).unwrap(), vec![false]);
        crate::fdpass::send(a.as_fd(), &[b"x"], &[], false).unwrap();
        assert_eq!(poll_readable(&[b.as_fd()], None).unwrap(), vec![true]);
    }

    #[test]
    fn fork_is_refused_with_more_than_one_thread() {
        // the test harness runs this test on a thread of its own: at least two threads
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(thread_count().unwrap() >= 2);
        let e = fork_single_threaded().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("threads"), "{e}");
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn thread_count_reads_the_kernels_num_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // (other tests' threads come and go meanwhile: compare what cannot change)
        assert!(thread_count().unwrap() >= 2);
        let line = std::fs::read("/proc/self/stat").unwrap();
        assert!(parse_num_threads(&line).is_some_and(|n| n >= 2));
        drop(tx);
        let _ = t.join();
        // a command name with spaces and parentheses does not confuse the parser
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 5 1000";
        assert_eq!(parse_num_threads(line), Some(7));
        assert_eq!(parse_num_threads(b"42 (x) S 1"), None);
        assert_eq!(parse_num_threads(b"garbage"), None);
    }

    #[test]
    fn pidfd_of_opens_live_processes_only() {
        // (the fork itself is exercised from a single-threaded child in the facade's
        // `tests/start_methods.rs`)
        assert!(pidfd_of(std::process::id()).is_ok());
        assert!(pidfd_of(0).is_err());
    }

    #[test]
    fn pidfd_lifecycle_of_a_real_child() {
        let child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(child);
        let pidfd = pidfd_open(to_pid(pid).unwrap(), PidfdFlags::empty()).unwrap();
        assert_eq!(pidfd_try_reap(pidfd.as_fd()).unwrap(), None);
        let poller = Poller::new().unwrap();
        poller.add(pidfd.as_fd(), 7).unwrap();
        assert!(pidfd_signal(pidfd.as_fd(), SIGKILL).unwrap());
        let mut ready = Vec::new();
        poller
            .wait(&mut ready, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(ready, vec![7]);
        assert_eq!(
            pidfd_try_reap(pidfd.as_fd()).unwrap(),
            Some(ExitInfo::Signal(SIGKILL))
        );
        // signalling a reaped process is a no-op
        assert!(!pidfd_signal(pidfd.as_fd(), SIGTERM).unwrap());
    }
}

/// The number of CPUs online in the machine (what Python's `os.cpu_count()` reports:
/// `sysconf(_SC_NPROCESSORS_ONLN)`), read from `/sys/devices/system/cpu/online`; `None`
/// if that file is missing or unreadable. It ignores this process's affinity mask and
/// cgroup quota (see `std::thread::available_parallelism` for those).
pub fn online_cpus() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    parse_cpu_list(&text)
}

/// Counts the CPUs in a kernel CPU list such as `0-3,6,8-9` (`None` if malformed or
/// empty).
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in text.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let c = part.parse::<usize>().ok()?;
                (c, c)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)? + 1)?;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn online_cpus_matches_getconf() {
        let n = online_cpus().expect("sysfs cpu list");
        let out = std::process::Command::new("getconf")
            .arg("_NPROCESSORS_ONLN")
            .output()
            .expect("getconf runs");
        let want: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(n, want);
    }
}
