//! A process's *memory keeper*: a second task sharing its address space, so that the
//! kernel tears the address space down after the process is reported dead, not before.
//!
//! When a process dies, the kernel unmaps its memory (`exit_mm`) before it tells anyone
//! (`exit_notify`: the pidfd turns readable, the parent gets `SIGCHLD`). Unmapping costs
//! per mapped page: on the virtual machines we measure on, 0.1–0.3 µs per page table
//! entry, 100–300 µs for a small actor whose code pages are mapped, a good part of a
//! supervisor's restart (issue 23). The teardown runs when the *last* user of the address
//! space lets go. A keeper is a task made with `clone(CLONE_VM)` (the same memory, its
//! own everything else) that does nothing but wait for its process to end; then it exits
//! and the teardown runs in *its* exit, after the process's death was reported: a
//! supervisor starts the replacement meanwhile. Measured (a C model of a process with
//! 1000 mapped file pages, SIGKILL to pidfd readable, medians): 229 µs without a keeper,
//! 47 µs with one.
//!
//! The keeper shares the process's memory and thread-local storage (its thread pointer is
//! the cloning thread's), so it must touch neither: it runs on its own stack, allocates
//! nothing, makes raw system calls (rustix's `linux_raw` backend; one through glibc's
//! `syscall`, while the process waits for it, see `keeper_main`), and must never panic
//! (a panic counts itself in the process's memory: `rustix::io::close` asserts success
//! in debug builds, so it uses `try_close`). It has every signal blocked (`SIGKILL` and
//! `SIGSTOP` cannot be), so no handler of the process ever runs on it. It holds no
//! descriptor but a pidfd for its process: it closes the copies it inherited, and the
//! start waits until it has (a peer waiting for one of the process's descriptors to end
//! must not wait for the keeper too). It runs only on a CPU that nothing else wants
//! (`SCHED_IDLE`, set by itself): its teardown must not take a core from the restart it
//! makes room for. And it is its process's *sibling* (`CLONE_PARENT`): a child of the
//! process's parent, which must reap it like any child (the fork server's loop reaps
//! every ended child, see `forkserver.rs`; nothing else calls this).
//!
//! Costs: one more task per process while it lives (a few KiB of kernel memory, 20 KiB
//! mapped in the process, two pages of it touched; it counts against `RLIMIT_NPROC`), at
//! start a listing of `/proc/self/fd`, one `clone` without copying page tables and a wait
//! for the keeper's first steps (130–150 µs here when idle, up to a scheduler tick when
//! loaded: why the fork server makes keepers only for spares it forks at leisure), and
//! the teardown's CPU time, now spent by the keeper. On a machine whose hypervisor
//! serialises page-table work (ours), a teardown on one core still slows page faults on
//! the other: in a burst of restarts the keeper moves work without saving any, and costs
//! its own (see the design notes). If the process replaces its image (`execve`), the
//! keeper keeps the old image's memory until the process ends; procactor's children do
//! not.
//!
//! Threat model: the keeper's only input is its process's pidfd. A process that is
//! stopped holds its keeper asleep while it is stopped; a keeper killed by someone only
//! ends the deferral (the process then tears its own memory down, as without one); a
//! keeper stopped by someone (`SIGSTOP` to its pid) holds the dead process's memory until
//! it is continued. None of this reaches the process's own behaviour or its parent's.

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{AsRawFd, BorrowedFd, RawFd};
use rustix::io::Errno;
use std::io;

/// The keeper's stack: it calls `poll` and `close` and nothing else.
const STACK_BYTES: usize = 16 * 1024;

/// The most inherited descriptors the keeper closes one by one; with more open, it
/// closes every number up to the highest.
const LISTED_FDS: usize = 1024;

/// What the keeper reads, written before the `clone` into the bottom of its stack
/// mapping (and never changed after).
#[repr(C)]
struct KeeperArgs {
    /// The process's pidfd (the keeper's copy of the descriptor table has it).
    pidfd: RawFd,
    /// The write end of a pipe whose read end the process reads until its end: closed
    /// last, it tells the process that the keeper holds no other descriptor any more.
    done: RawFd,
    /// How many of `fds` are set; over `LISTED_FDS`: close every number up to `max_fd`.
    count: usize,
    /// The descriptors open at the `clone` (the keeper's copies), `pidfd` aside.
    fds: [RawFd; LISTED_FDS],
    /// The highest of them.
    max_fd: RawFd,
}

/// This process's keeper, once started: `(this process's pid << 32) | keeper's pid` (a
/// child made by `fork` inherits the value, with its parent's pid in it: not its own).
static KEPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Starts the calling process's memory keeper and returns its pid. A process has one at
/// most: later calls return the first one's pid (however often it is called, it makes
/// one task, which ends with the process).
///
/// Call it only while the process has one thread (a fork server's child before its
/// start: nothing else can open or close descriptors meanwhile), and only from a process
/// whose parent reaps every ended child (the keeper is the parent's child).
///
/// # Errors
///
/// `pidfd_open`, `mmap`, `clone` or reading `/proc/self/fd` failing: no keeper was
/// started and the process tears its memory down itself when it dies, as without one.
pub fn start_memory_keeper() -> io::Result<u32> {
    use std::sync::atomic::Ordering;
    let me = u64::from(rustix::process::getpid().as_raw_nonzero().get() as u32);
    let kept = KEPT.load(Ordering::Relaxed);
    if kept >> 32 == me {
        return Ok(kept as u32);
    }
    let keeper = start_keeper()?;
    KEPT.store(me << 32 | u64::from(keeper), Ordering::Relaxed);
    Ok(keeper)
}

fn start_keeper() -> io::Result<u32> {
    let me = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )?;
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut listed = KeeperArgs {
        pidfd: me.as_raw_fd(),
        done: done_w.as_raw_fd(),
        count: 0,
        fds: [-1; LISTED_FDS],
        max_fd: 0,
    };
    for fd in open_fds()? {
        if fd == listed.pidfd || fd == listed.done {
            continue;
        }
        if let Some(slot) = listed.fds.get_mut(listed.count) {
            *slot = fd;
        }
        listed.count += 1;
        listed.max_fd = listed.max_fd.max(fd);
    }
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks: no
    // existing memory is touched. It is never unmapped (the keeper may run on it until
    // the process ends; the address space's teardown frees it).
    let mapped = (std::mem::size_of::<KeeperArgs>() + STACK_BYTES).next_multiple_of(4096);
    let stack = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            mapped,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::STACK,
        )?
    };
    let args = stack.cast::<KeeperArgs>();
    // SAFETY: `args` is the start of the new, page-aligned, writable mapping, larger
    // than `KeeperArgs`; nothing else refers to it.
    unsafe { args.write(listed) };
    // (the stack grows down from the mapping's end, 16-byte aligned, `STACK_BYTES` above
    // the end of `args`)
    let top = stack.cast::<u8>().wrapping_add(mapped);
    // Every signal blocked for the clone (the keeper inherits the mask): the raw system
    // call, because glibc's `sigfillset`/`pthread_sigmask` leave its own two internal
    // signals (32 and 33) deliverable, and their handlers must not run on the keeper
    // either.
    let all: u64 = u64::MAX;
    let mut old: u64 = 0;
    // SAFETY: `rt_sigprocmask` reads 8 bytes at `&all` and writes 8 at `&mut old`, both
    // locals we own (8: the kernel's signal set size on Linux).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    // SAFETY: glibc's `clone` runs `keeper_main(args)` on `top` in a new task sharing our
    // memory (`CLONE_VM`) with a copy of our descriptor table and signal handlers, child
    // of our parent (`CLONE_PARENT`); its exit signal is ours (`SIGCHLD`). The stack and
    // `args` stay mapped and unchanged for the keeper's life (above). `keeper_main` is
    // written for this: raw system calls (one `errno` write while this thread waits for
    // it, see there), no allocation, no panic, and every
    // signal blocked (the mask set above) so that no handler of ours runs on its stack.
    let pid = unsafe {
        libc::clone(
            keeper_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_PARENT,
            args.cast(),
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above on this thread (reads 8 bytes at `&old`).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    drop(me); // (the keeper has its own copies of these two)
    drop(done_w);
    if pid <= 0 {
        return Err(err);
    }
    // Until the keeper has closed its copies of our descriptors, a peer of ours waiting
    // for one of them to end would wait for the keeper too: the start goes on once they
    // are closed (the pipe's end: its last write end closed; a keeper killed meanwhile
    // closes everything as well).
    // (rustix's raw `read` neither reads nor writes `errno`: see `keeper_main`)
    let mut byte = [0u8; 1];
    while let Err(Errno::INTR) = rustix::io::read(&done_r, &mut byte) {}
    Ok(pid as u32)
}

/// The descriptors this process has open (`/proc/self/fd`, less the one reading it).
fn open_fds() -> io::Result<Vec<RawFd>> {
    let dir = std::fs::read_dir("/proc/self/fd")?;
    let mut fds = Vec::new();
    for entry in dir {
        if let Some(n) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            fds.push(n);
        }
    }
    // (the directory's own descriptor is listed too; closing a number not open is
    // harmless for the keeper)
    Ok(fds)
}

/// The keeper's whole life: close what it inherited, wait until its process has ended,
/// return (glibc's `clone` then makes the `exit` system call).
extern "C" fn keeper_main(args: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `args` is the `KeeperArgs` written before the clone, never changed after.
    let args = unsafe { &*args.cast::<KeeperArgs>() };
    let (pidfd, done) = (args.pidfd, args.done);
    let close = |fd: RawFd| {
        if fd != pidfd && fd != done {
            // SAFETY: this task's descriptor table is its own copy; closing its entries
            // touches no descriptor of the process. A number not open (the listing's
            // own descriptor) is `EBADF`, returned and ignored: `try_close`, not
            // `close`, which asserts success in debug builds (and a panic here would
            // count as one in the process's memory).
            let _ = unsafe { rustix::io::try_close(fd) };
        }
    };
    if args.count <= LISTED_FDS {
        args.fds.iter().take(args.count).copied().for_each(close);
    } else {
        (0..=args.max_fd).for_each(close);
    }
    let _ = rustix::thread::set_name(c"procactor-keep");
    // The teardown it will do must not take a CPU from the restart it makes room for:
    // the keeper runs only on a CPU with nothing else to do (`SCHED_IDLE`; lowering
    // one's own policy needs no privilege, and a failure leaves the process's policy).
    // rustix has no `sched_setscheduler`: glibc's `syscall`, which on failure writes
    // `errno`, here the process's thread's. Harmless now and only now: that thread waits
    // in a raw `read` of the pipe until `done` is closed below (the close orders this
    // before its next step), and `errno` means something only right after a failed call.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` lives on this stack through the call, which only reads it.
    unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_IDLE,
            &param as *const libc::sched_param,
        )
    };
    // SAFETY: as above; the process reads the pipe's other end until this closes.
    let _ = unsafe { rustix::io::try_close(done) };
    // SAFETY: `pidfd` stays open in this task until it exits (closed above: every
    // other number).
    let pidfd = unsafe { BorrowedFd::borrow_raw(pidfd) };
    loop {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(n) if n > 0 => return 0,
            Ok(_) | Err(Errno::INTR) => continue,
            Err(_) => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Field `n` (1-based, as in `proc(5)`) of `/proc/<pid>/stat`, counted after the
    /// command name.
    fn stat_field(pid: u32, n: usize) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(n - 3).map(str::to_owned)
    }

    fn comm(pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    #[test]
    #[ignore = "run by a_keeper_shares_its_process_memory_and_holds_nothing_else"]
    fn keeper_child() {
        if std::env::var_os("PROCACTOR_KEEPER_CHILD").is_none() {
            return;
        }
        let keeper = start_memory_keeper().unwrap();
        assert_eq!(
            start_memory_keeper().unwrap(),
            keeper,
            "one keeper per process"
        );
        // (a panic in the keeper would count in this process's memory, which it shares:
        // `rustix::io::close` asserts success in debug builds, and the keeper closes one
        // number that is no longer open)
        println!("keeper {keeper} panicking {}", std::thread::panicking());
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn a_keeper_shares_its_process_memory_and_holds_nothing_else() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::linux::keeper::tests::keeper_child",
                "--ignored",
                "--nocapture",
            ])
            .env("PROCACTOR_KEEPER_CHILD", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .find_map(|l| l.ok().filter(|l| l.starts_with("keeper ")))
            .expect("the child's report");
        let words: Vec<&str> = line.split(' ').collect();
        let keeper: u32 = words[1].parse().unwrap();
        assert_eq!(words[3], "false", "the keeper's start counted as a panic");
        // its process's sibling (so its process's parent reaps it), by its name
        assert_eq!(comm(keeper), "procactor-keep");
        assert_eq!(stat_field(keeper, 4), Some(std::process::id().to_string()));
        // the same memory: one address space, seen from both
        let maps = |p: u32| std::fs::read_to_string(format!("/proc/{p}/maps")).unwrap();
        assert_eq!(maps(keeper), maps(pid));
        // nothing of its process's but a pidfd for it (the start returned once the
        // keeper had closed the rest)
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{keeper}/fd"))
            .unwrap()
            .map(|e| {
                std::fs::read_link(e.unwrap().path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(fds, ["anon_inode:[pidfd]"]);
        // on a CPU only when nothing else wants it (SCHED_IDLE is policy 5)
        assert_eq!(stat_field(keeper, 41).as_deref(), Some("5"));
        // every signal blocked: no handler of its process ever runs on it (the kernel
        // reports SIGKILL's and SIGSTOP's bits clear: they cannot be blocked)
        let status = std::fs::read_to_string(format!("/proc/{keeper}/status")).unwrap();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        let unblockable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
        assert_eq!(blocked | unblockable, u64::MAX);
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(keeper as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        // killed: the keeper ends after it (and is ours to reap, exit code 0)
        child.kill().unwrap();
        child.wait().unwrap();
        let kpid = rustix::process::Pid::from_raw(keeper as i32).unwrap();
        let t = Instant::now();
        let status = loop {
            match rustix::process::waitpid(Some(kpid), rustix::process::WaitOptions::NOHANG)
                .unwrap()
            {
                Some((_, st)) => break st,
                None => {
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "the keeper outlived its process"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        assert_eq!(
            status.exit_status(),
            Some(0),
            "ended on its own, not by the TERM"
        );
    }
}
