//! Supervision: strategies, restart types, intensity, mailboxes that survive restarts,
//! pools, child supervisors in their own process, shutdown, events and the tree.
procactor::test_support!();

mod common;
use common::{wait_until, watchdog};
use procactor::{
    process_actor, Actor, ActorError, ActorState, ChildSpec, Context, Queue, Restart, Shutdown,
    Strategy, Supervisor, SupervisorError, SupervisorEvent,
};
use proptest::prelude::{prop_oneof, proptest, Just};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Act {
    Ok,
    Panic,
    Abort,
    /// SIGKILL from outside the Rust code (the `kill` command aimed at itself).
    Kill,
    Sleep(u64),
}

/// Reports `(tag, id, pid)` for every message handled, and `(tag, 0, pid)` at start.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Worker {
    tag: u32,
    out: Queue<(u32, u64, u32)>,
}

impl Actor for Worker {
    type Msg = (u64, Act);
    type Reply = ();
    fn started(&mut self, _: &mut Context<Self>) -> Result<(), ActorError> {
        self.out.put((self.tag, 0, std::process::id()))?;
        Ok(())
    }
    fn handle(&mut self, (id, act): (u64, Act), _: &mut Context<Self>) -> Result<(), ActorError> {
        match act {
            Act::Ok => {}
            Act::Panic => panic!("bad message {id}"),
            Act::Abort => std::process::abort(),
            Act::Kill => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &std::process::id().to_string()])
                    .status();
                std::thread::sleep(Duration::from_secs(60)); // the signal ends it first
            }
            Act::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        self.out.put((self.tag, id, std::process::id()))?;
        Ok(())
    }
}

fn spawn_worker(sup: &Supervisor, tag: u32, out: &Reports) -> procactor::ActorRef<Worker> {
    sup.spawn(Worker {
        tag,
        out: out.clone(),
    })
    .unwrap()
}

/// A supervisor allowing `max` restarts in `secs` seconds, with worker 1 started.
fn one_worker(max: u32, secs: u64) -> (Supervisor, procactor::ActorRef<Worker>, Reports) {
    let out = Queue::new().unwrap();
    let sup = Supervisor::builder()
        .max_restarts(max, Duration::from_secs(secs))
        .build()
        .unwrap();
    let w = spawn_worker(&sup, 1, &out);
    started(&out, &[1]);
    (sup, w, out)
}

/// A child supervisor's builder with worker 10 added, and that worker's ref.
fn sub_with_worker_10(
    mut sub: procactor::SupervisorBuilder,
    out: &Reports,
) -> (procactor::SupervisorBuilder, procactor::ActorRef<Worker>) {
    let inner = sub
        .add(Worker {
            tag: 10,
            out: out.clone(),
        })
        .unwrap();
    (sub, inner)
}

fn next(out: &Reports) -> (u32, u64, u32) {
    out.get_timeout(T).expect("a report from a worker")
}

/// Waits for the start reports of `tags` (in any order); returns their pids.
fn started(out: &Reports, tags: &[u32]) -> BTreeMap<u32, u32> {
    let mut seen = BTreeMap::new();
    while seen.len() < tags.len() {
        let (tag, id, pid) = next(out);
        assert_eq!(id, 0, "expected start reports, got message {id} from {tag}");
        assert!(tags.contains(&tag), "unexpected start of {tag}");
        seen.insert(tag, pid);
    }
    seen
}

/// What the workers report: `(tag, message id or 0 at start, pid)`.
type Reports = Queue<(u32, u64, u32)>;

fn three(strategy: Strategy) -> (Supervisor, Vec<procactor::ActorRef<Worker>>, Reports) {
    let out = Queue::new().unwrap();
    let sup = Supervisor::builder()
        .strategy(strategy)
        .max_restarts(10, Duration::from_secs(60))
        .build()
        .unwrap();
    let refs = (1..=3)
        .map(|tag| {
            sup.spawn_with(
                ChildSpec::new().name(format!("w{tag}")),
                Worker {
                    tag,
                    out: out.clone(),
                },
            )
            .unwrap()
        })
        .collect();
    (sup, refs, out)
}

fn assert_restarts(refs: &[procactor::ActorRef<Worker>], want: [u64; 3]) {
    let got: Vec<u64> = refs.iter().map(|r| r.restarts()).collect();
    assert_eq!(got, want);
}

#[test]
fn one_for_one_restarts_only_the_child_that_crashed() {
    watchdog(60, || {
        let (sup, refs, out) = three(Strategy::OneForOne);
        let pids = started(&out, &[1, 2, 3]);
        refs[1].send((7, Act::Panic)).unwrap();
        let again = started(&out, &[2]);
        assert_ne!(again[&2], pids[&2]);
        assert_restarts(&refs, [0, 1, 0]);
        assert_eq!(refs[0].pid(), Some(pids[&1]));
        assert_eq!(refs[2].pid(), Some(pids[&3]));
        sup.shutdown(T);
    });
}

#[test]
fn one_for_all_restarts_every_child() {
    watchdog(60, || {
        let (sup, refs, out) = three(Strategy::OneForAll);
        let pids = started(&out, &[1, 2, 3]);
        refs[1].send((7, Act::Abort)).unwrap();
        let again = started(&out, &[1, 2, 3]);
        for t in 1..=3 {
            assert_ne!(again[&t], pids[&t]);
        }
        assert_restarts(&refs, [1, 1, 1]);
        sup.shutdown(T);
    });
}

#[test]
fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    watchdog(60, || {
        let (sup, refs, out) = three(Strategy::RestForOne);
        let pids = started(&out, &[1, 2, 3]);
        refs[1].send((7, Act::Panic)).unwrap();
        let again = started(&out, &[2, 3]);
        assert_ne!(again[&3], pids[&3]);
        assert_restarts(&refs, [0, 1, 1]);
        assert_eq!(refs[0].pid(), Some(pids[&1]));
        sup.shutdown(T);
    });
}

#[test]
fn transient_and_temporary_children_follow_otp() {
    watchdog(60, || {
        let out = Queue::new().unwrap();
        let sup = Supervisor::builder()
            .max_restarts(10, Duration::from_secs(60))
            .build()
            .unwrap();
        let tr = sup
            .spawn_with(
                ChildSpec::new().restart(Restart::Transient),
                Worker {
                    tag: 1,
                    out: out.clone(),
                },
            )
            .unwrap();
        let tmp = sup
            .spawn_with(
                ChildSpec::new().restart(Restart::Temporary),
                Worker {
                    tag: 2,
                    out: out.clone(),
                },
            )
            .unwrap();
        started(&out, &[1, 2]);
        // transient: restarted after a crash
        tr.send((1, Act::Panic)).unwrap();
        started(&out, &[1]);
        assert_eq!(tr.restarts(), 1);
        // temporary: never restarted
        tmp.send((1, Act::Panic)).unwrap();
        assert!(tmp.join_timeout(T).is_ok());
        assert_eq!(tmp.state(), ActorState::Ended);
        assert_eq!(tmp.restarts(), 0);
        // transient after a normal end (stop): not restarted
        tr.stop().unwrap();
        assert!(tr.join_timeout(T).is_ok());
        assert_eq!(tr.restarts(), 1);
        sup.wait_timeout(T).expect("every child ended");
    });
}

#[test]
fn intensity_gives_up_exactly_after_max_restarts_in_period() {
    watchdog(60, || {
        let out = Queue::new().unwrap();
        let sup = Supervisor::builder()
            .max_restarts(2, Duration::from_secs(60))
            .build()
            .unwrap();
        let w = spawn_worker(&sup, 1, &out);
        let other = spawn_worker(&sup, 2, &out);
        started(&out, &[1, 2]);
        for n in 1..=2 {
            w.send((n, Act::Panic)).unwrap();
            started(&out, &[1]);
            assert!(matches!(
                sup.wait_timeout(Duration::from_millis(50)),
                Err(SupervisorError::Timeout)
            ));
        }
        // the third crash within the period is one too many
        w.send((3, Act::Panic)).unwrap();
        match sup.wait_timeout(T) {
            Err(SupervisorError::Intensity {
                max_restarts: 2, ..
            }) => {}
            other => panic!("expected Intensity, got {other:?}"),
        }
        assert!(sup
            .events()
            .iter()
            .any(|e| matches!(e, SupervisorEvent::GaveUp { restarts: 3 })));
        // every child is ended, none survives
        assert_eq!(w.restarts(), 2);
        assert!(other.join_timeout(T).is_ok());
        assert!(!other.is_alive());
        assert!(sup.spawn(Worker { tag: 9, out }).is_err());
    });
}

#[test]
fn a_restarted_actor_keeps_its_mailbox_and_the_lost_message_is_reported() {
    watchdog(60, || {
        let (sup, w, out) = one_worker(5, 60);
        // ten messages queued behind a slow one; the fifth taken crashes
        w.send((1, Act::Sleep(200))).unwrap();
        for id in 2..=10 {
            let act = if id == 5 { Act::Abort } else { Act::Ok };
            w.send((id, act)).unwrap();
        }
        let mut handled = Vec::new();
        while handled.len() < 9 {
            let (_, id, _) = next(&out);
            if id != 0 {
                handled.push(id);
            }
        }
        assert_eq!(handled, [1, 2, 3, 4, 6, 7, 8, 9, 10]);
        let lost: Vec<Option<u64>> = sup
            .events()
            .into_iter()
            .filter_map(|e| match e {
                SupervisorEvent::Exited { in_flight, .. } => Some(in_flight),
                _ => None,
            })
            .collect();
        // the fifth message this incarnation took (after the start) was in flight
        assert_eq!(lost, [Some(5)]);
        assert_eq!(w.restarts(), 1);
    });
}

#[test]
fn a_pool_shares_one_mailbox_and_members_restart_alone() {
    watchdog(60, || {
        let out = Queue::new().unwrap();
        let sup = Supervisor::builder()
            .max_restarts(5, Duration::from_secs(60))
            .build()
            .unwrap();
        let mut tag = 0;
        let pool = sup
            .spawn_pool(3, || {
                tag += 1;
                Worker {
                    tag,
                    out: out.clone(),
                }
            })
            .unwrap();
        started(&out, &[1, 2, 3]);
        assert_eq!(pool.size(), 3);
        assert_eq!(pool.pids().len(), 3);
        let names: Vec<String> = sup.children().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Worker-1", "Worker-2", "Worker-3"]);
        for id in 1..=60 {
            pool.send((id, Act::Sleep(1))).unwrap();
        }
        let mut by = BTreeMap::new();
        for _ in 0..60 {
            let (tag, id, _) = next(&out);
            assert_ne!(id, 0);
            *by.entry(tag).or_insert(0) += 1;
        }
        assert!(by.len() >= 2, "work spread over the members: {by:?}");
        pool.send((99, Act::Panic)).unwrap();
        let (tag, id, _) = next(&out);
        assert_eq!(id, 0, "a member's restart report");
        let restarts: u64 = sup.children().iter().map(|c| c.restarts).sum();
        assert_eq!(restarts, 1);
        assert_eq!(pool.member(tag as usize - 1).unwrap().restarts(), 1);
        pool.stop().unwrap();
        assert!(pool.join_timeout(T).is_ok());
        assert!(pool.pids().is_empty());
    });
}

fn proc_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[test]
fn shutdown_stops_children_in_reverse_order_and_leaves_no_process() {
    watchdog(60, || {
        let (sup, refs, out) = three(Strategy::OneForOne);
        let pids = started(&out, &[1, 2, 3]);
        sup.shutdown(T);
        for pid in pids.values() {
            wait_until(T, "a child to be gone", || proc_gone(*pid));
        }
        let stopped: Vec<String> = sup
            .events()
            .into_iter()
            .filter_map(|e| match e {
                SupervisorEvent::Exited { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, ["w3", "w2", "w1"]);
        for r in &refs {
            assert_eq!(r.state(), ActorState::Ended);
        }
        sup.wait_timeout(T).unwrap();
    });
}

#[test]
fn one_for_all_restarts_a_child_supervisor_whose_children_keep_their_mailboxes() {
    watchdog(90, || {
        let out = Queue::new().unwrap();
        let (sub, inner) = sub_with_worker_10(Supervisor::builder().name("sub"), &out);
        let root = Supervisor::builder()
            .strategy(Strategy::OneForAll)
            .max_restarts(5, Duration::from_secs(60))
            .build()
            .unwrap();
        let subref = root.spawn_supervisor(sub).unwrap();
        let w = root
            .spawn(Worker {
                tag: 1,
                out: out.clone(),
            })
            .unwrap();
        started(&out, &[1, 10]);
        // the grandchild is busy, with messages queued behind; the sibling crashes
        inner.send((1, Act::Sleep(5_000))).unwrap();
        for id in 2..=5 {
            inner.send((id, Act::Ok)).unwrap();
        }
        // (the restart kills the sleeper long before its 5 s are up)
        wait_until(T, "the grandchild to take the slow message", || {
            inner.mailbox_len() == 4
        });
        w.send((1, Act::Panic)).unwrap();
        // both restart; the busy message was in flight and is lost, the rest are handled
        let mut ids = Vec::new();
        let mut starts = 0;
        while ids.len() < 4 || starts < 2 {
            let (tag, id, _) = next(&out);
            if id == 0 {
                starts += 1;
            } else if tag == 10 {
                ids.push(id);
            }
        }
        assert_eq!(ids, [2, 3, 4, 5]);
        assert_eq!(subref.restarts(), 1);
        assert_eq!(w.restarts(), 1);
        assert_eq!(inner.state(), ActorState::Running);
        root.shutdown(T);
        inner
            .join_timeout(T)
            .expect("a final shutdown ends the grandchild for good");
    });
}

#[test]
fn brutal_kill_does_not_wait_for_a_busy_child() {
    watchdog(60, || {
        let out = Queue::new().unwrap();
        let sup = Supervisor::builder().build().unwrap();
        let w = sup
            .spawn_with(
                ChildSpec::new().shutdown(Shutdown::BrutalKill),
                Worker {
                    tag: 1,
                    out: out.clone(),
                },
            )
            .unwrap();
        started(&out, &[1]);
        w.send((1, Act::Sleep(30_000))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = std::time::Instant::now();
        sup.shutdown(T);
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(w.exitcode(), Some(procactor::ExitStatus::Signal(9)));
    });
}

#[test]
fn a_child_supervisor_runs_its_subtree_and_dies_with_it() {
    watchdog(90, || {
        let out = Queue::new().unwrap();
        let sub = Supervisor::builder()
            .name("sub")
            .max_restarts(1, Duration::from_secs(60));
        let (sub, inner) = sub_with_worker_10(sub, &out);
        let root = Supervisor::builder()
            .name("root")
            .max_restarts(5, Duration::from_secs(60))
            .build()
            .unwrap();
        let w = root
            .spawn(Worker {
                tag: 1,
                out: out.clone(),
            })
            .unwrap();
        let subref = root.spawn_supervisor(sub).unwrap();
        let pids = started(&out, &[1, 10]);
        let sub_pid = subref.pid().expect("the child supervisor runs");
        assert_ne!(sub_pid, std::process::id());
        assert_eq!(inner.pid(), Some(pids[&10]));
        let tree = root.tree();
        assert!(tree.contains("root (supervisor"), "{tree}");
        assert!(tree.contains("sub"), "{tree}");
        assert!(tree.contains(&format!("pid {}", pids[&10])), "{tree}");
        // the child supervisor restarts its own child
        inner.send((1, Act::Panic)).unwrap();
        started(&out, &[10]);
        assert_eq!(inner.restarts(), 1);
        // a second crash within its period is too many for it: it gives up, and the
        // root restarts it (and so its child, from its initial state)
        inner.send((2, Act::Panic)).unwrap();
        started(&out, &[10]);
        wait_until(T, "the root to restart the child supervisor", || {
            subref.restarts() == 1 && subref.pid().is_some()
        });
        let exits: Vec<(String, bool)> = root
            .events()
            .into_iter()
            .filter_map(|e| match e {
                SupervisorEvent::Exited { name, abnormal, .. } => Some((name, abnormal)),
                _ => None,
            })
            .collect();
        assert_eq!(exits, [("sub".to_string(), true)]);
        // the grandchild's mailbox outlived both its own and its supervisor's restart
        inner.send((3, Act::Ok)).unwrap();
        assert_eq!(next(&out).1, 3);
        // SIGKILL the child supervisor: its child dies with it, the root restarts it
        let sub_pid = subref.pid().unwrap();
        let inner_pid = inner.pid().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-9", &sub_pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        wait_until(T, "the orphan to die", || proc_gone(inner_pid));
        started(&out, &[10]);
        assert_eq!(w.restarts(), 0, "one_for_one: the sibling is untouched");
        root.shutdown(T);
        let last = inner.pid();
        assert!(last.is_none());
    });
}

// ------------------------------------------------------------------ crash schedules

#[derive(Debug, Clone, Copy)]
enum Crash {
    None,
    Panic,
    Abort,
    Kill,
}

fn crash_strategy() -> impl proptest::strategy::Strategy<Value = Crash> {
    prop_oneof![
        6 => Just(Crash::None),
        1 => Just(Crash::Panic),
        1 => Just(Crash::Abort),
        1 => Just(Crash::Kill),
    ]
}

fn run_schedule(schedule: &[Crash], max_restarts: u32, strategy: Strategy) {
    let out = Queue::new().unwrap();
    let sup = Supervisor::builder()
        .strategy(strategy)
        .max_restarts(max_restarts, Duration::from_secs(600))
        .build()
        .unwrap();
    let w = sup
        .spawn(Worker {
            tag: 1,
            out: out.clone(),
        })
        .unwrap();
    let sibling = sup
        .spawn(Worker {
            tag: 2,
            out: out.clone(),
        })
        .unwrap();
    started(&out, &[1, 2]);
    for (i, c) in schedule.iter().enumerate() {
        let act = match c {
            Crash::None => Act::Ok,
            Crash::Panic => Act::Panic,
            Crash::Abort => Act::Abort,
            Crash::Kill => Act::Kill,
        };
        w.send((i as u64 + 1, act)).unwrap();
    }
    let crashes = schedule
        .iter()
        .filter(|c| !matches!(c, Crash::None))
        .count() as u32;
    let gives_up = crashes > max_restarts;
    // messages after the crash that makes it give up are never handled
    let mut seen_crashes = 0;
    let mut expected = Vec::new();
    for (i, c) in schedule.iter().enumerate() {
        match c {
            Crash::None => expected.push(i as u64 + 1),
            _ => {
                seen_crashes += 1;
                if seen_crashes > max_restarts {
                    break;
                }
            }
        }
    }
    let mut handled = Vec::new();
    if gives_up {
        assert!(matches!(
            sup.wait_timeout(T),
            Err(SupervisorError::Intensity { .. })
        ));
    } else {
        while handled.len() < expected.len() {
            let (tag, id, _) = next(&out);
            if tag == 1 && id != 0 {
                handled.push(id);
            }
        }
    }
    let want = crashes.min(max_restarts);
    wait_until(T, "the restarts to be counted", || {
        w.restarts() as u32 >= want
    });
    let restarts = w.restarts() as u32;
    assert_eq!(restarts, want, "restarts match the crashes");
    // the sibling was started after the crashing worker: rest_for_one takes it too
    let sibling_want = match strategy {
        Strategy::OneForAll | Strategy::RestForOne => restarts,
        Strategy::OneForOne => 0,
    };
    wait_until(T, "the sibling's restarts", || {
        sibling.restarts() as u32 >= sibling_want
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sibling.restarts() as u32, sibling_want);
    let pids: Vec<u32> = [&w, &sibling].iter().filter_map(|r| r.pid()).collect();
    sup.shutdown(T);
    for r in [&w, &sibling] {
        assert!(r.join_timeout(T).is_ok());
    }
    // no process outlives shutdown (looked up in the OS, not in our records)
    for pid in pids {
        wait_until(T, "a child to be gone after shutdown", || proc_gone(pid));
    }
    // every worker is gone: what is in the queue now is all it will ever hold. No
    // message queued and not in flight is lost or handled twice (read to the end, not
    // just the number expected), order kept.
    while let Ok((tag, id, _)) = out.try_get() {
        if tag == 1 && id != 0 {
            handled.push(id);
        }
    }
    assert_eq!(handled, expected);
    // each scheduled crash happened, as scheduled: worker 1's abnormal exits are the
    // crashes up to the one it gave up at, in order, each with a message in flight and
    // the exit its kind makes (a SIGKILL landed as signal 9, an abort as signal 6)
    let crashes_made: Vec<(u64, &Crash)> = schedule
        .iter()
        .enumerate()
        .filter(|(_, c)| !matches!(c, Crash::None))
        .map(|(i, c)| (i as u64 + 1, c))
        .take(max_restarts as usize + 1)
        .collect();
    let exits: Vec<(Option<u64>, procactor::ExitStatus)> = sup
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Exited {
                name,
                status,
                abnormal: true,
                in_flight,
                ..
            } if name == w.name() => Some((in_flight, status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        exits.len(),
        crashes_made.len(),
        "{exits:?} for {crashes_made:?}"
    );
    let mut prev = 0;
    for ((in_flight, status), (id, crash)) in exits.iter().zip(&crashes_made) {
        // the message in flight, counted from the incarnation's start (the crashed
        // message is not redelivered: the next incarnation starts with the one after it)
        assert_eq!(*in_flight, Some(id - prev), "message {id}: {exits:?}");
        prev = *id;
        match crash {
            Crash::Kill => assert_eq!(*status, procactor::ExitStatus::Signal(9), "message {id}"),
            Crash::Abort => assert_eq!(*status, procactor::ExitStatus::Signal(6), "message {id}"),
            _ => assert!(
                matches!(status, procactor::ExitStatus::Code(c) if *c != 0),
                "message {id}: {status:?}"
            ),
        }
    }
}

proptest! {
    #![proptest_config(common::proptest_config(6))]
    #[test]
    fn random_crash_schedules_lose_nothing_queued_and_count_restarts(
        schedule in proptest::collection::vec(crash_strategy(), 1..14),
        max_restarts in 0u32..4,
        strategy in prop_oneof![
            Just(Strategy::OneForOne),
            Just(Strategy::OneForAll),
            Just(Strategy::RestForOne)
        ],
    ) {
        let s = schedule.clone();
        watchdog(120, move || run_schedule(&s, max_restarts, strategy));
    }
}

/// Runs in a child of its own (single-threaded, as a `Fork` supervisor's build needs):
/// a `Fork` supervisor's actor is forked by its zygote, this child's own child.
fn a_fork_supervisors_actor_comes_from_its_zygote(_: ()) {
    let out = Queue::new().unwrap();
    let sup = Supervisor::builder()
        .start_method(procactor::StartMethod::Fork)
        .build()
        .unwrap();
    let _w = spawn_worker(&sup, 1, &out);
    let pid = started(&out, &[1])[&1];
    common::assert_os_parent(pid, procactor::StartMethod::Fork, "fork supervisor's actor");
    sup.shutdown(T);
}

#[test]
fn the_start_method_is_the_builders_choice() {
    watchdog(60, || {
        // (first: under the matrix's Fork run this process must still be single-threaded
        // to start the child with its default method)
        let mut p = procactor::Process::new(a_fork_supervisors_actor_comes_from_its_zygote, ())
            .start()
            .unwrap();
        let st = p.join_timeout(T).expect("the Fork supervisor child ended");
        if let Err(e) = p.result() {
            panic!("the Fork supervisor child failed ({st:?}): {e}");
        }
        // each actor's OS parent is the one the method gives it
        let out = Queue::new().unwrap();
        for (tag, method) in [
            (1, procactor::StartMethod::Spawn),
            (2, procactor::StartMethod::ForkServer),
        ] {
            let sup = Supervisor::builder().start_method(method).build().unwrap();
            let _w = spawn_worker(&sup, tag, &out);
            let pid = started(&out, &[tag])[&tag];
            common::assert_os_parent(pid, method, "supervised actor");
            sup.shutdown(T);
        }
        let e = Supervisor::builder()
            .start_method(procactor::StartMethod::Fork)
            .build()
            .unwrap_err();
        // (a supervisor with Fork forks a copy of its process when it starts, which
        // needs a single-threaded process: this test runs on one of libtest's threads)
        assert!(e.to_string().contains("fork"), "{e}");
        assert!(e.to_string().contains("single-threaded process"), "{e}");
    });
}

#[test]
fn otp_defaults_and_restarts_older_than_the_period_are_forgotten() {
    watchdog(60, || {
        // OTP's default: at most 1 restart in 5 s, so a second quick crash is fatal
        let out = Queue::new().unwrap();
        let sup = Supervisor::builder().build().unwrap();
        let w = spawn_worker(&sup, 1, &out);
        started(&out, &[1]);
        w.send((1, Act::Panic)).unwrap();
        started(&out, &[1]);
        w.send((2, Act::Panic)).unwrap();
        assert!(matches!(
            sup.wait_timeout(T),
            Err(SupervisorError::Intensity {
                max_restarts: 1,
                ..
            })
        ));
        // with a short period, crashes far apart are never too many
        let sup = Supervisor::builder()
            .max_restarts(1, Duration::from_millis(300))
            .build()
            .unwrap();
        let w = spawn_worker(&sup, 2, &out);
        started(&out, &[2]);
        for n in 1..=3 {
            w.send((n, Act::Panic)).unwrap();
            started(&out, &[2]);
            std::thread::sleep(Duration::from_millis(600));
        }
        assert!(matches!(
            sup.wait_timeout(Duration::from_millis(50)),
            Err(SupervisorError::Timeout)
        ));
        assert_eq!(w.restarts(), 3);
        // events and children() say what happened
        let evs = sup.events();
        let starts = evs
            .iter()
            .filter(|e| matches!(e, SupervisorEvent::Started { .. }))
            .count();
        let restarted: Vec<u64> = evs
            .iter()
            .filter_map(|e| match e {
                SupervisorEvent::Restarted { restarts, .. } => Some(*restarts),
                _ => None,
            })
            .collect();
        assert_eq!(starts, 4);
        assert_eq!(restarted, [1, 2, 3]);
        let info = &sup.children()[0];
        assert_eq!(info.pid, w.pid());
        assert_eq!(info.restarts, 3);
        assert_eq!(info.mailbox_len, 0);
        assert!(!info.supervisor);
        sup.shutdown(T);
        assert!(sup.events().last() == Some(&SupervisorEvent::ShutDown));
    });
}

#[test]
fn a_crash_during_a_graceful_stop_is_restarted_and_the_drain_goes_on() {
    watchdog(60, || {
        let (_sup, w, out) = one_worker(5, 60);
        w.send((1, Act::Sleep(100))).unwrap();
        w.send((2, Act::Panic)).unwrap();
        w.send((3, Act::Ok)).unwrap();
        w.stop().unwrap();
        let mut ids = Vec::new();
        while !ids.contains(&3) {
            let (_, id, _) = next(&out);
            ids.push(id);
        }
        assert_eq!(ids, [1, 0, 3], "1 handled, a restart (0), then 3");
        assert!(w.join_timeout(T).is_ok());
        assert_eq!(w.restarts(), 1);
        assert_eq!(w.state(), ActorState::Ended);
    });
}

#[test]
fn refs_to_a_tree_whose_supervisor_died_do_not_wait_forever() {
    watchdog(60, || {
        let out = Queue::new().unwrap();
        let (sub, inner) = sub_with_worker_10(Supervisor::builder().name("sub"), &out);
        let root = Supervisor::builder().build().unwrap();
        let subref = root
            .spawn_supervisor_with(ChildSpec::new().restart(Restart::Temporary), sub)
            .unwrap();
        started(&out, &[10]);
        let pid = subref.pid().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        assert!(
            inner.join_timeout(T).is_ok(),
            "the orphaned actor counts as ended"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // the root has handled the subtree's end (so what follows sees its state after)
        wait_until(T, "the root to see the subtree's exit", || {
            root.events().iter().any(
                |e| matches!(e, SupervisorEvent::Exited { pid: p, abnormal: true, .. } if *p == pid),
            )
        });
        // the root still runs (it refuses an empty pool for what it is, not because it
        // is gone)
        match root.spawn_pool(0, || Worker {
            tag: 0,
            out: out.clone(),
        }) {
            Err(SupervisorError::Resource(procactor::Error::InvalidArgument(m))) => {
                assert!(m.contains("at least one"), "{m}")
            }
            Err(e) => panic!("expected the empty pool's refusal, got {e:?}"),
            Ok(_) => panic!("an empty pool was accepted"),
        }
        // the refusal comes before the supervisor looks at its own state: that it still
        // runs is shown by a child it starts now (and by no give-up in its events)
        let after = root
            .spawn(Worker {
                tag: 11,
                out: out.clone(),
            })
            .expect("the root still starts children");
        started(&out, &[11]);
        assert!(after.pid().is_some());
        assert!(
            !root
                .events()
                .iter()
                .any(|e| matches!(e, SupervisorEvent::GaveUp { .. })),
            "{:?}",
            root.events()
        );
        root.shutdown(T);
    });
}

// ------------------------------------------------------------------ issue 21: the API
// answers while children end; ends in parallel; bounded events

fn stop_process(pid: u32) {
    // a stopped process does not act on SIGTERM (it stays pending): like a child that
    // ignores it, it takes its whole shutdown time, then SIGKILL ends it
    std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    // Wait until the kernel has really stopped it: a SIGTERM sent while the SIGSTOP is
    // still pending is delivered first (lower number) and ends the child at once, which
    // made the 3 s checks below fail on a loaded machine.
    wait_until(T, "the child stopped (state T)", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .map(|i| s[i + 1..].trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    });
}

fn quick<R>(what: &str, limit: Duration, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(took < limit, "{what} took {took:?} (limit {limit:?})");
    r
}

/// A OneForAll supervisor with two running workers: "slow" (tag 1, a 3 s shutdown time)
/// and "crasher" (tag 2).
fn one_for_all_with_a_slow_child() -> (
    Supervisor,
    procactor::ActorRef<Worker>,
    procactor::ActorRef<Worker>,
    Reports,
) {
    let out: Reports = Queue::new().unwrap();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .max_restarts(10, Duration::from_secs(60))
        .build()
        .unwrap();
    let worker = |spec: ChildSpec, tag: u32| {
        sup.spawn_with(
            spec,
            Worker {
                tag,
                out: out.clone(),
            },
        )
        .unwrap()
    };
    let slow = worker(
        ChildSpec::new()
            .name("slow")
            .shutdown(Shutdown::Timeout(Duration::from_secs(3))),
        1,
    );
    let crasher = worker(ChildSpec::new().name("crasher"), 2);
    started(&out, &[1, 2]);
    (sup, slow, crasher, out)
}

#[test]
fn the_api_answers_while_a_restart_waits_for_a_slow_child() {
    watchdog(60, || {
        let (sup, slow, crasher, out) = one_for_all_with_a_slow_child();
        stop_process(slow.pid().unwrap());
        let t0 = Instant::now();
        crasher.kill().unwrap();
        // the restart is under way once the crash is recorded: it now ends `slow`
        // (3 s: SIGTERM stays pending, then SIGKILL)
        wait_until(T, "the crash recorded", || {
            sup.events()
                .iter()
                .any(|e| matches!(e, SupervisorEvent::Exited { name, .. } if name == "crasher"))
        });
        let limit = Duration::from_millis(500);
        for _ in 0..3 {
            quick("children()", limit, || sup.children());
            quick("tree()", limit, || sup.tree());
            quick("events()", limit, || sup.events());
            let r = quick(
                "wait_timeout(50 ms)",
                Duration::from_millis(50) + limit,
                || sup.wait_timeout(Duration::from_millis(50)),
            );
            assert!(matches!(r, Err(SupervisorError::Timeout)), "{r:?}");
        }
        let extra = quick("spawn()", Duration::from_secs(2), || {
            sup.spawn(Worker {
                tag: 3,
                out: out.clone(),
            })
        })
        .unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "the probes ran while the restart still waited"
        );
        // the restart completes: both started again, the new child untouched
        let mut want = vec![1, 2, 3];
        while !want.is_empty() {
            let (tag, id, _) = next(&out);
            assert_eq!(id, 0);
            want.retain(|&t| t != tag);
        }
        assert!(t0.elapsed() >= Duration::from_secs(2), "slow got its 3 s");
        assert_eq!(slow.restarts(), 1);
        assert_eq!(crasher.restarts(), 1);
        assert_eq!(extra.restarts(), 0);
        sup.shutdown(T);
    });
}

#[test]
fn shutdown_during_a_restart_returns_by_its_deadline() {
    watchdog(60, || {
        let (sup, slow, crasher, _out) = one_for_all_with_a_slow_child();
        let slow_pid = slow.pid().unwrap();
        stop_process(slow_pid);
        crasher.kill().unwrap();
        wait_until(T, "the crash recorded", || {
            sup.events()
                .iter()
                .any(|e| matches!(e, SupervisorEvent::Exited { .. }))
        });
        quick(
            "shutdown(300 ms) during a restart",
            Duration::from_millis(300 + 400),
            || sup.shutdown(Duration::from_millis(300)),
        );
        // the slow child was killed at the shutdown's deadline, not after its own 3 s
        wait_until(Duration::from_secs(1), "the slow child gone", || {
            !std::path::Path::new(&format!("/proc/{slow_pid}/status")).exists()
                || std::fs::read_to_string(format!("/proc/{slow_pid}/status"))
                    .is_ok_and(|s| s.contains("zombie"))
        });
        assert!(sup.wait_timeout(Duration::from_secs(1)).is_ok());
        assert_eq!(slow.state(), ActorState::Ended);
        assert_eq!(crasher.state(), ActorState::Ended);
        assert_eq!(slow.restarts(), 0, "nothing restarts after a shutdown");
    });
}

#[test]
fn a_pool_ends_its_members_in_parallel() {
    watchdog(60, || {
        let out: Reports = Queue::new().unwrap();
        let sup = Supervisor::builder().build().unwrap();
        let pool = sup
            .spawn_pool_with(
                ChildSpec::new().shutdown(Shutdown::Timeout(Duration::from_secs(1))),
                3,
                || Worker {
                    tag: 1,
                    out: out.clone(),
                },
            )
            .unwrap();
        for _ in 0..3 {
            assert_eq!(next(&out).1, 0);
        }
        for pid in pool.pids() {
            stop_process(pid);
        }
        // one after another: 3 × 1 s; together: 1 s
        let t = Instant::now();
        sup.shutdown(T);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_millis(2500), "{took:?}");
        assert!(pool.join_timeout(Duration::from_secs(1)).is_ok());
    });
}

#[test]
fn events_keep_the_last_n_and_count_all() {
    watchdog(60, || {
        let out: Reports = Queue::new().unwrap();
        let sup = Supervisor::builder()
            .max_restarts(100, Duration::from_secs(60))
            .event_history(4)
            .build()
            .unwrap();
        let w = spawn_worker(&sup, 1, &out);
        started(&out, &[1]);
        for n in 1..=5 {
            w.send((n, Act::Panic)).unwrap();
            started(&out, &[1]);
        }
        wait_until(T, "5 restarts", || w.restarts() == 5);
        let evs = sup.events();
        assert_eq!(evs.len(), 4, "{evs:?}");
        assert!(matches!(
            evs.last(),
            Some(SupervisorEvent::Restarted { restarts: 5, .. })
        ));
        let t = sup.event_totals();
        assert_eq!((t.started, t.exited, t.restarted), (6, 5, 5));
        assert_eq!(t.dropped, 16 - 4);
        // the default keeps 1000
        assert_eq!(procactor::DEFAULT_EVENT_HISTORY, 1000);
        sup.shutdown(T);
    });
}

/// Builds a supervisor whose child takes 60 s to end (stopped, `Timeout(60 s)`), then
/// panics with it alive: the supervisor's drop runs while unwinding.
fn panic_holding_a_supervisor() -> u32 {
    let out: Reports = Queue::new().unwrap();
    let sup = Supervisor::builder().build().unwrap();
    let w = sup
        .spawn_with(
            ChildSpec::new().shutdown(Shutdown::Timeout(Duration::from_secs(60))),
            Worker {
                tag: 1,
                out: out.clone(),
            },
        )
        .unwrap();
    started(&out, &[1]);
    stop_process(w.pid().unwrap());
    panic!("boom while holding a supervisor");
}

#[test]
fn a_panic_holding_a_supervisor_does_not_wait_for_its_children() {
    watchdog(60, || {
        let t = Instant::now();
        let mut p = procactor::Process::new(panic_holding_a_supervisor, ())
            .start()
            .unwrap();
        let status = p.join_timeout(Duration::from_secs(15));
        assert!(
            status.is_ok(),
            "the panicking parent still waits for its child"
        );
        assert!(matches!(
            p.result(),
            Err(procactor::JoinError::Panicked { .. })
        ));
        // drop while panicking: at most DROP_SHUTDOWN_LIMIT_PANICKING (1 s) for the
        // children, whatever their shutdown time (60 s here)
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        assert_eq!(
            procactor::DROP_SHUTDOWN_LIMIT_PANICKING,
            Duration::from_secs(1)
        );
    });
}
