//! `procactor-top` as a person uses it: pointed at a running program with a tree under
//! load, `--once`, `--json`, and the live view in a pseudo-terminal, keys and all.
//!
//! The program watched is this test process itself: it starts a supervision tree
//! (`root` with `echo`, a pool of `hash` pipe actors, a child supervisor `sub` with
//! `slow`), a named queue `top-jobs` holding three items, and threads that keep the
//! tree busy, then runs the real `procactor-top` binary on
//! its own pid. Every wait has a deadline; a `procactor-top` that does not end in time
//! is killed and the test fails.

procactor::test_support!();

use procactor::stats::{ChildKind, ChildSnapshot, ProgramSnapshot};
use procactor::{process_actor, Actor, ActorError, ChildSpec, Context, PoolRef, Queue, Supervisor};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const TOP: &str = env!("CARGO_BIN_EXE_procactor-top");

/// Answers each call with what it was sent.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Echo;

impl Actor for Echo {
    type Msg = u64;
    type Reply = u64;
    fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok(x)
    }
}

/// A pool member: a little work per call.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Hash;

impl Actor for Hash {
    type Msg = u64;
    type Reply = u64;
    fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok((0..1000u64).fold(x, |h, i| (h ^ i).wrapping_mul(0x100_0000_01b3)))
    }
}

/// Takes 5 ms a message: what is sent faster waits in its mailbox.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Slow;

impl Actor for Slow {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, _: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(())
    }
}

struct Tree {
    _root: Supervisor,
    hash: PoolRef<Hash>,
    /// Listed in the snapshot for as long as this handle lives.
    _jobs: Queue<u64>,
}

/// The tree, started once for the whole binary, with its load running for as long as
/// the process lives.
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let root = Supervisor::builder()
            .name("root")
            .max_restarts(100, Duration::from_secs(10))
            .build()
            .expect("root supervisor");
        let echo = root
            .spawn_with(ChildSpec::new().name("echo"), Echo)
            .expect("spawn echo");
        let hash = root
            .spawn_pool_with(ChildSpec::new().name("hash"), 2, || Hash)
            .expect("spawn the hash pool");
        let mut sub = Supervisor::builder().name("sub");
        let slow = sub
            .add_with(ChildSpec::new().name("slow"), Slow)
            .expect("add slow");
        let _sub = root.spawn_supervisor(sub).expect("spawn sub");
        std::thread::spawn(move || {
            for i in 0.. {
                let _ = echo.call_timeout(i, Duration::from_secs(5));
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let h = hash.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                let _ = h.call_timeout(i, Duration::from_secs(5));
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        // 400 messages a second for a consumer of 200: its mailbox fills
        std::thread::spawn(move || {
            for i in 0.. {
                let _ = slow.send_timeout(i, Duration::from_secs(5));
                std::thread::sleep(Duration::from_micros(2500));
            }
        });
        // a named queue: three items put, none taken
        let jobs = Queue::builder()
            .name("top-jobs")
            .build()
            .expect("the top-jobs queue");
        for i in 0..3 {
            jobs.put(i).expect("put into top-jobs");
        }
        Tree {
            _root: root,
            hash,
            _jobs: jobs,
        }
    })
}

/// Polls `cond` every 20 ms until it gives `Ok`, and returns that; fails after `limit`
/// with `what` and the last `Err` (what was seen instead).
fn wait_until<T>(limit: Duration, what: &str, mut cond: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        match cond() {
            Ok(x) => return x,
            Err(seen) if t0.elapsed() > limit => {
                panic!("no {what} within {limit:?}; last seen:\n{seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `procactor-top` with `args`; kills it and fails after `limit`. Its output is
/// collected while it runs (by a thread, so that a pipe never fills and blocks it).
fn top(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(TOP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procactor-top");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("collect"),
        Err(_) => {
            // not reaped yet (the thread's wait has not returned): the pid is still it
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
                rustix::process::Signal::KILL,
            );
            let printed = rx
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("procactor-top {args:?} still running after {limit:?}: {printed}")
        }
    }
}

fn json(pid: u32) -> ProgramSnapshot {
    let out = top(&["--json", &pid.to_string()], Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints a snapshot")
}

/// Waits (at most 20 s) until `ok` holds for a `--json` snapshot, and returns it.
fn json_until(pid: u32, what: &str, ok: impl Fn(&ProgramSnapshot) -> bool) -> ProgramSnapshot {
    wait_until(Duration::from_secs(20), what, || {
        let s = json(pid);
        if ok(&s) {
            Ok(s)
        } else {
            Err(format!("{s:#?}"))
        }
    })
}

/// The `--once` line of `name` (the first one whose first word it is).
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
}

/// Column `col` (by its title) of a `--once` line.
fn column<'a>(text: &'a str, l: &'a str, col: &str) -> &'a str {
    let head = text
        .lines()
        .find(|l| l.starts_with("NAME"))
        .expect("titles");
    let titles: Vec<&str> = head.split_whitespace().collect();
    let i = titles.iter().position(|t| *t == col).expect("column");
    // NOTE may be empty: count the fields before it
    l.split_whitespace().nth(i).unwrap_or("")
}

/// Member `i` of the `hash` pool in a snapshot.
fn member(s: &ProgramSnapshot, i: u32) -> ChildSnapshot {
    s.supervisors
        .iter()
        .find(|s| s.name == "root")
        .and_then(|r| {
            r.children
                .iter()
                .find(|c| matches!(&c.kind, ChildKind::PoolMember { member, .. } if *member == i))
        })
        .cloned()
        .expect("a member of the hash pool")
}

/// The whole tree runs (every child of `root` has a pid, and `sub`'s child too).
fn all_running(s: &ProgramSnapshot) -> bool {
    s.supervisors.iter().any(|sup| {
        sup.name == "root"
            && sup.children.len() == 4
            && sup.children.iter().all(|c| c.pid.is_some())
            && sup.children.iter().all(|c| {
                c.supervisor
                    .as_ref()
                    .is_none_or(|s| s.children.iter().all(|c| c.pid.is_some()))
            })
    })
}

#[test]
fn once_and_json_show_the_tree_mailboxes_usage_and_a_restart() {
    let t = tree();
    let me = std::process::id();
    let pid = me.to_string();
    json_until(me, "the whole tree running", all_running);

    let out = top(
        &["--once", "--interval", "300", &pid],
        Duration::from_secs(20),
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains('\x1b'), "plain text: {text:?}");
    assert!(
        text.starts_with(&format!("procactor-top · pid {me} (")),
        "{text}"
    );
    for name in ["echo", "hash-1", "hash-2", "slow"] {
        let l = line(&text, name);
        assert!(column(&text, l, "PID").parse::<u32>().is_ok(), "{l}");
        assert_eq!(column(&text, l, "STATE"), "running", "{l}");
        assert!(column(&text, l, "USS").ends_with(['K', 'M']), "{l}");
        assert_ne!(column(&text, l, "CPU%"), "-", "{l}");
    }
    assert_eq!(column(&text, line(&text, "sub"), "KIND"), "sup", "{text}");
    // the named queue: its depth, the items taken (none), no pid
    let q = line(&text, "top-jobs");
    assert_eq!(column(&text, q, "KIND"), "queue", "{text}");
    assert_eq!(column(&text, q, "MAILBOX"), "3", "{text}");
    assert_eq!(column(&text, q, "MSGS"), "0", "{text}");
    assert_eq!(column(&text, q, "PID"), "-", "{text}");
    // slow is sent twice what it handles: its mailbox fills
    let slow_mailbox = |text: &str| -> u64 {
        column(text, line(text, "slow"), "MAILBOX")
            .parse()
            .expect("a depth")
    };
    assert!(slow_mailbox(&text) > 0, "slow's mailbox fills: {text}");

    // --json: the same tree, as data
    let s = json(me);
    let root = s
        .supervisors
        .iter()
        .find(|s| s.name == "root")
        .expect("root");
    let sub = root
        .children
        .iter()
        .find_map(|c| c.supervisor.as_ref())
        .expect("sub's own tree");
    assert_eq!(sub.children[0].name, "slow");
    assert!(sub.children[0].mailbox_len > 0, "{sub:?}");
    let before = member(&s, 0);
    assert!(
        before.usage.as_ref().is_some_and(|u| u.uss_kib > 0),
        "{before:?}"
    );

    // a member SIGKILLed: its restart count rises, its pid changes
    let victim = t
        .hash
        .member(0)
        .and_then(|m| m.pid())
        .expect("member 0 runs");
    assert_eq!(before.pid, Some(victim));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).expect("a pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill the member");
    json_until(me, "the restart", |s| {
        let m = member(s, 0);
        m.restarts > before.restarts && m.pid.is_some() && m.pid != Some(victim)
    });
    let out = top(
        &["--once", "--interval", "100", &pid],
        Duration::from_secs(20),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let l = line(&text, "hash-1");
    let restarts: u64 = column(&text, l, "RESTARTS").parse().unwrap();
    assert!(restarts > before.restarts, "{text}");
    assert!(column(&text, l, "PID") != victim.to_string(), "{text}");
}

#[test]
fn once_shows_counts_rates_and_p99_of_busy_actors() {
    tree();
    let me = std::process::id();
    json_until(me, "actors with handled messages", |s| {
        all_running(s)
            && ["echo", "hash-1", "hash-2", "slow"].iter().all(|n| {
                s.supervisors
                    .iter()
                    .flat_map(|s| {
                        s.children.iter().chain(
                            s.children
                                .iter()
                                .filter_map(|c| c.supervisor.as_ref())
                                .flat_map(|s| s.children.iter()),
                        )
                    })
                    .any(|c| c.name == *n && c.stats.as_ref().is_some_and(|st| st.handled > 10))
            })
    });
    let out = top(
        &["--once", "--interval", "300", &me.to_string()],
        Duration::from_secs(20),
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for name in ["echo", "hash-1", "hash-2", "slow"] {
        let l = line(&text, name);
        let handled: u64 = column(&text, l, "MSGS").parse().expect("a count");
        assert!(handled > 0, "{name} handled nothing: {l}");
        let rate: f64 = column(&text, l, "MSGS/S")
            .trim_end_matches(['k', 'M'])
            .parse()
            .unwrap();
        assert!(rate > 0.0, "{name} is busy: {l}");
        assert!(
            column(&text, l, "P99").ends_with('s'),
            "{name} has a p99: {l}"
        );
    }
    let st = member(&json(me), 0).stats.expect("a member's statistics");
    assert!(st.handled > 0 && st.handle_time.p99_ns > 0, "{st:?}");
}

#[test]
fn no_observe_server_is_exit_status_1_with_a_message() {
    // pid 1 is no procactor program; a pid above pid_max (2^22) is no process at all
    for pid in ["1", "4194321"] {
        for mode in ["--once", "--json"] {
            let out = top(&[mode, pid], Duration::from_secs(20));
            assert_eq!(out.status.code(), Some(1), "{mode} {pid}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no observe server"), "{err}");
            assert!(out.stdout.is_empty());
        }
    }
    let out = top(&["--once", "not-a-pid"], Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pid"));
    let out = top(&["--help"], Duration::from_secs(20));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: procactor-top"));
}

/// A pseudo-terminal of `cols` x `rows`: (master, slave).
fn pty(cols: u16, rows: u16) -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this function owns; each result checked
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt");
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(s >= 0, "open the slave");
        let slave = OwnedFd::from_raw_fd(s);
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(s, libc::TIOCSWINSZ, &ws), 0, "set the size");
        (master, slave)
    }
}

/// The screen a terminal of `cols` x `rows` shows after `bytes`: text placed at the
/// cursor, moved by `ESC [ row ; col H` (what the ratatui/crossterm backend writes),
/// cleared by `ESC [ 2 J`; colours and modes ignored. Enough to read the view.
fn screen_of(bytes: &[u8], cols: usize, rows: usize) -> Vec<String> {
    let mut grid = vec![vec![' '; cols]; rows];
    let (mut r, mut c) = (0usize, 0usize);
    let s = String::from_utf8_lossy(bytes);
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    chars.next();
                    continue;
                }
                chars.next();
                let mut params = String::new();
                let mut fin = ' ';
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        fin = d;
                        break;
                    }
                    params.push(d);
                }
                match fin {
                    'H' => {
                        let mut it = params.split(';').map(|x| x.parse::<usize>().unwrap_or(1));
                        r = it.next().unwrap_or(1).saturating_sub(1);
                        c = it.next().unwrap_or(1).saturating_sub(1);
                    }
                    'J' if params == "2" => grid = vec![vec![' '; cols]; rows],
                    _ => {}
                }
            }
            '\r' => c = 0,
            '\n' => r += 1,
            ch if ch >= ' ' => {
                if r < rows && c < cols {
                    grid[r][c] = ch;
                }
                c += 1;
            }
            _ => {}
        }
    }
    grid.into_iter().map(|l| l.into_iter().collect()).collect()
}

#[test]
fn the_live_view_in_a_terminal_shows_the_tree_and_answers_keys() {
    tree();
    let me = std::process::id();
    json_until(me, "the whole tree running", |s| {
        s.supervisors
            .iter()
            .any(|sup| sup.name == "root" && sup.children.iter().all(|c| c.pid.is_some()))
    });
    let (master, slave) = pty(140, 40);
    let mut child = Command::new(TOP)
        .args(["--interval", "200", &me.to_string()])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .env("TERM", "xterm-256color")
        .spawn()
        .expect("start procactor-top in the pty");
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // ends with EIO once the child is gone and the test drops the master
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut keys = std::fs::File::from(master);
    let shown = || screen_of(&screen.lock().unwrap(), 140, 40).join("\n");
    let wait_for = |what: &[&str]| {
        wait_until(
            Duration::from_secs(20),
            &format!("{what:?} on the screen"),
            || {
                let s = shown();
                if what.iter().all(|w| s.contains(w)) {
                    Ok(())
                } else {
                    Err(s)
                }
            },
        )
    };
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&[
            &format!("pid {me}"),
            "root",
            "  echo ",
            "  hash-1 ",
            "  hash-2 ",
            "  sub ",
            "    slow ",
        ]);
        wait_for(&["MSGS/S", "sort (tree order)", "q quit"]);
        keys.write_all(b"s").unwrap(); // sort by NAME
        wait_for(&["NAME▼", "sort (NAME ▼)"]);
        keys.write_all(b"\x1b[B").unwrap(); // down: the selection's details
        wait_for(&["actor echo"]);
        // sorted by name: echo, hash-1, hash-2, sub (slow under it)
        let s = shown();
        let at = |name: &str| s.find(name).unwrap_or_else(|| panic!("{name} in\n{s}"));
        assert!(
            at("  echo ") < at("  hash-1 ") && at("  hash-2 ") < at("  sub "),
            "{s}"
        );
        assert!(child.try_wait().unwrap().is_none(), "still running");
        keys.write_all(b"q").unwrap();
        let status = wait_until(Duration::from_secs(10), "exit after q", || {
            child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_string())
        });
        assert!(status.success(), "{status:?}");
        // the terminal was given back: alternate screen left
        let raw = screen.lock().unwrap().clone();
        let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(200)..]).to_string();
        assert!(tail.contains("\x1b[?1049l"), "{tail:?}");
    }));
    kill(&mut child);
    drop(keys);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
