//! Hostile, frozen and starved peers (issue 20): a child that misbehaves with the handles
//! it was given cannot crash, hang or fool the processes it shares them with.
//!
//! Each scenario runs its "victim" in a child process of the test (so that a `SIGBUS`, a
//! panic or a hang in the victim shows as a failed exit status, not as a dead test
//! binary); the victim starts the hostile process, then checks that it keeps running, gets
//! a clear error or the right value, and that its other objects keep working.
procactor::test_support!();

mod common;

use common::{send_signal, watchdog};
use procactor::{Array, Barrier, Event, Lock, LockError, Process, Queue, Value};
use std::time::{Duration, Instant};

/// Runs `victim` in its own process and requires it to exit successfully within `secs`.
fn in_victim(victim: fn(()), secs: u64) {
    watchdog(secs + 30, move || {
        let mut p = Process::new(victim, ()).start().unwrap();
        let s = p.join_timeout(Duration::from_secs(secs)).ok();
        if s.is_none() {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(10));
        }
        assert!(
            s.is_some_and(|s| s.success()),
            "the victim process did not end well: {s:?} (signal 7 is SIGBUS)"
        );
    });
}

/// The shared-memory files this process holds (`/proc/self/fd/N` links to
/// `/memfd:procactor:...`), as paths that reopen them.
fn my_shared_memory_files() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with("/memfd:procactor") {
            out.push(e.path().to_string_lossy().into_owned());
        }
    }
    out
}

type Objects = (Value<u64>, Array<u32>, Lock, Queue<String>, Event, Barrier);

fn objects() -> Objects {
    (
        Value::new(41).unwrap(),
        Array::from_slice(&[1, 2, 3]).unwrap(),
        Lock::new().unwrap(),
        Queue::new().unwrap(),
        Event::new().unwrap(),
        Barrier::new(1).unwrap(),
    )
}

/// Hostile: reopens every shared memory file it holds for writing, grows it, shrinks it
/// and truncates it to nothing (which, unsealed, makes every other mapping of it fault
/// with `SIGBUS` on its next touch). Reports how many files it found and how many resizes the
/// kernel allowed.
fn truncate_everything(objs: Objects) -> (usize, usize) {
    let files = my_shared_memory_files();
    let mut allowed = 0;
    for f in &files {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(f) else {
            continue;
        };
        for len in [1u64 << 30, 1, 0] {
            if file.set_len(len).is_ok() {
                allowed += 1;
            }
        }
    }
    drop(objs);
    (files.len(), allowed)
}

/// Uses every object once and checks the results.
fn use_all(o: &Objects, value: u64) {
    let (v, a, l, q, e, b) = o;
    assert_eq!(v.get().unwrap(), value);
    v.set(value + 1).unwrap();
    assert_eq!(a.to_vec(), vec![1, 2, 3]);
    drop(l.acquire_timeout(Duration::from_secs(5)).unwrap());
    q.put("hello".into()).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "hello");
    e.set();
    assert!(e.wait_timeout(Duration::from_secs(1)));
    assert_eq!(b.wait_timeout(Duration::from_secs(5)).unwrap(), 0);
}

fn victim_truncated((): ()) {
    let o = objects();
    use_all(&o, 41);
    let mut h = Process::new(truncate_everything, o.clone())
        .start()
        .unwrap();
    assert!(h.join_timeout(Duration::from_secs(60)).is_ok());
    let (found, allowed) = h.result().unwrap();
    assert!(
        found >= 6,
        "the hostile child held only {found} shared files"
    );
    // every page of every object still there: no SIGBUS
    use_all(&o, 42);
    assert_eq!(allowed, 0, "the kernel let a peer resize shared memory");
}

#[test]
fn a_child_cannot_truncate_or_grow_shared_memory_under_its_parent() {
    in_victim(victim_truncated, 120);
}

/// Holds `l` for 30 s (or until killed), after setting `held`.
fn hold_lock((l, held): (Lock, Event)) {
    let _g = l.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(30));
}

/// Starts a process that holds `l`, and returns once it does.
fn start_holder(l: &Lock) -> Process<()> {
    let held = Event::new().unwrap();
    let h = Process::new(hold_lock, (l.clone(), held.clone()))
        .start()
        .unwrap();
    assert!(
        held.wait_timeout(Duration::from_secs(30)),
        "holder never held"
    );
    h
}

/// After the holder `h` of `l` is killed: the next acquisition says so, and the lock
/// works normally afterwards.
fn kill_holder_and_recover(l: &Lock, mut h: Process<()>) {
    h.kill().unwrap();
    assert!(h.join_timeout(Duration::from_secs(10)).is_ok());
    match l.acquire_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(g)) => drop(g),
        Ok(g) => panic!("the dead owner went unnoticed (got {:?})", g.is_some()),
    }
    drop(l.acquire_timeout(Duration::from_secs(1)).unwrap().unwrap());
}

fn victim_frozen_owner((): ()) {
    let l = Lock::new().unwrap();
    let h = start_holder(&l);
    send_signal(h.pid(), "STOP");
    let t = Instant::now();
    match l.acquire_timeout(Duration::from_millis(1500)) {
        Ok(None) => {}
        Ok(Some(_)) => panic!("acquired a lock that a frozen process holds"),
        Err(_) => panic!("a frozen owner was taken for dead"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(l.try_acquire(), Ok(None)));
    kill_holder_and_recover(&l, h);
}

#[test]
fn a_frozen_lock_owner_is_not_taken_over_and_a_killed_one_is() {
    in_victim(victim_frozen_owner, 120);
}

/// Lowers this process's descriptor limit to the lowest free descriptor number, so that
/// opening any file (e.g. `/proc/<pid>/stat`) fails with `EMFILE`, then tries to take `l`
/// for 500 ms. Returns what happened, with the limit restored.
fn starved_contender(l: Lock) -> String {
    use std::os::fd::AsRawFd;
    let lowest_free = std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the live local `old`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit {
        rlim_cur: lowest_free,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads one live `rlimit`; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let starved = std::fs::File::open("/proc/self/stat").is_err();
    let outcome = match l.acquire_timeout(Duration::from_millis(500)) {
        Ok(None) => "timed out".to_string(),
        Ok(Some(_)) => "acquired".to_string(),
        Err(_) => "took the lock over as if its owner had died".to_string(),
    };
    // SAFETY: as above; raising the soft limit back to its old value (<= the hard one).
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    assert!(starved, "the descriptor limit did not bite");
    outcome
}

fn victim_starved_contender((): ()) {
    let l = Lock::new().unwrap();
    let h = start_holder(&l);
    let mut c = Process::new(starved_contender, l.clone()).start().unwrap();
    assert!(c.join_timeout(Duration::from_secs(30)).is_ok());
    assert_eq!(c.result().unwrap(), "timed out");
    kill_holder_and_recover(&l, h);
}

#[test]
fn a_contender_out_of_descriptors_does_not_take_over_a_living_owners_lock() {
    in_victim(victim_starved_contender, 120);
}

/// A program that a child starts by other means than procactor (here: the test binary,
/// listing no test) inherits the child's start variables when the child had threads
/// running at `init()` (they are removed only while single-threaded). A value naming a
/// living process that is not its parent is not addressed to it: it runs its own `main`.
#[test]
fn a_start_variable_addressed_to_another_process_is_ignored() {
    watchdog(60, || {
        let me = std::env::current_exe().unwrap();
        // pid 1 is alive and is not the parent of what this test starts
        for (key, value) in [
            ("PROCACTOR_CHILD", "0:12345:1"),
            ("PROCACTOR_FORKSERVER", "1"),
        ] {
            let out = std::process::Command::new(&me)
                .args(["--exact", "no_test_has_this_name"])
                .env(key, value)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("0 passed"),
                "{key}={value}: {:?}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

/// Maps (the first MiB of) every shared memory file this process holds whose name
/// contains `which`, as a peer can (the files are sealed, so the mapping is accepted).
fn map_my_regions(which: &str) -> Vec<procactor_transports::shm::ShmRegion> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let name = target.to_string_lossy().into_owned();
        if !name.starts_with("/memfd:procactor") || !name.contains(which) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(e.path())
        else {
            continue;
        };
        // the first MiB at most (a queue's file is a 64 GiB sparse overflow area)
        let len = f.metadata().unwrap().len().min(1 << 20) as usize;
        out.push(procactor_transports::shm::ShmRegion::from_fd_prefix(f.into(), len).unwrap());
    }
    out
}

/// Hostile: writes `parties = u32::MAX`, a count and a state no barrier has into the
/// barrier's shared header.
fn corrupt_barrier_header(b: Barrier) {
    let rs = map_my_regions("barrier");
    assert_eq!(rs.len(), 1);
    for (off, v) in [(24, u32::MAX), (20, 1000), (16, 77)] {
        rs[0]
            .atomic_u32(off)
            .store(v, std::sync::atomic::Ordering::SeqCst);
    }
    drop(b);
}

fn victim_corrupt_barrier((): ()) {
    let o = objects();
    let b = Barrier::new(2).unwrap();
    let mut h = Process::new(corrupt_barrier_header, b.clone())
        .start()
        .unwrap();
    assert!(h.join_timeout(Duration::from_secs(30)).unwrap().success());
    assert!(b.is_broken());
    assert_eq!(b.parties(), 2);
    assert!(b.wait_timeout(Duration::from_secs(2)).is_err());
    // the other objects are unaffected, and reset repairs the barrier
    use_all(&o, 41);
    b.reset();
    let b2 = b.clone();
    let t = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(30)));
    let mine = b.wait_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(mine + t.join().unwrap().unwrap(), 1);
}

#[test]
fn a_corrupted_barrier_header_is_a_broken_barrier_not_a_panic() {
    in_victim(victim_corrupt_barrier, 120);
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn scribble(r: &procactor_transports::shm::ShmRegion, seed: u64) {
    let mut x = seed | 1;
    for off in (0..r.len()).step_by(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.atomic_u64(off).store(
            x.wrapping_mul(0x2545_f491_4f6c_dd1d),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

/// Hostile: random bytes over every shared region of `o` whose name contains one of
/// `which` (the child holds only `o`'s descriptors). Returns how many it scribbled on.
fn scribble_objects((o, which, seed): (Objects, Vec<String>, u64)) -> usize {
    let mut n = 0;
    for w in &which {
        for r in map_my_regions(w) {
            scribble(&r, seed.wrapping_add(n as u64));
            n += 1;
        }
    }
    // (not dropped: a handle's own drop may wait on the garbage; this test is about
    // the victim)
    std::mem::forget(o);
    n
}

/// Uses every object once with deadlines; any result is fine except a panic or a hang
/// (the values are garbage now).
fn use_all_tolerantly(o: &Objects) {
    let (v, a, l, q, e, b) = o;
    let _ = v.get();
    let _ = v.set(1);
    let _ = a.to_vec();
    let _ = a.get(1);
    let _ = l.acquire_timeout(Duration::from_secs(2));
    let _ = q.put_timeout("x".into(), Duration::from_secs(2));
    let _ = q.get_timeout(Duration::from_secs(2));
    e.set();
    let _ = e.wait_timeout(Duration::from_millis(100));
    let _ = b.wait_timeout(Duration::from_secs(2));
    let _ = (b.is_broken(), b.n_waiting(), q.len(), q.is_broken());
}

fn victim_scribbled(which: &[&str]) {
    // a set that nobody scribbles on: must keep working exactly
    let clean = objects();
    let which: Vec<String> = which.iter().map(|s| s.to_string()).collect();
    for (k, seed) in [1u64, 0xdead_beef, 42].into_iter().enumerate() {
        let o = objects();
        let mut h = Process::new(scribble_objects, (o.clone(), which.clone(), seed))
            .start()
            .unwrap();
        assert!(h.join_timeout(Duration::from_secs(30)).is_ok());
        assert!(h.result().unwrap() >= which.len());
        use_all_tolerantly(&o);
        use_all(&clean, 41 + k as u64);
    }
}

fn victim_scribbled_sync((): ()) {
    victim_scribbled(&["value", "array", "lock", "event", "barrier"]);
}

#[test]
fn a_child_scribbling_over_values_locks_and_barriers_cannot_crash_or_hang_its_parent() {
    in_victim(victim_scribbled_sync, 180);
}

fn victim_scribbled_queue((): ()) {
    victim_scribbled(&["queue"]);
}

/// The queue's ring header is validated by the ring itself (`transports/src/ring.rs`).
#[test]
fn a_child_scribbling_over_a_queue_cannot_crash_or_hang_its_parent() {
    in_victim(victim_scribbled_queue, 180);
}

/// Puts one 8 MiB item: through a 64 KiB ring it streams, so the put lasts until a
/// consumer has taken it all.
fn put_large(q: Queue<Vec<u8>>) {
    q.put(vec![7u8; 8 << 20]).unwrap();
}

fn victim_frozen_writer((): ()) {
    let q: Queue<Vec<u8>> = Queue::bounded_with_capacity_bytes(4, 64 << 10).unwrap();
    let w = Process::new(put_large, q.clone()).start().unwrap();
    // let it fill the ring and wait for a consumer inside its message
    std::thread::sleep(Duration::from_millis(500));
    send_signal(w.pid(), "STOP");
    eprintln!("victim: writer stopped");
    // the reader takes what is there, then waits for a writer that does not move: its
    // deadline holds, and it gets no partial message
    let t = Instant::now();
    let got = q.get_timeout(Duration::from_secs(1));
    let waited = t.elapsed();
    assert!(got.is_err(), "a partial message was delivered");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?} ({got:?})"
    );
    eprintln!("victim: get returned after {waited:?}: {got:?}");
    send_signal(w.pid(), "KILL");
    let mut w = w;
    assert!(w.join_timeout(Duration::from_secs(10)).is_ok());
    eprintln!("victim: writer killed");
    // the queue works again: the torn message is discarded, a new one crosses
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match q.put_timeout(vec![1, 2, 3], Duration::from_secs(2)) {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "put never recovered: {e:?}"),
        }
    }
    let mut seen = Vec::new();
    loop {
        match q.get_timeout(Duration::from_secs(2)) {
            Ok(v) if v == vec![1, 2, 3] => break,
            Ok(v) => seen.push(v.len()),
            Err(e) => panic!("the queue did not recover after the writer died: {e:?}"),
        }
        assert!(Instant::now() < deadline, "no recovery");
    }
    assert!(seen.is_empty(), "got parts of the torn message: {seen:?}");
}

/// Ring scenario (the stream protocol is `transports/src/ring.rs`): a reader inside a
/// streamed message honours its deadline when the writer is frozen (it waited with no
/// deadline before issue 20's ring work), gets no partial message, and the queue works
/// once the writer is killed. (A writer that is resumed instead re-sends its item whole:
/// `ring::kill_tests::a_writer_stopped_mid_message_and_resumed_delivers_its_message_whole`.)
#[test]
fn a_writer_frozen_mid_message_does_not_hang_or_fool_the_reader() {
    in_victim(victim_frozen_writer, 60);
}

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

const UNASKED_ROUNDS: usize = 200;

/// Hostile: sends frames that announce no descriptors but carry three (SCM_RIGHTS on its
/// end of the pipe), many times; then a normal message; then a frame announcing one
/// descriptor that carries two.
fn send_unasked_fds(conn: procactor::Connection<String, String>) {
    use procactor_transports::{fdpass, frame};
    use std::os::fd::AsFd;
    let null: Vec<std::fs::File> = (0..3)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let all: Vec<_> = null.iter().map(|f| f.as_fd()).collect();
    for i in 0..UNASKED_ROUNDS {
        let payload = format!("m{i}");
        let h = frame::header(payload.len(), 0);
        let n = fdpass::send(conn.as_fd(), &[&h, payload.as_bytes()], &all, false).unwrap();
        assert_eq!(n, h.len() + payload.len());
    }
    conn.send(&"done".to_string()).unwrap();
    let h = frame::header(4, 1);
    fdpass::send(conn.as_fd(), &[&h, b"more"], &all[..2], false).unwrap();
    // stay until the victim has read everything (it closes its end)
    let _ = conn.poll(Some(Duration::from_secs(20)));
}

fn victim_unasked_fds((): ()) {
    // (a first child so that the runtime's own descriptors exist before counting)
    let mut warm = Process::new(|()| {}, ()).start().unwrap();
    warm.join_timeout(Duration::from_secs(20)).unwrap();
    let before = open_fds();
    let (mine, theirs) = procactor::Pipe::<String>::new().unwrap();
    let mut h = Process::new(send_unasked_fds, theirs).start().unwrap();
    for i in 0..UNASKED_ROUNDS {
        assert!(
            mine.poll(Some(Duration::from_secs(20))).unwrap(),
            "round {i}"
        );
        let got = mine.recv_bytes(None).unwrap();
        assert_eq!(got, format!("m{i}").as_bytes());
        // the extras are closed as their frame is consumed: at most one batch is held
        assert!(
            open_fds() <= before + 1 + 3,
            "round {i}: {} > {before}",
            open_fds()
        );
    }
    assert_eq!(mine.recv_timeout(Duration::from_secs(20)).unwrap(), "done");
    // more descriptors than announced: a clear error, and the connection is broken
    match mine.recv_timeout(Duration::from_secs(20)) {
        Err(procactor::RecvTimeoutError::Broken(m)) => assert!(m.contains("descriptors"), "{m}"),
        other => panic!("a frame with more descriptors than it announced: {other:?}"),
    }
    assert!(matches!(
        mine.recv_timeout(Duration::from_secs(1)),
        Err(procactor::RecvTimeoutError::Broken(_))
    ));
    drop(mine);
    h.join_timeout(Duration::from_secs(20)).unwrap();
    drop(h); // (its pidfd)

    // (a descriptor another thread of the runtime is closing right now, such as the exit
    // monitor's copy of the child's pidfd, may still be open for a moment: a leak never
    // goes away, so wait a bounded while for the count to settle)
    let settle = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = open_fds();
    while after > before && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
        after = open_fds();
    }
    let links: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()))
        .collect();
    assert!(
        after <= before,
        "descriptors grew from {before} to {after}: {links:?}"
    );
}

/// Descriptors a frame did not announce: a frame announcing none that carries three is
/// delivered without them (they are closed, the count of open descriptors does not grow
/// over 200 such frames) and the connection keeps working; a frame carrying more than it
/// announced is a clear `Broken` error and the connection stays broken.
#[test]
fn descriptors_a_frame_did_not_announce_are_closed_not_kept() {
    in_victim(victim_unasked_fds, 60);
}

fn double(x: u64) -> u64 {
    x * 2
}

type Parts = (i64, String, u64);

/// In a child: resolves a reference its parent described and one forged from it, and
/// says whether the tree's key is visible in its environment.
fn resolve_in_child((genuine, forged): (Parts, Parts)) -> (Result<u64, String>, String, bool) {
    use procactor_transports::target::{resolve_checked, SameImage, TargetRef};
    let proof = SameImage::verify(&procactor_transports::os::exe_fingerprint().unwrap()).unwrap();
    let g = TargetRef::from_parts(genuine.0, genuine.1, genuine.2);
    let ok = resolve_checked::<fn(u64) -> u64>(&g, &proof)
        .map(|f| f(21))
        .map_err(|e| e.to_string());
    let f = TargetRef::from_parts(forged.0, forged.1, forged.2);
    let refused = match resolve_checked::<fn(u64) -> u64>(&f, &proof) {
        Ok(_) => "resolved".to_string(),
        Err(e) => e.to_string(),
    };
    // the variable is gone, and the kernel's copy of the start environment holds no key
    let environ = std::fs::read("/proc/self/environ").unwrap();
    let leaked = environ.split(|&b| b == 0).any(|v| {
        v.strip_prefix(b"PROCACTOR_TREE_KEY=")
            .is_some_and(|k| k.iter().any(|&d| d != b'0'))
    });
    (
        ok,
        refused,
        std::env::var_os("PROCACTOR_TREE_KEY").is_some() || leaked,
    )
}

fn check_forged_in_children(methods: &[procactor::StartMethod]) {
    let genuine = procactor_transports::target::describe(double as fn(u64) -> u64);
    let g = genuine.into_parts();
    let forged = (g.0 + 64, g.1.clone(), g.2);
    for &method in methods {
        let mut p = Process::new(resolve_in_child, (g.clone(), forged.clone()))
            .start_method(method)
            .start()
            .unwrap();
        p.join_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{method:?}: the child did not end: {e}"));
        let (ok, refused, visible) = p.result().unwrap_or_else(|e| panic!("{method:?}: {e:?}"));
        assert_eq!(ok, Ok(42), "{method:?}");
        assert!(
            refused.contains("MAC does not verify"),
            "{method:?}: {refused}"
        );
        assert!(
            !visible,
            "{method:?}: the key is in the child's environment"
        );
    }
}

/// (In a spawned, single-threaded process: the test binary has threads, so `Fork` is
/// refused there.) Its key came by `exec`; its forked child has it by copy.
fn victim_forked_resolution((): ()) {
    check_forged_in_children(&[procactor::StartMethod::Fork, procactor::StartMethod::Spawn]);
}

/// A function reference forged from safe code (an offset moved, the MAC kept) does not
/// resolve in a child, whichever way it was started, while one its parent described
/// does (the tree's key reaches every child, and no child sees it in its environment).
#[test]
fn a_forged_function_reference_does_not_resolve_in_a_child() {
    watchdog(120, || {
        check_forged_in_children(&[
            procactor::StartMethod::Spawn,
            procactor::StartMethod::ForkServer,
        ]);
    });
    in_victim(victim_forked_resolution, 60);
}
