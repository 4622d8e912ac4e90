//! Observing a running program (issue 24): `Supervisor::snapshot`, `observe::snapshot`,
//! the observe socket (`observe::fetch` from another process, hostile clients, another
//! user, `PROCACTOR_OBSERVE=0`).
procactor::test_support!();

mod common;
use common::{run_test_in_child, send_signal, wait_until, watchdog};
use procactor::observe::{self, ObserveError};
use procactor::stats::{ChildKind, ChildSnapshot, ProgramSnapshot, SupervisorSnapshot};
use procactor::{
    process_actor, Actor, ActorError, ActorRef, Context, PoolRef, Process, Supervisor,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// Counts what it is sent (nothing else: the statistics are the library's).
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Sink;

impl Actor for Sink {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, _: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        Ok(())
    }
}

/// A tree and the references that keep its actors alive (an actor whose every sender
/// is gone ends).
struct Tree {
    root: Supervisor,
    _refs: (ActorRef<Sink>, PoolRef<Sink>, ActorRef<Sink>),
}

/// root: `front`, a pool `crew` of two, and a child supervisor `sub` (own process)
/// with `inner`.
fn tree(name: &str) -> Tree {
    let mut sub = Supervisor::builder().name("sub");
    let inner = sub
        .add_with(procactor::ChildSpec::new().name("inner"), Sink)
        .unwrap();
    let root = Supervisor::builder().name(name).build().unwrap();
    let front = root
        .spawn_with(procactor::ChildSpec::new().name("front"), Sink)
        .unwrap();
    let crew = root
        .spawn_pool_with(procactor::ChildSpec::new().name("crew"), 2, || Sink)
        .unwrap();
    root.spawn_supervisor(sub).unwrap();
    let t = Instant::now();
    while !all_running(&root.snapshot()) {
        assert!(
            t.elapsed() < T,
            "the tree did not start: {:#?}",
            root.snapshot()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Tree {
        root,
        _refs: (front, crew, inner),
    }
}

fn all_running(s: &SupervisorSnapshot) -> bool {
    s.children.iter().all(|c| {
        c.pid.is_some()
            && c.supervisor
                .as_ref()
                .map_or(c.kind != ChildKind::Supervisor, |s| all_running(s))
    })
}

fn names(s: &SupervisorSnapshot) -> Vec<&str> {
    s.children.iter().map(|c| c.name.as_str()).collect()
}

fn child<'a>(s: &'a SupervisorSnapshot, name: &str) -> &'a ChildSnapshot {
    s.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no child {name} in {s:#?}"))
}

fn root_of<'a>(p: &'a ProgramSnapshot, name: &str) -> &'a SupervisorSnapshot {
    p.supervisors
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no supervisor {name} in {p:#?}"))
}

/// What `fetch` of the tree above must show (whichever process reads it).
fn check_tree(s: &SupervisorSnapshot) {
    assert!(s.name.starts_with("root-"));
    assert_eq!(names(s), ["front", "crew-1", "crew-2", "sub"], "{s:#?}");
    assert_eq!(s.pid, std::process::id());
    assert_eq!(s.status, "running");
    assert_eq!(s.strategy, "OneForOne");
    let front = child(s, "front");
    assert_eq!(front.kind, ChildKind::Actor);
    assert_eq!(front.state, "running");
    assert_eq!(front.restarts, 0);
    assert_eq!(front.last_exit, None);
    let u = front.usage.as_ref().expect("a running actor's usage");
    assert!(u.uss_kib > 0 && u.pss_kib > 0, "{u:?}");
    assert_eq!(
        child(s, "crew-2").kind,
        ChildKind::PoolMember {
            pool: "crew".into(),
            member: 1
        }
    );
    let sub = child(s, "sub");
    assert_eq!(sub.kind, ChildKind::Supervisor);
    let subtree = sub
        .supervisor
        .as_ref()
        .expect("the child supervisor's tree");
    assert_eq!(subtree.name, "sub");
    assert_eq!(Some(subtree.pid), sub.pid);
    assert_ne!(
        subtree.pid,
        std::process::id(),
        "it runs in its own process"
    );
    assert_eq!(names(subtree), ["inner"]);
    let inner = child(subtree, "inner");
    assert!(inner.pid.is_some() && inner.pid != sub.pid, "{inner:?}");
    assert!(inner.usage.is_some());
}

#[test]
fn the_snapshot_shows_the_tree_and_a_child_supervisors_children() {
    watchdog(60, || {
        let t = tree("root-a");
        let root = &t.root;
        check_tree(&root.snapshot());
        let p = observe::snapshot();
        assert_eq!(p.pid, std::process::id());
        assert!(!p.command.is_empty());
        assert!(p.usage.as_ref().is_some_and(|u| u.uss_kib > 0));
        check_tree(root_of(&p, "root-a"));
        let text = root.tree();
        assert!(text.starts_with("root-a (supervisor, pid "), "{text}");
        let inner = child(
            child(&root.snapshot(), "sub").supervisor.as_ref().unwrap(),
            "inner",
        )
        .pid;
        assert!(
            text.lines()
                .any(|l| l.contains("inner") && l.contains(&format!("pid {}", inner.unwrap()))),
            "{text}"
        );
        root.shutdown(T);
        assert_eq!(root.snapshot().status, "shut down");
    });
}

/// In a child process: the parent's snapshot through its socket.
fn fetch_parent(pid: u32) -> Result<SupervisorSnapshot, String> {
    let p = observe::fetch(pid, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    if p.pid != pid {
        return Err(format!("a snapshot of {} instead of {pid}", p.pid));
    }
    Ok(root_of(&p, "root-b").clone())
}

#[test]
fn another_process_fetches_the_tree_over_the_socket() {
    watchdog(60, || {
        let t = tree("root-b");
        assert!(observe::serving());
        let mut p = Process::new(fetch_parent, std::process::id())
            .start()
            .unwrap();
        p.join_timeout(T).unwrap();
        let got = p.result().unwrap().unwrap();
        check_tree(&got);
        t.root.shutdown(T);
    });
}

fn raw_connect() -> UnixStream {
    let addr = SocketAddr::from_abstract_name(observe::socket_name(std::process::id()).as_bytes())
        .unwrap();
    let s = UnixStream::connect_addr(&addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// A reply on a raw connection: the length, then the CBOR.
fn raw_reply(s: &mut UnixStream) -> ProgramSnapshot {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    ciborium::from_reader(&body[..]).unwrap()
}

#[test]
fn hostile_clients_are_dropped_and_the_next_one_is_served() {
    watchdog(60, || {
        let root = Supervisor::builder().name("root-c").build().unwrap();
        // garbage: the connection is closed without a byte of answer
        let mut g = raw_connect();
        g.write_all(b"gimme all\n").unwrap();
        let mut buf = [0u8; 16];
        // (closed with a byte unread: a reset rather than an end of stream)
        match g.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        // a request that never ends, and a pile of idle connections: others are served
        let mut half = raw_connect();
        half.write_all(b"snap").unwrap();
        let idle: Vec<UnixStream> = (0..40).map(|_| raw_connect()).collect();
        let t = Instant::now();
        let p = observe::fetch(std::process::id(), Duration::from_secs(10));
        // (40 idle connections fill the server's slots: the fetch may be refused, never
        // left waiting)
        match p {
            Ok(p) => assert_eq!(root_of(&p, "root-c").name, "root-c"),
            Err(ObserveError::Refused { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        drop(idle);
        // once they are gone, served again; requests repeat on one connection
        wait_until(T, "the server to serve again", || {
            observe::fetch(std::process::id(), Duration::from_secs(10)).is_ok()
        });
        let mut c = raw_connect();
        for _ in 0..3 {
            c.write_all(b"snapshot\n").unwrap();
            assert_eq!(raw_reply(&mut c).pid, std::process::id());
        }
        // the half request still holds its slot without an answer
        half.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let e = half.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        drop(root);
    });
}

/// Run in a child by `observing_off_means_no_server_and_the_server_ends_with_the_last_supervisor`.
#[test]
#[ignore = "run by another test, in a process of its own"]
fn child_observing() {
    let off = std::env::var("PROCACTOR_OBSERVE").is_ok_and(|v| v == "0");
    let me = std::process::id();
    assert!(!observe::serving(), "nothing observable yet");
    assert!(matches!(
        observe::fetch(me, T),
        Err(ObserveError::NoServer { .. })
    ));
    let sup = Supervisor::builder().name("only").build().unwrap();
    // the snapshot itself works either way
    assert_eq!(observe::snapshot().supervisors.len(), 1);
    if off {
        assert!(!observe::serving());
        let e = observe::fetch(me, T).unwrap_err();
        assert!(matches!(e, ObserveError::NoServer { .. }), "{e}");
        assert!(e.to_string().contains("PROCACTOR_OBSERVE=0"), "{e}");
        println!("OBSERVE-OFF-CHECKED");
    } else {
        assert!(observe::serving());
        assert_eq!(observe::fetch(me, T).unwrap().supervisors[0].name, "only");
        drop(sup);
        // the last observable thing gone: the server thread has ended
        assert!(!observe::serving());
        assert!(matches!(
            observe::fetch(me, T),
            Err(ObserveError::NoServer { .. })
        ));
        println!("OBSERVE-ON-CHECKED");
    }
}

#[test]
fn observing_off_means_no_server_and_the_server_ends_with_the_last_supervisor() {
    let run = run_test_in_child("child_observing", true, &[("PROCACTOR_OBSERVE", Some("0"))]);
    assert!(run.stdout.contains("OBSERVE-OFF-CHECKED"), "{}", run.stdout);
    let run = run_test_in_child("child_observing", true, &[("PROCACTOR_OBSERVE", None)]);
    assert!(run.stdout.contains("OBSERVE-ON-CHECKED"), "{}", run.stdout);
}

/// Run in a child by `the_server_starts_again_while_the_last_one_is_ending`: its own
/// process, so that its registry empties (the other tests keep supervisors).
#[test]
#[ignore = "run by another test, in a process of its own"]
fn child_churning() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let me = std::process::id();
    let done = Arc::new(AtomicBool::new(false));
    // fetches all along: the server then holds each queue while it describes it, and a
    // queue's last handle is often dropped there (the server told to end by its own
    // thread, its listener still bound for a moment)
    let fetcher = |done: Arc<AtomicBool>| {
        std::thread::spawn(move || {
            let mut served = 0u32;
            while !done.load(Ordering::Relaxed) {
                // (one connection while the server lasts: more requests than connects)
                let Ok(mut o) = observe::Observer::connect(me, Duration::from_secs(5)) else {
                    continue;
                };
                while !done.load(Ordering::Relaxed) && o.snapshot(Duration::from_secs(5)).is_ok() {
                    served += 1;
                }
            }
            served
        })
    };
    let fetchers = [fetcher(done.clone()), fetcher(done.clone())];
    let churn = move |k: usize| {
        let mut unserved = 0u32;
        for i in 0..3000 {
            let q = procactor::Queue::<u32>::builder()
                .name(format!("churn-{k}"))
                .build()
                .unwrap();
            // something observable lives: the server runs (a failed bind left none)
            if !observe::serving() {
                unserved += 1;
            }
            if i % 100 == 0 {
                let p = observe::fetch(me, Duration::from_secs(10));
                assert!(p.is_ok(), "a fetch with a queue alive: {p:?}");
            }
            drop(q);
        }
        unserved
    };
    let other = std::thread::spawn(move || churn(1));
    let unserved = churn(0) + other.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let served: u32 = fetchers.into_iter().map(|f| f.join().unwrap()).sum();
    let q = procactor::Queue::<u32>::builder()
        .name("last")
        .build()
        .unwrap();
    assert!(observe::serving());
    let p = observe::fetch(me, T).unwrap();
    assert!(p.queues.iter().any(|s| s.name == "last"), "{p:?}");
    drop(q);
    assert_eq!(unserved, 0, "registrations left without a server");
    println!("CHURN-CHECKED served={served}");
}

#[test]
fn the_server_starts_again_while_the_last_one_is_ending() {
    let run = run_test_in_child("child_churning", true, &[("PROCACTOR_OBSERVE", None)]);
    assert!(run.stdout.contains("CHURN-CHECKED"), "{}", run.stdout);
}

/// Run as another user by `another_user_is_refused`.
#[test]
#[ignore = "run by another test, as another user"]
fn child_as_other_user() {
    let pid: u32 = std::env::var("OBSERVE_TARGET").unwrap().parse().unwrap();
    let e = observe::fetch(pid, T).unwrap_err();
    assert!(matches!(e, ObserveError::Refused { .. }), "{e}");
    println!("REFUSED-AS-OTHER-USER");
}

#[test]
fn another_user_is_refused() {
    watchdog(60, || {
        let root = Supervisor::builder().name("root").build().unwrap();
        let setpriv = std::path::Path::new("/usr/bin/setpriv");
        if !setpriv.exists() || procactor_transports_euid() != 0 {
            // (the uid check itself is unit-tested in procactor-core's observe module)
            // (written to the stderr descriptor itself, not with eprintln!: the test
            // harness captures the macros' output of a passing test, so the skip would
            // not show)
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED another_user_is_refused: needs root and /usr/bin/setpriv to run \
                 a client as another user; nothing was checked"
            );
            return;
        }
        let out = std::process::Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "child_as_other_user", "--nocapture", "--ignored"])
            .env("OBSERVE_TARGET", std::process::id().to_string())
            .env_remove(common::ON_MAIN_THREAD)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("REFUSED-AS-OTHER-USER"),
            "{:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // and the same user is still served (once another test's idle connections, if
        // any, have left it a slot)
        wait_until(T, "the same user to be served", || {
            observe::fetch(std::process::id(), T).is_ok()
        });
        drop(root);
    });
}

#[test]
fn a_process_squatting_another_ones_socket_name_is_not_believed() {
    watchdog(60, || {
        // this process takes the name of a child's observe socket, and never answers
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let addr = SocketAddr::from_abstract_name(observe::socket_name(pid).as_bytes()).unwrap();
        let squat = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let t = Instant::now();
        let e = observe::fetch(pid, T).unwrap_err();
        assert!(
            matches!(e, ObserveError::Refused { pid: p } if p == pid),
            "{e}"
        );
        // (refused at connect, not after waiting for an answer)
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // and nothing was sent to the squatter
        let (mut c, _) = squat.accept().unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        let _ = child.kill();
        let _ = child.wait();
    });
}

fn procactor_transports_euid() -> u32 {
    // (the test's own reading of its euid, not the library's)
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u.parse().unwrap()))
        .unwrap()
}

/// Answers calls: `Work(µs)` busy for that long, `Fail` returns an error (a crash).
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Server;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    Work(u64),
    Fail,
    Panic,
}

impl Actor for Server {
    type Msg = Job;
    type Reply = u32;
    fn handle(&mut self, job: Job, _: &mut Context<Self>) -> Result<u32, ActorError> {
        match job {
            Job::Work(us) => {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(us) {
                    std::hint::spin_loop();
                }
                Ok(std::process::id())
            }
            Job::Fail => Err(ActorError::new("asked to fail")),
            Job::Panic => panic!("asked to panic"),
        }
    }
}

/// Busy for the given µs per message.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Busy;

impl Actor for Busy {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, us: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

fn stats_of(sup: &Supervisor, name: &str) -> procactor::stats::ActorStats {
    child(&sup.snapshot(), name)
        .stats
        .clone()
        .expect("an actor's statistics")
}

#[test]
fn statistics_count_messages_calls_errors_and_restarts() {
    watchdog(60, || {
        let sup = Supervisor::builder()
            .name("stats-a")
            .max_restarts(5, Duration::from_secs(60))
            .build()
            .unwrap();
        let spec = |n: &str| procactor::ChildSpec::new().name(n).time_every(1);
        let busy = sup.spawn_with(spec("busy"), Busy).unwrap();
        let server = sup.spawn_with(spec("server"), Server).unwrap();
        const N: u64 = 200;
        for i in 0..N {
            busy.send(if i % 50 == 0 { 2_000 } else { 20 }).unwrap();
        }
        wait_until(T, "every message handled", || {
            stats_of(&sup, "busy").handled == N
        });
        let s = stats_of(&sup, "busy");
        assert_eq!((s.calls, s.errors, s.undecodable), (0, 0, 0), "{s:?}");
        // every message timed (time_every(1)): both histograms count them all
        assert_eq!(s.handle_time.count, N, "{s:?}");
        assert_eq!(s.mailbox_wait.count, N, "{s:?}");
        let h = &s.handle_time;
        assert!(h.p50_ns >= 10_000 && h.p99_ns >= h.p50_ns, "{h:?}");
        // the 2 ms ones are the slowest: the max is one of them (within the bucket's
        // factor of two), the median one of the 20 µs ones
        assert!(h.max_ns >= 2_000_000 && h.p50_ns < 1_000_000, "{h:?}");
        assert!(s.mailbox_wait.max_ns > 0);
        assert!(s.uptime_ms.is_some());
        // calls
        for _ in 0..5 {
            server.call_timeout(Job::Work(10), T).unwrap();
        }
        let s = stats_of(&sup, "server");
        assert_eq!((s.handled, s.calls, s.errors), (5, 5, 0), "{s:?}");
        assert_eq!(s.handle_time.count, 5);
        // an Err from handle: counted, the actor crashes and is restarted
        let e = server.call_timeout(Job::Fail, T).unwrap_err();
        assert!(matches!(e, procactor::CallError::Failed(_)), "{e}");
        wait_until(T, "the restart", || {
            let c = child(&sup.snapshot(), "server").clone();
            c.restarts == 1 && c.state == "running"
        });
        let c = child(&sup.snapshot(), "server").clone();
        assert_eq!(c.last_exit.as_deref(), Some("exit code 1"));
        let s = c.stats.unwrap();
        // counts carry across restarts; the uptime is the new incarnation's
        assert_eq!((s.handled, s.calls, s.errors), (6, 6, 1), "{s:?}");
        server.call_timeout(Job::Work(1), T).unwrap();
        assert_eq!(stats_of(&sup, "server").handled, 7);
        // a panic in handle: an error too (counted as the process unwinds), not handled
        let e = server.call_timeout(Job::Panic, T).unwrap_err();
        assert_eq!(e, procactor::CallError::Died);
        wait_until(T, "the second restart", || {
            let c = child(&sup.snapshot(), "server").clone();
            c.restarts == 2 && c.state == "running"
        });
        let s = stats_of(&sup, "server");
        assert_eq!((s.handled, s.errors), (7, 2), "{s:?}");
        // the tree shows the counts
        let text = sup.tree();
        assert!(
            text.lines()
                .any(|l| l.contains("busy") && l.contains(&format!("handled {N}"))),
            "{text}"
        );
        sup.shutdown(T);
    });
}

#[test]
fn pool_members_count_apart_and_sampling_times_some_messages() {
    watchdog(60, || {
        let sup = Supervisor::builder().name("stats-b").build().unwrap();
        let pool = sup
            .spawn_pool_with(procactor::ChildSpec::new().name("crew"), 2, || Busy)
            .unwrap();
        const N: u64 = 640;
        for _ in 0..N {
            pool.send(50).unwrap();
        }
        wait_until(T, "every message handled", || {
            stats_of(&sup, "crew-1").handled + stats_of(&sup, "crew-2").handled == N
        });
        let (a, b) = (stats_of(&sup, "crew-1"), stats_of(&sup, "crew-2"));
        // each member its own block: both worked (50 µs each, two processes)
        assert!(a.handled > 0 && b.handled > 0, "{a:?} {b:?}");
        // one in 16 timed by default (at random: 40 expected of 640)
        let timed = a.handle_time.count + b.handle_time.count;
        assert!(timed > 0 && timed < N / 2, "{timed} of {N} timed");
        assert_eq!(
            a.mailbox_wait.count + b.mailbox_wait.count,
            timed,
            "a timed message has both its wait and its handle time"
        );
        sup.shutdown(T);
    });
}

fn take_n((q, n): (procactor::Queue<u32>, u32)) -> u32 {
    (0..n).map(|_| q.get_timeout(T).unwrap()).sum()
}

#[test]
fn a_named_queue_is_listed_with_its_depth_puts_and_gets() {
    watchdog(60, || {
        let q = procactor::Queue::<u32>::builder()
            .name("jobs-a")
            .build()
            .unwrap();
        let unnamed = procactor::Queue::<u32>::new().unwrap();
        for i in 0..10 {
            q.put(i).unwrap();
        }
        // another process takes 4 (its handle counts too)
        let mut p = Process::new(take_n, (q.clone(), 4)).start().unwrap();
        p.join_timeout(T).unwrap();
        assert_eq!(p.result().unwrap(), 6);
        let find = || {
            observe::snapshot()
                .queues
                .into_iter()
                .find(|s| s.name == "jobs-a")
        };
        let s = find().expect("the named queue listed");
        assert_eq!((s.depth, s.puts, s.gets), (6, 10, 4), "{s:?}");
        assert_eq!(s.depth as usize, q.len());
        // only named queues are listed; a dropped one is no longer
        drop(unnamed);
        let clone = q.clone();
        drop(q);
        assert!(find().is_some(), "a clone still lives");
        drop(clone);
        // (a snapshot under way in the observe server, for another test's fetch of this
        // process, may hold the queue's entry a moment longer: it leaves when that
        // snapshot is done)
        wait_until(T, "the dropped queue to leave the snapshot", || {
            find().is_none()
        });
    });
}

fn square_or_panic(x: u64) -> u64 {
    assert!(x != 13, "thirteen");
    x * x
}

fn pool_of<'a>(p: &'a ProgramSnapshot, name: &str) -> &'a procactor::stats::PoolSnapshot {
    p.pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name} in {:?}", p.pools))
}

#[test]
fn a_pools_workers_show_their_tasks_errors_time_and_restarts() {
    watchdog(90, || {
        let pool = procactor::Pool::builder()
            .processes(2)
            .name("squares")
            .build()
            .unwrap();
        // 100 tasks in chunks of 10, one of which panics; then one apply_async
        let out = pool
            .map_chunksize(square_or_panic, 0..100u64, 10)
            .expect_err("task 13 panicked");
        assert!(out.to_string().contains("thirteen"), "{out}");
        let h = pool.apply_async(square_or_panic, 7).unwrap();
        assert_eq!(h.get_timeout(T).unwrap(), 49);
        // (map returned at its first failed item: the chunks after it may still run)
        wait_until(T, "every chunk finished", || {
            pool_of(&observe::snapshot(), "squares").pending == 0
        });
        let snap = observe::snapshot();
        let s = pool_of(&snap, "squares");
        assert_eq!(s.workers.len(), 2);
        let tasks: u64 = s.workers.iter().map(|w| w.tasks).sum();
        let errors: u64 = s.workers.iter().map(|w| w.errors).sum();
        assert_eq!((tasks, errors), (101, 1), "{s:?}");
        let timed: u64 = s.workers.iter().map(|w| w.task_time.count).sum();
        assert_eq!(timed, 11, "one sample per chunk: {s:?}");
        for w in &s.workers {
            assert!(w.pid.is_some(), "{w:?}");
            assert_eq!(w.restarts, 0);
            let u = w.usage.as_ref().expect("a live worker's usage");
            assert!(u.uss_kib > 0, "{u:?}");
            if w.task_time.count > 0 {
                assert!(w.task_time.max_ns > 0 && w.task_time.p99_ns <= w.task_time.max_ns);
            }
        }
        // a worker killed: its slot gets a new process, a restart, and keeps its counts
        let victim = s.workers[0].pid.unwrap();
        let before = s.workers[0].tasks;
        send_signal(victim, "KILL");
        wait_until(T, "the killed worker's replacement", || {
            let snap = observe::snapshot();
            let w = &pool_of(&snap, "squares").workers[0];
            w.restarts == 1 && w.pid.is_some_and(|p| p != victim)
        });
        let snap = observe::snapshot();
        assert_eq!(pool_of(&snap, "squares").workers[0].tasks, before);
        // the unnamed pools of this process are named pool-<n>; a dropped pool is gone
        let other = procactor::Pool::new(1).unwrap();
        let snap = observe::snapshot();
        assert!(
            snap.pools.iter().any(|p| p.name.starts_with("pool-")),
            "{:?}",
            snap.pools
        );
        drop(other);
        drop(pool);
        // (as for a named queue: a snapshot under way in the observe server may hold a
        // pool's entry a moment longer)
        wait_until(T, "the dropped pools to leave the snapshot", || {
            observe::snapshot().pools.is_empty()
        });
    });
}
