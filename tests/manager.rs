//! Manager: shared dict, list and namespace, from children and over authenticated TCP.
procactor::test_support!();

mod common;
use common::{wait_until, watchdog};
use procactor::{Manager, ManagerError, Process, SharedDict, SharedList};
use proptest::prelude::proptest;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

#[test]
fn dict_operations() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let d = mgr.dict::<String, i64>().unwrap();
        assert!(d.is_empty().unwrap());
        assert_eq!(d.insert("a".into(), 1).unwrap(), None);
        assert_eq!(d.insert("a".into(), 2).unwrap(), Some(1));
        d.update([("b".to_string(), 3), ("c".to_string(), 4)])
            .unwrap();
        assert_eq!(d.len().unwrap(), 3);
        assert_eq!(d.get(&"b".into()).unwrap(), Some(3));
        assert_eq!(d.get(&"zz".into()).unwrap(), None, "a missing key is None");
        assert!(d.contains_key(&"c".into()).unwrap());
        assert_eq!(d.keys().unwrap(), ["a", "b", "c"]);
        assert_eq!(d.values().unwrap(), [2, 3, 4]);
        assert_eq!(
            d.items().unwrap(),
            [
                ("a".to_string(), 2),
                ("b".to_string(), 3),
                ("c".to_string(), 4)
            ]
        );
        assert_eq!(d.to_map().unwrap().len(), 3);
        assert_eq!(d.remove(&"a".into()).unwrap(), Some(2));
        assert_eq!(d.remove(&"a".into()).unwrap(), None);
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
        // keys compare by their encoding: tuples work as keys
        let t = mgr.dict::<(u8, String), Vec<u8>>().unwrap();
        t.insert((1, "x".into()), vec![1, 2]).unwrap();
        assert_eq!(t.get(&(1, "x".into())).unwrap(), Some(vec![1, 2]));
        assert_eq!(t.get(&(2, "x".into())).unwrap(), None);
    });
}

#[test]
fn list_and_namespace_operations() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let l = mgr.list::<u64>().unwrap();
        l.push(1).unwrap();
        l.extend([2, 3, 4]).unwrap();
        assert_eq!(l.len().unwrap(), 4);
        assert_eq!(l.get(0).unwrap(), Some(1));
        assert_eq!(l.get(9).unwrap(), None);
        l.set(0, 10).unwrap();
        assert!(matches!(l.set(9, 0), Err(ManagerError::Refused(_))));
        l.insert(1, 15).unwrap();
        assert!(matches!(l.insert(99, 0), Err(ManagerError::Refused(_))));
        assert_eq!(l.remove(1).unwrap(), 15);
        assert!(matches!(l.remove(99), Err(ManagerError::Refused(_))));
        assert_eq!(l.pop().unwrap(), Some(4));
        assert_eq!(l.to_vec().unwrap(), [10, 2, 3]);
        l.clear().unwrap();
        assert!(l.is_empty().unwrap());
        assert_eq!(l.pop().unwrap(), None);

        let ns = mgr.namespace().unwrap();
        ns.set("x", &3i32).unwrap();
        ns.set("name", "procactor").unwrap();
        assert_eq!(ns.get::<i32>("x").unwrap(), 3);
        assert_eq!(ns.get::<String>("name").unwrap(), "procactor");
        assert_eq!(ns.names().unwrap(), ["name", "x"]);
        assert!(matches!(
            ns.get::<i32>("nope"),
            Err(ManagerError::Refused(_))
        ));
        assert!(ns.remove("x").unwrap());
        assert!(!ns.remove("x").unwrap());
    });
}

#[test]
fn a_value_of_another_type_is_a_decode_error_naming_the_type() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let ns = mgr.namespace().unwrap();
        ns.set("x", "text").unwrap();
        match ns.get::<u32>("x") {
            Err(ManagerError::Decode(e)) => assert_eq!(e.expected, "u32"),
            other => panic!("expected a decode error, got {other:?}"),
        }
        // the same named dict, read with the wrong value type
        mgr.dict_named::<String, String>("d")
            .unwrap()
            .insert("k".into(), "v".into())
            .unwrap();
        let wrong = mgr.dict_named::<String, u64>("d").unwrap();
        assert!(matches!(
            wrong.get(&"k".into()),
            Err(ManagerError::Decode(_))
        ));
    });
}

fn child_writes((d, l, me): (SharedDict<String, u32>, SharedList<u32>, u32)) {
    for i in 0..50 {
        d.insert(format!("{me}-{i}"), i).unwrap();
        l.push(me).unwrap();
    }
}

#[test]
fn children_share_the_objects_and_names_find_them() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let d = mgr.dict_named::<String, u32>("results").unwrap();
        let l = mgr.list::<u32>().unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|me| {
                Process::new(child_writes, (d.clone(), l.clone(), me))
                    .start()
                    .unwrap()
            })
            .collect();
        for p in &mut ps {
            assert!(p.join_timeout(T).unwrap().success());
        }
        assert_eq!(d.len().unwrap(), 150);
        assert_eq!(l.len().unwrap(), 150);
        let again = mgr.dict_named::<String, u32>("results").unwrap();
        assert_eq!(again.get(&"2-49".into()).unwrap(), Some(49));
        let other = mgr.dict_named::<String, u32>("other").unwrap();
        assert!(other.is_empty().unwrap());
    });
}

#[test]
fn a_server_that_is_gone_gives_disconnected_promptly() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let d = mgr.dict::<u32, u32>().unwrap();
        d.insert(1, 1).unwrap();
        let pid = mgr.pid().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        wait_until(T, "the server to die", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        });
        let t = Instant::now();
        assert!(matches!(d.get(&1), Err(ManagerError::Disconnected)));
        assert!(matches!(d.insert(2, 2), Err(ManagerError::Disconnected)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

        let mgr = Manager::start().unwrap();
        let l = mgr.list::<u8>().unwrap();
        mgr.shutdown().unwrap();
        assert!(matches!(l.push(1), Err(ManagerError::Disconnected)));
        mgr.shutdown().unwrap();
    });
}

const KEY: &[u8] = b"procactor test key";

/// A manager listening on a free loopback port with `KEY`, and its address.
fn listening() -> (Manager, String) {
    let mgr = Manager::builder()
        .listen("127.0.0.1:0")
        .authkey(KEY)
        .start()
        .unwrap();
    let addr = mgr.address().unwrap();
    (mgr, addr)
}

#[test]
fn remote_clients_with_the_key_and_without_it() {
    watchdog(60, || {
        let (mgr, addr) = listening();
        mgr.dict_named::<String, u32>("shared")
            .unwrap()
            .insert("from-server".into(), 1)
            .unwrap();
        let remote = Manager::connect(&addr, KEY).unwrap();
        let d = remote.dict_named::<String, u32>("shared").unwrap();
        assert_eq!(d.get(&"from-server".into()).unwrap(), Some(1));
        d.insert("from-client".into(), 2).unwrap();
        assert_eq!(
            mgr.dict_named::<String, u32>("shared")
                .unwrap()
                .get(&"from-client".into())
                .unwrap(),
            Some(2)
        );
        let t = Instant::now();
        assert!(matches!(
            Manager::connect(&addr, b"wrong key"),
            Err(ManagerError::Auth(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
        // several clients at once
        std::thread::scope(|s| {
            for c in 0..4u32 {
                let addr = addr.clone();
                s.spawn(move || {
                    let m = Manager::connect(&addr, KEY).unwrap();
                    let d = m.dict_named::<String, u32>("shared").unwrap();
                    for i in 0..50 {
                        d.insert(format!("{c}-{i}"), i).unwrap();
                    }
                });
            }
        });
        assert_eq!(d.len().unwrap(), 2 + 200);
        // a remote proxy travels to a child, which connects again
        let mut p = Process::new(
            child_writes,
            (
                remote.dict_named::<String, u32>("kids").unwrap(),
                remote.list::<u32>().unwrap(),
                7,
            ),
        )
        .start()
        .unwrap();
        assert!(p.join_timeout(T).unwrap().success());
        assert_eq!(
            mgr.dict_named::<String, u32>("kids")
                .unwrap()
                .len()
                .unwrap(),
            50
        );
        // a remote client can shut the server down (as Python's)
        let pid = mgr.pid().unwrap();
        remote.shutdown().unwrap();
        wait_until(T, "the server to exit", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        });
        assert!(matches!(d.len(), Err(ManagerError::Disconnected)));
    });
}

#[test]
fn garbage_and_slow_clients_never_take_the_server_down() {
    watchdog(60, || {
        let (mgr, addr) = listening();
        let d = Manager::connect(&addr, KEY)
            .unwrap()
            .dict::<u32, u32>()
            .unwrap();
        // a slow-loris client that never answers the challenge
        let idle = std::net::TcpStream::connect(&addr).unwrap();
        // garbage instead of a handshake
        let mut g = std::net::TcpStream::connect(&addr).unwrap();
        let _ = g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // a huge length prefix
        let mut h = std::net::TcpStream::connect(&addr).unwrap();
        let _ = h.write_all(&u32::MAX.to_be_bytes());
        // a truncated frame, then gone
        let mut tr = std::net::TcpStream::connect(&addr).unwrap();
        let _ = tr.write_all(&[0, 0, 1]);
        drop(tr);
        // the authenticated client is served all along
        for i in 0..20 {
            d.insert(i, i).unwrap();
        }
        assert_eq!(d.len().unwrap(), 20);
        // a client dribbling one byte a second is dropped within the handshake's 5 s
        // too, not after 5 s per byte
        let dribbler = std::net::TcpStream::connect(&addr).unwrap();
        let mut dr = dribbler.try_clone().unwrap();
        let dribble = std::thread::spawn(move || {
            for _ in 0..15 {
                if dr.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let mut dribbler = dribbler;
        dribbler.set_read_timeout(Some(T)).unwrap();
        let t = Instant::now();
        let mut sink = Vec::new();
        let _ = dribbler.read_to_end(&mut sink);
        assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());
        dribble.join().unwrap();
        // the server drops the silent one after its handshake timeout
        let mut idle = idle;
        idle.set_read_timeout(Some(T)).unwrap();
        let mut buf = Vec::new();
        let t = Instant::now();
        let _ = idle.read_to_end(&mut buf);
        assert!(t.elapsed() < Duration::from_secs(15));
        // a client that knows the key but sends a frame without the session's MAC is
        // cut off (after the handshake the server sends its session nonce, then
        // nothing); the others go on
        let mut raw = procactor::connection::Client::connect(&addr, KEY).unwrap();
        raw.send_bytes(b"\xff\x00 not a request").unwrap();
        let nonce = raw.recv_bytes(1 << 20).unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(
            raw.recv_bytes(1 << 20).is_err(),
            "the server closed the connection"
        );
        assert_eq!(d.get(&3).unwrap(), Some(3));
        drop((g, h));
        assert!(mgr.shutdown().is_ok());
    });
}

/// The server half of the two-program test: run by `two_programs_over_tcp` as a separate
/// program (this test binary, started with `--ignored --exact` and an environment
/// variable), never on its own.
#[test]
#[ignore = "run by two_programs_over_tcp as a separate program"]
fn remote_server_program() {
    if std::env::var("PROCACTOR_MANAGER_SERVE").is_err() {
        return;
    }
    let mgr = Manager::builder()
        .listen("127.0.0.1:0")
        .authkey(KEY)
        .start()
        .unwrap();
    mgr.namespace_named("greeting")
        .unwrap()
        .set("text", "hello from another program")
        .unwrap();
    println!("ADDR {}", mgr.address().unwrap());
    std::io::stdout().flush().unwrap();
    // serve until the other program closes our stdin
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    let n: usize = mgr.list_named::<u32>("visits").unwrap().len().unwrap();
    println!("VISITS {n}");
}

#[test]
fn two_programs_over_tcp() {
    watchdog(90, || {
        let mut server = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "remote_server_program",
                "--nocapture",
            ])
            .env("PROCACTOR_MANAGER_SERVE", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            if let Some(a) = line.trim().strip_prefix("ADDR ") {
                addr = Some(a.to_string());
                break;
            }
            line.clear();
        }
        let addr = addr.expect("the server program prints its address");
        let m = Manager::connect(&addr, KEY).unwrap();
        let ns = m.namespace_named("greeting").unwrap();
        assert_eq!(
            ns.get::<String>("text").unwrap(),
            "hello from another program"
        );
        let visits = m.list_named::<u32>("visits").unwrap();
        visits.extend([1, 2, 3]).unwrap();
        drop(server.stdin.take()); // tells the server program to finish
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("VISITS 3"), "{rest}");
        assert!(server.wait().unwrap().success());
    });
}

// ------------------------------------------------------------------ proptest

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Op {
    Insert(u8, u32),
    Remove(u8),
    Push(u32),
    Get(u8),
}

/// What each process of the proptest gets: the dict, the list, its number, its ops, and
/// the event that starts every process at once.
type OpsArgs = (
    SharedDict<u8, u32>,
    SharedList<(u32, u32)>,
    u32,
    Vec<Op>,
    procactor::Event,
);

/// The value process `me` writes with its `i`-th op: unique in the whole run, so that
/// every answer says which write it saw.
fn written(me: u32, i: usize) -> u32 {
    me * 1000 + i as u32
}

/// Applies `ops` to the shared dict (keys shared by every process: they contend) and
/// list, once `go` is set; returns what each op answered. An insert writes
/// [`written`] (the generated value is ignored).
fn run_ops((d, l, me, ops, go): OpsArgs) -> Vec<Option<u32>> {
    assert!(go.wait_timeout(T), "never told to go");
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            Op::Insert(k, _) => d.insert(*k, written(me, i)).unwrap(),
            Op::Remove(k) => d.remove(k).unwrap(),
            Op::Push(v) => {
                l.push((me, *v)).unwrap();
                None
            }
            Op::Get(k) => d.get(k).unwrap(),
        })
        .collect()
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..3, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u8..3).prop_map(Op::Remove),
        any::<u32>().prop_map(Op::Push),
        (0u8..3).prop_map(Op::Get),
    ]
}

/// Checks a concurrent history of one key's writes (`(what it wrote, what it answered)`,
/// `None` written by a remove) and reads against the key's final value: the writes form
/// one sequence in which each write answers the state the previous one left. Values
/// are unique, so: every value answered was written to this key; each value written is
/// answered by exactly one later write, unless it is the final value (then by none);
/// the empty state (the start, and each remove) likewise.
fn check_key(
    k: u8,
    writes: &[(Option<u32>, Option<u32>)],
    reads: &[Option<u32>],
    fin: Option<u32>,
) {
    let inserted: Vec<u32> = writes.iter().filter_map(|w| w.0).collect();
    for got in writes
        .iter()
        .map(|w| w.1)
        .chain(reads.iter().copied())
        .flatten()
    {
        assert!(
            inserted.contains(&got),
            "key {k}: {got} was never written to it"
        );
    }
    if let Some(f) = fin {
        assert!(
            inserted.contains(&f),
            "key {k}: final {f} was never written to it"
        );
    }
    for v in &inserted {
        let answered = writes.iter().filter(|w| w.1 == Some(*v)).count();
        let want = usize::from(fin != Some(*v));
        assert_eq!(
            answered, want,
            "key {k}: {v} replaced {answered} times: {writes:?}"
        );
    }
    let removes = writes.iter().filter(|w| w.0.is_none()).count();
    let answered_none = writes.iter().filter(|w| w.1.is_none()).count();
    let want = 1 + removes - usize::from(fin.is_none());
    assert_eq!(
        answered_none, want,
        "key {k}: empty states answered: {writes:?}"
    );
}

proptest! {
    #![proptest_config(common::proptest_config(6))]
    #[test]
    fn operations_from_several_processes_match_a_local_model(
        per_process in proptest::collection::vec(
            proptest::collection::vec(op_strategy(), 0..30), 1..4),
    ) {
        let per = per_process.clone();
        watchdog(120, move || {
            let mgr = Manager::start().unwrap();
            let d = mgr.dict::<u8, u32>().unwrap();
            let l = mgr.list::<(u32, u32)>().unwrap();
            let go = procactor::Event::new().unwrap();
            let mut ps: Vec<_> = per
                .iter()
                .enumerate()
                .map(|(me, ops)| {
                    let args = (d.clone(), l.clone(), me as u32, ops.clone(), go.clone());
                    Process::new(run_ops, args).start().unwrap()
                })
                .collect();
            go.set();
            let answers: Vec<Vec<Option<u32>>> =
                ps.iter_mut().map(|p| p.result().unwrap()).collect();
            let fin: BTreeMap<u8, u32> = d.items().unwrap().into_iter().collect();
            // one process: its answers are exactly a local map's
            if per.len() == 1 {
                let mut model: BTreeMap<u8, u32> = BTreeMap::new();
                for (i, (op, got)) in per[0].iter().zip(&answers[0]).enumerate() {
                    let want = match op {
                        Op::Insert(k, _) => model.insert(*k, written(0, i)),
                        Op::Remove(k) => model.remove(k),
                        Op::Push(_) => None,
                        Op::Get(k) => model.get(k).copied(),
                    };
                    assert_eq!(*got, want, "{op:?}");
                }
                assert_eq!(fin, model);
            }
            // several: every key's history is one sequence of writes (see check_key)
            for k in 0u8..3 {
                let mut writes = Vec::new();
                let mut reads = Vec::new();
                for (me, (ops, got)) in per.iter().zip(&answers).enumerate() {
                    assert_eq!(ops.len(), got.len());
                    for (i, (op, a)) in ops.iter().zip(got).enumerate() {
                        match op {
                            Op::Insert(x, _) if *x == k => {
                                writes.push((Some(written(me as u32, i)), *a))
                            }
                            Op::Remove(x) if *x == k => writes.push((None, *a)),
                            Op::Get(x) if *x == k => reads.push(*a),
                            _ => {}
                        }
                    }
                }
                check_key(k, &writes, &reads, fin.get(&k).copied());
            }
            assert!(fin.keys().all(|k| *k < 3), "{fin:?}");
            // the list is an interleaving that keeps each process's order
            let all = l.to_vec().unwrap();
            for (me, ops) in per.iter().enumerate() {
                let want: Vec<u32> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::Push(v) => Some(*v),
                        _ => None,
                    })
                    .collect();
                let mine: Vec<u32> = all
                    .iter()
                    .filter(|(p, _)| *p == me as u32)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(mine, want);
            }
            let pushes = per.iter().flatten().filter(|op| matches!(op, Op::Push(_))).count();
            assert_eq!(all.len(), pushes);
        });
    }
}

fn echo_over_local_socket((name, key): (String, Vec<u8>)) -> String {
    let mut c = procactor::connection::Client::connect(&name, &key).unwrap();
    c.send(&"ping".to_string()).unwrap();
    c.recv::<String>().unwrap()
}

#[test]
fn listener_and_client_over_a_local_socket_name_and_tcp() {
    use procactor::connection::{Client, Listener};
    watchdog(60, || {
        let name = format!("local:procactor-test-{}", std::process::id());
        let l = Listener::bind(&name, KEY).unwrap();
        assert_eq!(l.address(), name);
        let mut p = Process::new(echo_over_local_socket, (name.clone(), KEY.to_vec()))
            .start()
            .unwrap();
        let mut c = l.accept().unwrap();
        assert_eq!(c.recv::<String>().unwrap(), "ping");
        c.send("pong").unwrap();
        assert_eq!(p.result().unwrap(), "pong");

        // TCP, a wrong key on either side, a wrong type
        let l = Listener::bind("127.0.0.1:0", KEY).unwrap();
        let addr = l.address();
        let t = std::thread::spawn(move || {
            let refused = l.accept().unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
            let mut c = l.accept().unwrap();
            c.send(&"not a number").unwrap();
        });
        let e = Client::connect(&addr, b"bad").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        let mut c = Client::connect(&addr, KEY).unwrap();
        assert!(matches!(c.recv::<u64>(), Err(procactor::Error::Decode(_))));
        t.join().unwrap();
    });
}

fn append_from_task((l, x): (SharedList<u64>, u64)) -> u64 {
    l.push(x).unwrap();
    x
}

#[test]
fn proxies_travel_through_queues_and_pool_task_arguments() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let l = mgr.list::<u64>().unwrap();
        // a task's arguments carry descriptors (the worker's task socket): the proxy
        // travels as its rings there
        let pool = procactor::Pool::new(2).unwrap();
        let done = pool
            .map_chunksize(append_from_task, (0..10u64).map(|x| (l.clone(), x)), 1)
            .unwrap();
        assert_eq!(done.len(), 10);
        let mut got = l.to_vec().unwrap();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<u64>>());
        // and through a queue, in this process
        let q = procactor::Queue::new().unwrap();
        q.put(l.clone()).unwrap();
        let back: SharedList<u64> = q.get_timeout(T).unwrap();
        back.push(99).unwrap();
        assert_eq!(l.len().unwrap(), 11);
        drop(pool);
        mgr.shutdown().unwrap();
        assert!(matches!(back.push(1), Err(ManagerError::Disconnected)));
    });
}

/// Inserts until the server is gone; how many went in, and whether the end was
/// `Disconnected`.
fn insert_until_gone(d: SharedDict<u64, u64>) -> (u64, bool) {
    for i in 0.. {
        match d.insert(i, i) {
            Ok(_) => {}
            Err(ManagerError::Disconnected) => return (i, true),
            Err(_) => return (i, false),
        }
    }
    unreachable!()
}

#[test]
fn a_server_killed_in_the_middle_of_a_clients_operations() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let d = mgr.dict::<u64, u64>().unwrap();
        let mut p = Process::new(insert_until_gone, d.clone()).start().unwrap();
        wait_until(T, "the client to be busy", || d.len().unwrap_or(0) > 100);
        let pid = mgr.pid().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let (n, disconnected) = p.result().unwrap();
        assert!(n > 100);
        assert!(
            disconnected,
            "the client's operation ends with Disconnected"
        );
    });
}

// ------------------------------------------------------------------ synchronisation objects

use procactor::{
    Namespace, SharedArray, SharedBarrier, SharedCondition, SharedEvent, SharedJoinableQueue,
    SharedLock, SharedQueue, SharedRLock, SharedSemaphore, SharedValue,
};

/// Five read-modify-writes of the namespace's `n`, each under the manager lock, with a
/// pause between the read and the write (without the lock, workers overwrite each
/// other's increments).
fn increment_under_lock((lock, ns): (SharedLock, Namespace)) -> u32 {
    for _ in 0..5 {
        let _g = lock.acquire().unwrap();
        let n: u32 = ns.get("n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ns.set("n", &(n + 1)).unwrap();
    }
    std::process::id()
}

#[test]
fn a_manager_lock_makes_read_modify_writes_from_four_pool_workers_exact() {
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let lock = mgr.lock().unwrap();
        let ns = mgr.namespace().unwrap();
        ns.set("n", &0u32).unwrap();
        let pool = procactor::Pool::new(4).unwrap();
        let pids = pool
            .map_chunksize(
                increment_under_lock,
                (0..4).map(|_| (lock.clone(), ns.clone())),
                1,
            )
            .unwrap();
        assert_eq!(pids.len(), 4);
        assert_eq!(ns.get::<u32>("n").unwrap(), 20);
        assert!(!lock.is_locked().unwrap(), "every guard released its lock");
    });
}

fn try_rlock_and_release(l: SharedRLock) -> (bool, bool) {
    let got = l.try_acquire().unwrap().is_some();
    let release_refused = matches!(l.release(), Err(ManagerError::Refused(_)));
    (got, release_refused)
}

#[test]
fn an_rlock_reenters_in_its_owner_thread_only_and_only_the_owner_releases() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let l = mgr.rlock().unwrap();
        let g1 = l.acquire().unwrap();
        let g2 = l.try_acquire().unwrap().expect("the owner re-enters");
        // another process: neither acquires nor releases it
        let mut p = Process::new(try_rlock_and_release, l.clone())
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), (false, true));
        // another thread of this process is another owner
        let l2 = l.clone();
        let other = std::thread::spawn(move || try_rlock_and_release(l2));
        assert_eq!(other.join().unwrap(), (false, true));
        drop(g2);
        assert!(l.is_locked().unwrap(), "one release of two keeps it held");
        let mut p = Process::new(try_rlock_and_release, l.clone())
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), (false, true));
        drop(g1);
        assert!(!l.is_locked().unwrap());
        // free now: the child acquires it (and its exit releases it)
        let mut p = Process::new(try_rlock_and_release, l.clone())
            .start()
            .unwrap();
        assert!(p.result().unwrap().0);
        wait_until(T, "the child's rlock to be released", || {
            !l.is_locked().unwrap()
        });
        assert!(matches!(l.release(), Err(ManagerError::Refused(_))));
    });
}

fn acquire_semaphore_within(s: SharedSemaphore) -> bool {
    let g = s.acquire_timeout(T).unwrap();
    g.is_some()
}

#[test]
fn semaphores_count_and_a_bounded_one_refuses_an_over_release() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let s = mgr.semaphore(2).unwrap();
        assert_eq!(s.value().unwrap(), 2);
        let a = s.acquire().unwrap();
        let b = s
            .acquire_timeout(Duration::MAX)
            .unwrap()
            .expect("a second unit, with a timeout that does not overflow");
        assert_eq!(s.value().unwrap(), 0);
        assert!(s.try_acquire().unwrap().is_none());
        let t = Instant::now();
        assert!(s
            .acquire_timeout(Duration::from_millis(100))
            .unwrap()
            .is_none());
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t.elapsed()
        );
        // a child waits for a unit; this process releases one
        let mut p = Process::new(acquire_semaphore_within, s.clone())
            .start()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(a);
        assert!(p.result().unwrap());
        drop(b);
        wait_until(T, "both units back", || s.value().unwrap() == 2);
        // a plain semaphore may be released above its start (Python's)
        s.release().unwrap();
        assert_eq!(s.value().unwrap(), 3);

        let bs = mgr.bounded_semaphore(1).unwrap();
        assert!(matches!(bs.release(), Err(ManagerError::Refused(_))));
        let g = bs.acquire().unwrap();
        assert!(bs.try_acquire().unwrap().is_none());
        g.release().unwrap();
        assert!(matches!(bs.release(), Err(ManagerError::Refused(_))));
        assert_eq!(bs.value().unwrap(), 1);
        // the same object by name
        let again = mgr.bounded_semaphore_named("gate", 1).unwrap();
        let _held = again.acquire().unwrap();
        assert!(mgr
            .bounded_semaphore_named("gate", 1)
            .unwrap()
            .try_acquire()
            .unwrap()
            .is_none());
    });
}

fn wait_event_then_ack((ev, ack): (SharedEvent, SharedEvent)) -> bool {
    let seen = ev.wait_timeout(T).unwrap();
    ack.set().unwrap();
    seen
}

#[test]
fn an_event_is_set_waited_for_and_cleared_across_processes() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let ev = mgr.event().unwrap();
        let ack = mgr.event_named("ack").unwrap();
        assert!(!ev.is_set().unwrap());
        let mut p = Process::new(wait_event_then_ack, (ev.clone(), ack.clone()))
            .start()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!ack.is_set().unwrap(), "the child waits for the event");
        ev.set().unwrap();
        assert!(ack.wait_timeout(T).unwrap());
        assert!(p.result().unwrap());
        assert!(ev.is_set().unwrap());
        ev.wait().unwrap();
        assert!(ev.wait_timeout(Duration::MAX).unwrap(), "no overflow");
        ev.clear().unwrap();
        let t = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(100)).unwrap());
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t.elapsed()
        );
        assert!(mgr.event_named("ack").unwrap().is_set().unwrap());
    });
}

/// Holds the condition's lock, says so, and waits to be notified; whether it was, and
/// whether it held the lock again after the wait.
fn wait_on_condition((c, waiting): (SharedCondition, SharedEvent)) -> (bool, bool) {
    let g = c.acquire().unwrap();
    waiting.set().unwrap();
    let notified = c.wait_timeout(T).unwrap();
    // re-entering works only for the owner: the wait gave the lock back
    let again = c.try_acquire().unwrap().is_some();
    drop(g);
    (notified, again)
}

#[test]
fn a_condition_notify_wakes_a_waiter_in_another_process() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let c = mgr.condition().unwrap();
        let waiting = mgr.event().unwrap();
        assert!(matches!(c.notify(1), Err(ManagerError::Refused(_))));
        assert!(matches!(c.wait(), Err(ManagerError::Refused(_))));
        let mut p = Process::new(wait_on_condition, (c.clone(), waiting.clone()))
            .start()
            .unwrap();
        assert!(waiting.wait_timeout(T).unwrap());
        // the child releases the lock only by waiting
        let g = c
            .acquire_timeout(T)
            .unwrap()
            .expect("the waiter released the lock");
        let t = Instant::now();
        c.notify(1).unwrap();
        drop(g);
        assert_eq!(p.result().unwrap(), (true, true));
        assert!(t.elapsed() < Duration::from_secs(10));
        // wait_for: the predicate is checked with the lock held, after each notify
        let flag = mgr.value(false).unwrap();
        let g = c.acquire().unwrap();
        let t = Instant::now();
        assert!(!c
            .wait_for_timeout(|| flag.get().unwrap(), Duration::from_millis(100))
            .unwrap());
        assert!(t.elapsed() >= Duration::from_millis(90));
        flag.set(true).unwrap();
        c.wait_for(|| flag.get().unwrap()).unwrap();
        drop(g);
    });
}

fn wait_at_barrier(b: SharedBarrier) -> usize {
    b.wait_timeout(T).unwrap()
}

#[test]
fn a_barrier_of_three_processes_and_a_broken_one() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let b = mgr.barrier(3).unwrap();
        assert_eq!(b.parties().unwrap(), 3);
        let mut ps: Vec<_> = (0..2)
            .map(|_| Process::new(wait_at_barrier, b.clone()).start().unwrap())
            .collect();
        wait_until(T, "two waiters", || b.n_waiting().unwrap() == 2);
        let mut idx = vec![b.wait_timeout(T).unwrap()];
        for p in &mut ps {
            idx.push(p.result().unwrap());
        }
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
        assert_eq!(b.n_waiting().unwrap(), 0);
        // a wait that times out breaks it, for later waiters too, until reset
        let t = Instant::now();
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(100)),
            Err(ManagerError::BrokenBarrier)
        ));
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert!(b.is_broken().unwrap());
        assert!(matches!(b.wait(), Err(ManagerError::BrokenBarrier)));
        b.reset().unwrap();
        assert!(!b.is_broken().unwrap());
        // abort wakes a waiter in another process with BrokenBarrier
        let mut p = Process::new(barrier_outcome, b.clone()).start().unwrap();
        wait_until(T, "a waiter", || b.n_waiting().unwrap() == 1);
        b.abort().unwrap();
        assert_eq!(p.result().unwrap(), "broken");
        assert!(matches!(mgr.barrier(0), Err(ManagerError::Refused(_))));
    });
}

fn barrier_outcome(b: SharedBarrier) -> String {
    match b.wait_timeout(T) {
        Ok(i) => format!("passed {i}"),
        Err(ManagerError::BrokenBarrier) => "broken".into(),
        Err(e) => format!("error {e}"),
    }
}

fn put_numbers((q, n): (SharedQueue<u32>, u32)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn get_one(q: SharedQueue<String>) -> Option<String> {
    q.get_timeout(T).unwrap()
}

#[test]
fn a_queue_is_fifo_across_processes_with_timeouts_and_a_bound() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let q = mgr.queue::<u32>().unwrap();
        let mut p = Process::new(put_numbers, (q.clone(), 200)).start().unwrap();
        let got: Vec<u32> = (0..200)
            .map(|_| q.get_timeout(T).unwrap().unwrap())
            .collect();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        p.result().unwrap();
        assert!(q.is_empty().unwrap());
        assert_eq!(q.try_get().unwrap(), None);
        let t = Instant::now();
        assert_eq!(q.get_timeout(Duration::from_millis(100)).unwrap(), None);
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t.elapsed()
        );

        let b = mgr.queue_bounded::<u32>(2).unwrap();
        b.put(1).unwrap();
        assert_eq!(b.try_put(2).unwrap(), Ok(()));
        assert_eq!(b.try_put(3).unwrap(), Err(3), "full: the item comes back");
        let t = Instant::now();
        assert_eq!(
            b.put_timeout(4, Duration::from_millis(100)).unwrap(),
            Err(4)
        );
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert_eq!(b.len().unwrap(), 2);
        assert_eq!(b.get().unwrap(), 1);
        assert_eq!(b.put_timeout(5, Duration::MAX).unwrap(), Ok(()));
        assert_eq!((b.get().unwrap(), b.get().unwrap()), (2, 5));

        // a child blocked in get is woken by a put here; by name
        let named = mgr.queue_named::<String>("jobs", 0).unwrap();
        let mut p = Process::new(get_one, named.clone()).start().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        mgr.queue_named::<String>("jobs", 0)
            .unwrap()
            .put("hello".into())
            .unwrap();
        assert_eq!(p.result().unwrap().as_deref(), Some("hello"));
    });
}

fn work_off(q: SharedJoinableQueue<u32>) -> u32 {
    let mut sum = 0;
    while let Some(x) = q.get_timeout(Duration::from_millis(500)).unwrap() {
        std::thread::sleep(Duration::from_millis(20));
        sum += x;
        q.task_done().unwrap();
    }
    sum
}

#[test]
fn a_joinable_queue_joins_when_every_task_is_done() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let q = mgr.joinable_queue::<u32>().unwrap();
        q.join_timeout(Duration::from_millis(10))
            .expect("nothing put: joins at once");
        for i in 1..=5 {
            q.put(i).unwrap();
        }
        // a timeout is its own error, not the server's `Timeout` (it did answer)
        assert!(matches!(
            q.join_timeout(Duration::from_millis(100)),
            Err(ManagerError::JoinTimeout(_))
        ));
        let mut p = Process::new(work_off, q.clone()).start().unwrap();
        q.join_timeout(T).unwrap();
        assert!(q.is_empty().unwrap());
        assert!(matches!(q.task_done(), Err(ManagerError::Refused(_))));
        assert_eq!(p.result().unwrap(), 15);
        q.join().unwrap();
    });
}

fn set_value_and_item((v, a): (SharedValue<i64>, SharedArray<u8>)) {
    v.set(v.get().unwrap() * 2).unwrap();
    a.set(3, 9).unwrap();
}

#[test]
fn values_and_arrays_get_and_set_across_processes() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let v = mgr.value(21i64).unwrap();
        let a = mgr.array([0u8; 4]).unwrap();
        let mut p = Process::new(set_value_and_item, (v.clone(), a.clone()))
            .start()
            .unwrap();
        p.result().unwrap();
        assert_eq!(v.get().unwrap(), 42);
        assert_eq!(a.to_vec().unwrap(), [0, 0, 0, 9]);
        assert_eq!(a.get(3).unwrap(), Some(9));
        assert_eq!(a.get(4).unwrap(), None);
        assert_eq!(a.len().unwrap(), 4);
        assert!(matches!(a.set(4, 1), Err(ManagerError::Refused(_))));
        // named: made once, found afterwards (the first contents win)
        let n = mgr.value_named("v", "first".to_string()).unwrap();
        let again = mgr.value_named("v", "ignored".to_string()).unwrap();
        assert_eq!(again.get().unwrap(), "first");
        again.set("second".into()).unwrap();
        assert_eq!(n.get().unwrap(), "second");
        let an = mgr.array_named("a", [1u32, 2]).unwrap();
        assert_eq!(
            mgr.array_named::<u32>("a", []).unwrap().to_vec().unwrap(),
            [1, 2]
        );
        assert!(!an.is_empty().unwrap());
    });
}

/// Takes every lock-like object it is given, says so, and sleeps until killed.
fn hold_locks_until_killed(
    (l, r, s, c, held): (
        SharedLock,
        SharedRLock,
        SharedSemaphore,
        SharedCondition,
        SharedEvent,
    ),
) {
    let _l = l.acquire().unwrap();
    let _r1 = r.acquire().unwrap();
    let _r2 = r.acquire().unwrap();
    let _s = s.acquire().unwrap();
    let _c = c.acquire().unwrap();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn locks_held_by_a_killed_client_are_released() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let (l, r, s, c) = (
            mgr.lock().unwrap(),
            mgr.rlock().unwrap(),
            mgr.semaphore(1).unwrap(),
            mgr.condition().unwrap(),
        );
        let held = mgr.event().unwrap();
        let p = Process::new(
            hold_locks_until_killed,
            (l.clone(), r.clone(), s.clone(), c.clone(), held.clone()),
        )
        .start()
        .unwrap();
        assert!(held.wait_timeout(T).unwrap());
        assert!(l.try_acquire().unwrap().is_none());
        assert!(r.try_acquire().unwrap().is_none());
        assert!(s.try_acquire().unwrap().is_none());
        assert!(c.try_acquire().unwrap().is_none());
        // a waiter that started before the kill gets it too (it is asleep in its
        // acquire when the holder is killed: the only place its thread can sleep)
        let l2 = l.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let tid = std::fs::read_link("/proc/thread-self").unwrap();
            tid_tx.send(tid).unwrap();
            let t = Instant::now();
            let got = l2.acquire_timeout(T).unwrap().is_some();
            (got, t.elapsed())
        });
        let tid = tid_rx.recv_timeout(T).unwrap();
        wait_until(T, "the waiter asleep in acquire", || {
            asleep(&format!("/proc/{}/stat", tid.display())) || waiter.is_finished()
        });
        assert!(
            !waiter.is_finished(),
            "the waiter got the lock of a live holder"
        );
        let t = Instant::now();
        p.kill().unwrap();
        let (got, _) = waiter.join().unwrap();
        assert!(got);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(r.acquire_timeout(Duration::from_secs(5)).unwrap().is_some());
        let sg = s.acquire_timeout(Duration::from_secs(5)).unwrap();
        assert!(sg.is_some());
        assert!(c.acquire_timeout(Duration::from_secs(5)).unwrap().is_some());
        assert_eq!(
            s.value().unwrap(),
            0,
            "one unit: given back once, taken here"
        );
        drop(sg);
        assert_eq!(s.value().unwrap(), 1);
    });
}

fn get_forever(q: SharedQueue<u8>) -> u8 {
    q.get().unwrap()
}

#[test]
fn a_blocked_client_does_not_stop_other_clients() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let q = mgr.queue::<u8>().unwrap();
        let l = mgr.lock().unwrap();
        let hold = l.acquire().unwrap();
        let mut blocked: Vec<_> = (0..3)
            .map(|_| Process::new(get_forever, q.clone()).start().unwrap())
            .collect();
        let l2 = l.clone();
        let lock_waiter = std::thread::spawn(move || l2.acquire_timeout(T).unwrap().is_some());
        std::thread::sleep(Duration::from_millis(200));
        // three processes and a thread wait in the server; everything else goes on
        let d = mgr.dict::<u32, u32>().unwrap();
        let ev = mgr.event().unwrap();
        let t = Instant::now();
        for i in 0..50 {
            d.insert(i, i).unwrap();
            ev.set().unwrap();
            assert!(ev.is_set().unwrap());
            ev.clear().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        for i in 0..3 {
            q.put(i).unwrap();
        }
        let mut got: Vec<u8> = blocked.iter_mut().map(|p| p.result().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        drop(hold);
        assert!(lock_waiter.join().unwrap());
    });
}

/// A remote client: connects over TCP, takes the named lock (waiting while the server's
/// host holds it), then puts three items on the named queue under it.
fn remote_client(addr: String) -> Vec<u32> {
    let m = Manager::connect(&addr, KEY).unwrap();
    let l = m.lock_named("L").unwrap();
    let q = m.queue_named::<u32>("Q", 0).unwrap();
    let _g = l.acquire_timeout(T).unwrap().expect("the lock is released");
    for i in 0..3 {
        q.put(i).unwrap();
    }
    let back = m.queue_named::<u32>("back", 0).unwrap();
    (0..2)
        .map(|_| back.get_timeout(T).unwrap().unwrap())
        .collect()
}

#[test]
fn a_remote_client_over_tcp_uses_a_lock_and_a_queue() {
    watchdog(60, || {
        let (mgr, addr) = listening();
        let l = mgr.lock_named("L").unwrap();
        let q = mgr.queue_named::<u32>("Q", 0).unwrap();
        let g = l.acquire().unwrap();
        let mut p = Process::new(remote_client, addr.clone()).start().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            q.is_empty().unwrap(),
            "the remote client waits for the lock"
        );
        drop(g);
        let got: Vec<u32> = (0..3).map(|_| q.get_timeout(T).unwrap().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
        let back = mgr.queue_named::<u32>("back", 0).unwrap();
        back.put(7).unwrap();
        back.put(8).unwrap();
        assert_eq!(p.result().unwrap(), [7, 8]);
        // a remote proxy in this process, too; then the server goes away
        let remote = Manager::connect(&addr, KEY).unwrap();
        let rl = remote.lock_named("L").unwrap();
        let ev = remote.event().unwrap();
        assert!(rl.try_acquire().unwrap().is_some());
        mgr.shutdown().unwrap();
        let t = Instant::now();
        assert!(matches!(rl.try_acquire(), Err(ManagerError::Disconnected)));
        assert!(matches!(ev.wait(), Err(ManagerError::Disconnected)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
}

/// Whether the task whose `stat` file is `stat_path` is asleep (state `S`).
fn asleep(stat_path: &str) -> bool {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        == Some('S')
}

/// Says it is about to wait (`ready`), then waits on the event.
fn wait_for_event_forever((ev, ready): (SharedEvent, procactor::Event)) -> bool {
    ready.set();
    matches!(ev.wait(), Err(ManagerError::Disconnected))
}

#[test]
fn a_server_killed_under_a_waiting_client_gives_disconnected() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let ev = mgr.event().unwrap();
        let ready = procactor::Event::new().unwrap();
        let mut p = Process::new(wait_for_event_forever, (ev.clone(), ready.clone()))
            .start()
            .unwrap();
        // the client is inside its wait when the server dies: it said it was about to
        // wait, and its main thread sleeps (in the call: the only place it can)
        assert!(ready.wait_timeout(T));
        let child = p.pid();
        wait_until(T, "the client asleep in its wait", || {
            asleep(&format!("/proc/{child}/task/{child}/stat"))
        });
        let pid = mgr.pid().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        assert!(
            p.result().unwrap(),
            "the waiter's call ends with Disconnected"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    });
}

/// Waits on the event (the server sends heartbeats meanwhile); whether it was set, and
/// whether the same connection still answers afterwards.
fn wait_past_heartbeats(ev: SharedEvent) -> (bool, bool) {
    let set = ev.wait_timeout(T).unwrap();
    (set, ev.is_set().unwrap())
}

#[test]
fn a_wait_longer_than_the_heartbeat_period_gets_its_answer() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let ev = mgr.event().unwrap();
        let mut p = Process::new(wait_past_heartbeats, ev.clone())
            .start()
            .unwrap();
        // the server's heartbeat comes every 5 s; the client skips it and keeps waiting
        std::thread::sleep(Duration::from_secs(6));
        ev.set().unwrap();
        assert_eq!(p.result().unwrap(), (true, true));
    });
}

/// A guard whose connection failed (here: closed on purpose) must not release the lock
/// when dropped: the server released it when that connection closed, and another client
/// may hold it now. Without the connection check, the stale guard's release (sent
/// through a new connection) freed the other holder's lock.
#[test]
fn a_guard_whose_connection_was_lost_does_not_release_a_later_holder() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let lock = mgr.lock().unwrap();
        let stale = lock.acquire().unwrap();
        procactor::manager::close_this_threads_connections();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let l2 = lock.clone();
        let other = std::thread::spawn(move || {
            let g = l2
                .acquire_timeout(Duration::from_secs(20))
                .unwrap()
                .expect("released by the server when the first connection closed");
            held_tx.send(()).unwrap();
            done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
            g.release().unwrap();
        });
        held_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        drop(stale);
        assert!(
            lock.try_acquire().unwrap().is_none(),
            "the stale guard released the other holder's lock"
        );
        done_tx.send(()).unwrap();
        other.join().unwrap();
        let g = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
        assert!(g.is_some(), "free once its holder released it");
    });
}

// ------------------------------------------------------------------ freeing, timeouts, hostile peers

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits until the server holds `n` objects (drops reach it in the background).
fn wait_for_count(mgr: &Manager, n: usize) {
    let mut last = 0;
    let t = Instant::now();
    while t.elapsed() < T {
        last = mgr.object_count().unwrap();
        if last == n {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the server holds {last} objects, not {n}");
}

#[test]
fn ten_thousand_objects_created_and_dropped_are_freed_and_the_server_stays_small() {
    watchdog(240, || {
        let mgr = Manager::start().unwrap();
        let pid = mgr.pid().unwrap();
        let start = mgr.object_count().unwrap();
        let big = vec![7u8; 32 << 10];
        let round = |i: u32| match i % 4 {
            0 | 1 => {
                let d = mgr.dict::<u32, Vec<u8>>().unwrap();
                d.insert(i, big.clone()).unwrap();
                let _copy = d.clone(); // a clone is the same reference
            }
            2 => {
                let l = mgr.lock().unwrap();
                drop(l.acquire().unwrap());
            }
            _ => {
                let q = mgr.queue::<Vec<u8>>().unwrap();
                q.put(big.clone()).unwrap(); // freed with an item still in it
            }
        };
        for i in 0..1_000 {
            round(i);
        }
        wait_for_count(&mgr, start);
        let warm = rss_kib(pid);
        for i in 1_000..10_000 {
            round(i);
        }
        wait_for_count(&mgr, start);
        let end = rss_kib(pid);
        // 9 000 objects of 32 KiB kept would be over 280 MiB
        assert!(
            end < warm + 64 * 1024,
            "the server grew from {warm} KiB to {end} KiB"
        );
    });
}

fn hold_then_report((d, l, ready): (SharedDict<u8, u8>, SharedLock, SharedEvent)) {
    d.insert(1, 1).unwrap();
    assert!(!l.is_locked().unwrap());
    ready.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn proxies_sent_to_children_are_references_that_go_with_the_child() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let start = mgr.object_count().unwrap();
        let ready = mgr.event().unwrap();
        let base = mgr.object_count().unwrap(); // with the event
        let (d, l) = (mgr.dict::<u8, u8>().unwrap(), mgr.lock().unwrap());
        let p = Process::new(hold_then_report, (d.clone(), l.clone(), ready.clone()))
            .start()
            .unwrap();
        assert!(ready.wait_timeout(T).unwrap());
        drop((d, l));
        // the child still holds both
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(mgr.object_count().unwrap(), base + 2);
        // killed: the server drops what the child held
        p.kill().unwrap();
        wait_for_count(&mgr, base);
        drop(ready);
        wait_for_count(&mgr, start);
    });
}

#[test]
fn named_objects_live_until_remove_named() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let start = mgr.object_count().unwrap();
        mgr.dict_named::<u8, u8>("kept")
            .unwrap()
            .insert(1, 2)
            .unwrap();
        drop(mgr.lock_named("kept").unwrap());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(mgr.object_count().unwrap(), start + 2, "names keep them");
        assert_eq!(
            mgr.dict_named::<u8, u8>("kept").unwrap().get(&1).unwrap(),
            Some(2)
        );
        let held = mgr.dict_named::<u8, u8>("kept").unwrap();
        assert!(mgr.remove_named("kept").unwrap());
        assert!(!mgr.remove_named("kept").unwrap());
        // the lock had no proxy left: gone at once; the dict goes with `held`
        wait_for_count(&mgr, start + 1);
        assert_eq!(held.get(&1).unwrap(), Some(2));
        drop(held);
        wait_for_count(&mgr, start);
        // the name makes a new object now
        assert_eq!(
            mgr.dict_named::<u8, u8>("kept").unwrap().get(&1).unwrap(),
            None
        );
    });
}

#[test]
fn calls_with_a_timeout_return_in_time_against_a_frozen_server() {
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let pid = mgr.pid().unwrap();
        let (l, q) = (mgr.lock().unwrap(), mgr.queue::<u8>().unwrap());
        let g = l.acquire().unwrap();
        assert!(q.try_get().unwrap().is_none()); // this thread's connection is made
        let cont = freeze(pid);
        let bound = Duration::from_millis(1) + procactor::manager::CALL_MARGIN;
        let slack = Duration::from_secs(3);
        let t = Instant::now();
        let r = l.acquire_timeout(Duration::from_millis(1));
        assert!(matches!(r, Err(ManagerError::Timeout)), "{r:?}");
        assert!(t.elapsed() < bound + slack, "{:?}", t.elapsed());
        // a thread without a connection yet: its handshake has the call's deadline
        let l2 = l.clone();
        let t = Instant::now();
        let r = std::thread::spawn(move || l2.try_acquire().map(|g| g.is_some()))
            .join()
            .unwrap();
        assert!(matches!(r, Err(ManagerError::Timeout)), "{r:?}");
        assert!(t.elapsed() < bound + slack, "{:?}", t.elapsed());
        let t = Instant::now();
        let r = q.get_timeout(Duration::from_millis(100));
        assert!(matches!(r, Err(ManagerError::Timeout)), "{r:?}");
        assert!(t.elapsed() < bound + slack + Duration::from_millis(100));
        drop(cont);
        // the timed-out connection was closed: the server released the lock it held
        drop(g);
        assert!(l.acquire_timeout(T).unwrap().is_some());
        assert_eq!(q.try_get().unwrap(), None);
    });
}

/// Stops process `pid` (`SIGSTOP`) until the guard is dropped (`SIGCONT`, whatever
/// happens in between).
struct Frozen(u32);

fn freeze(pid: u32) -> Frozen {
    signal(pid, "-STOP");
    let frozen = Frozen(pid);
    // (the signal stops each thread at its next kernel entry: wait until all are)
    wait_until(T, "the process stopped", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .all(|t| {
                let stat = std::fs::read_to_string(t.unwrap().path().join("stat"));
                // the state letter follows the ")" that closes the command name
                stat.unwrap_or_default()
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
            })
    });
    frozen
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// The call timeout of the frozen-server tests below, and what a timed-out call may
/// take (generous: a loaded 2-core machine).
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
const CALL_BOUND: Duration = Duration::from_secs(3);

/// `f` fails with `Timeout`, after the call timeout and within its bound.
fn times_out<R: std::fmt::Debug>(what: &str, f: impl FnOnce() -> Result<R, ManagerError>) {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(matches!(r, Err(ManagerError::Timeout)), "{what}: {r:?}");
    assert!(
        took >= CALL_TIMEOUT && took < CALL_TIMEOUT + CALL_BOUND,
        "{what}: {took:?}"
    );
}

/// A frozen server: a dict's `get` and `insert` under a 300 ms call timeout give
/// `Timeout` in time; once the server runs again the same proxy works, and the late
/// answers to the timed-out calls are not taken for the answers to the next ones.
fn dict_calls_time_out_then_work(mgr: &Manager, pid: u32) {
    let d = mgr.dict::<u32, u64>().unwrap();
    d.insert(1, 10).unwrap();
    let frozen = freeze(pid);
    // (late answers, if read by the next calls: `Some(10)`, then `None`)
    times_out("get", || d.get(&1));
    times_out("insert", || d.insert(2, 20));
    times_out("len", || d.len());
    drop(frozen);
    // the timed-out insert may or may not be applied (a remote one whose request
    // was written is; a local one in the request ring is): look, then make it so
    let applied = d.get(&2).unwrap();
    assert!(matches!(applied, None | Some(20)), "{applied:?}");
    assert_eq!(d.insert(2, 21).unwrap(), applied);
    assert_eq!(d.get(&1).unwrap(), Some(10));
    assert_eq!(d.get(&3).unwrap(), None);
    assert_eq!(d.len().unwrap(), 2);
    assert_eq!(d.items().unwrap(), [(1, 10), (2, 21)]);
}

#[test]
fn a_call_timeout_bounds_dict_calls_to_a_frozen_server() {
    watchdog(120, || {
        let mgr = Manager::builder()
            .call_timeout(CALL_TIMEOUT)
            .start()
            .unwrap();
        assert_eq!(mgr.call_timeout(), Some(CALL_TIMEOUT));
        let pid = mgr.pid().unwrap();
        dict_calls_time_out_then_work(&mgr, pid);
        // the manager's own calls too
        let frozen = freeze(pid);
        times_out("list", || mgr.list::<u8>());
        drop(frozen);
        assert!(mgr.object_count().unwrap() >= 1);
        // none (the default, as Python): a call waits for the server
        mgr.set_call_timeout(None);
        assert_eq!(mgr.call_timeout(), None);
        let d = mgr.dict::<u32, u32>().unwrap();
        let frozen = freeze(pid);
        let cont = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(frozen);
        });
        assert_eq!(d.insert(1, 1).unwrap(), None);
        cont.join().unwrap();
    });
}

#[test]
fn a_call_timeout_bounds_a_remote_managers_calls_to_a_frozen_server() {
    watchdog(120, || {
        let key = b"frozen-remote".to_vec();
        let server = Manager::builder()
            .listen("127.0.0.1:0")
            .authkey(key.clone())
            .start()
            .unwrap();
        assert_eq!(server.call_timeout(), None);
        let remote = Manager::connect(&server.address().unwrap(), &key).unwrap();
        remote.set_call_timeout(Some(CALL_TIMEOUT));
        dict_calls_time_out_then_work(&remote, server.pid().unwrap());
    });
}

/// Says it is ready (its proxy decoded), waits for `go`, then reports how `d.get(&1)`
/// ended (and how long it took, in ms).
fn get_when_told(
    (d, go, out): (
        SharedDict<u32, u64>,
        procactor::Event,
        procactor::Queue<String>,
    ),
) {
    out.put("ready".into()).unwrap();
    assert!(go.wait_timeout(T));
    let t = Instant::now();
    let r = d.get(&1);
    out.put(format!("{r:?} {}", t.elapsed().as_millis()))
        .unwrap();
}

#[test]
fn a_proxy_sent_to_a_child_keeps_its_managers_call_timeout() {
    watchdog(120, || {
        let mgr = Manager::builder()
            .call_timeout(CALL_TIMEOUT)
            .start()
            .unwrap();
        let d = mgr.dict::<u32, u64>().unwrap();
        d.insert(1, 10).unwrap();
        let go = procactor::Event::new().unwrap();
        let out = procactor::Queue::<String>::new().unwrap();
        let mut p = Process::new(get_when_told, (d.clone(), go.clone(), out.clone()))
            .start()
            .unwrap();
        // (freeze the server only once the child has its proxy)
        assert_eq!(out.get_timeout(T).unwrap(), "ready");
        let frozen = freeze(mgr.pid().unwrap());
        go.set();
        let r = out.get_timeout(T + CALL_BOUND).unwrap();
        drop(frozen);
        let (what, ms) = r.rsplit_once(' ').unwrap();
        assert_eq!(what, "Err(Timeout)", "{r}");
        let ms: u64 = ms.parse().unwrap();
        assert!(
            ms >= CALL_TIMEOUT.as_millis() as u64
                && ms < (CALL_TIMEOUT + CALL_BOUND).as_millis() as u64,
            "{r}"
        );
        assert!(p.join_timeout(T).unwrap().success());
        assert_eq!(d.get(&1).unwrap(), Some(10));
    });
}

fn hold_lock_then_get((l, q, held): (SharedLock, SharedQueue<Vec<u8>>, SharedEvent)) {
    let _g = l.acquire().unwrap();
    held.set().unwrap();
    let _ = q.get();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_frozen_client_is_disconnected_its_lock_released_and_its_item_put_back() {
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let (l, q, held) = (
            mgr.lock().unwrap(),
            mgr.queue::<Vec<u8>>().unwrap(),
            mgr.event().unwrap(),
        );
        let p = Process::new(hold_lock_then_get, (l.clone(), q.clone(), held.clone()))
            .start()
            .unwrap();
        assert!(held.wait_timeout(T).unwrap());
        std::thread::sleep(Duration::from_millis(300)); // the child waits in `get`
        signal(p.pid(), "-STOP");
        // the server takes the item for the child and cannot write it: after its write
        // timeout it gives up on the child, releases its lock and puts the item back
        let item: Vec<u8> = (0..32u32 << 20).map(|i| i as u8).collect();
        q.put(item.clone()).unwrap();
        let t = Instant::now();
        let g = l.acquire_timeout(Duration::from_secs(40)).unwrap();
        assert!(g.is_some(), "the frozen client's lock was released");
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        let back = q.get_timeout(T).unwrap().expect("the item is back");
        assert!(back == item, "the same item, whole");
        signal(p.pid(), "-CONT");
        p.kill().unwrap();
    });
}

#[test]
fn an_answer_that_does_not_decode_fails_that_call_only() {
    watchdog(60, || {
        let mgr = Manager::start().unwrap();
        let l = mgr.lock().unwrap();
        let g = l.acquire().unwrap();
        mgr.queue_named::<String>("mixed", 0)
            .unwrap()
            .put("text".into())
            .unwrap();
        let wrong = mgr.queue_named::<u64>("mixed", 0).unwrap();
        assert!(matches!(wrong.try_get(), Err(ManagerError::Decode(_))));
        // the connection (and the lock held through it) is still there
        let other = std::thread::spawn({
            let l = l.clone();
            move || l.try_acquire().unwrap().is_some()
        });
        assert!(!other.join().unwrap(), "still held");
        g.release().unwrap();
        assert!(!l.is_locked().unwrap());
    });
}

#[test]
fn an_answer_over_the_frame_limit_is_too_large_and_the_connection_goes_on() {
    watchdog(120, || {
        let (mgr, addr) = listening();
        let remote = Manager::connect(&addr, KEY).unwrap();
        let l = remote.list::<Vec<u8>>().unwrap();
        for _ in 0..5 {
            l.push(vec![1u8; 14 << 20]).unwrap();
        }
        match l.to_vec() {
            Err(ManagerError::TooLarge { size, limit }) => {
                assert!(size > limit as u64, "{size} {limit}")
            }
            r => panic!("expected TooLarge, got {:?}", r.map(|v| v.len())),
        }
        assert_eq!(l.len().unwrap(), 5);
        drop(mgr);
    });
}

#[test]
fn a_hundred_silent_peers_do_not_keep_a_client_with_the_key_out() {
    watchdog(120, || {
        let (mgr, addr) = listening();
        let early = Manager::connect(&addr, KEY).unwrap();
        let d = early.dict::<u32, u32>().unwrap();
        // more than the server's connection limit, all silent
        let silent: Vec<_> = (0..300)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect();
        d.insert(1, 1).unwrap();
        let t = Instant::now();
        let late = Manager::connect(&addr, KEY).unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let d2 = late.dict::<u32, u32>().unwrap();
        d2.insert(2, 2).unwrap();
        assert_eq!(d2.get(&2).unwrap(), Some(2));
        assert_eq!(d.get(&1).unwrap(), Some(1));
        drop(silent);
        drop(mgr);
    });
}

/// A man in the middle between a remote client and the server: forwards every byte,
/// except that, once armed, it alters (`TAMPER`) or sends twice (`REPLAY`) the next
/// request frame (a frame after the four of the handshake). `closed` counts the
/// server's sides that closed.
struct Mitm {
    address: String,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    closed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const PASS: u8 = 0;
const TAMPER: u8 = 1;
const REPLAY: u8 = 2;

fn mitm(target: String) -> Mitm {
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    use std::sync::Arc;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = l.local_addr().unwrap().to_string();
    let (mode, closed) = (Arc::new(AtomicU8::new(PASS)), Arc::new(AtomicUsize::new(0)));
    let (m, c) = (mode.clone(), closed.clone());
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = std::net::TcpStream::connect(&target).unwrap();
            let (mut s2, mut c2) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            let c = c.clone();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                c.fetch_add(1, Ordering::SeqCst);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            let m = m.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                loop {
                    let mut len = [0u8; 4];
                    if client.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                    if client.read_exact(&mut frame).is_err() {
                        break;
                    }
                    n += 1;
                    let mode = if n > 4 {
                        m.swap(PASS, Ordering::SeqCst)
                    } else {
                        PASS
                    };
                    if mode == TAMPER {
                        frame[0] ^= 1;
                    }
                    let mut out = len.to_vec();
                    out.extend_from_slice(&frame);
                    if mode == REPLAY {
                        out.extend_from_slice(&len);
                        out.extend_from_slice(&frame);
                    }
                    if server.write_all(&out).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    Mitm {
        address,
        mode,
        closed,
    }
}

#[test]
fn a_tampered_or_replayed_frame_is_refused_and_the_server_serves_the_others() {
    use std::sync::atomic::Ordering;
    watchdog(120, || {
        let (mgr, addr) = listening();
        let direct = Manager::connect(&addr, KEY).unwrap();
        let m = mitm(addr.clone());
        let through = Manager::connect(&m.address, KEY).unwrap();
        let l = through.list_named::<u32>("mac").unwrap();
        l.push(1).unwrap();
        let mine = direct.list_named::<u32>("mac").unwrap();
        assert_eq!(mine.to_vec().unwrap(), [1]);
        // replayed: the server answers the first copy, refuses the second and closes
        let closed = m.closed.load(Ordering::SeqCst);
        m.mode.store(REPLAY, Ordering::SeqCst);
        l.push(2).unwrap();
        wait_until(T, "the server to close the connection", || {
            m.closed.load(Ordering::SeqCst) > closed
        });
        assert_eq!(mine.to_vec().unwrap(), [1, 2], "pushed once, not twice");
        assert!(matches!(l.len(), Err(ManagerError::Disconnected)));
        // altered: refused, nothing done (the client reconnects on its next call)
        let closed = m.closed.load(Ordering::SeqCst);
        m.mode.store(TAMPER, Ordering::SeqCst);
        assert!(matches!(l.push(3), Err(ManagerError::Disconnected)));
        wait_until(T, "the server to close the connection", || {
            m.closed.load(Ordering::SeqCst) > closed
        });
        assert_eq!(
            mine.to_vec().unwrap(),
            [1, 2],
            "the altered push was refused"
        );
        // the others are served all along, and the client can connect again
        assert_eq!(l.len().unwrap(), 2);
        drop(mgr);
    });
}

/// Calls that do not wait (`release`, `set`, `is_set`, `len`, `value`, `is_locked`)
/// against a frozen server: each gives `Timeout` after the manager's call timeout (and
/// within its bound), or, without one, after [`CALL_MARGIN`] — never the 30 s a silent
/// server is given. The connection a timed-out call closed gives back what it held.
#[test]
fn calls_that_do_not_wait_give_up_by_the_call_timeout_or_the_margin_against_a_frozen_server() {
    watchdog(120, || {
        let mgr = Manager::start().unwrap();
        let pid = mgr.pid().unwrap();
        let (l, ev, q) = (
            mgr.lock().unwrap(),
            mgr.event().unwrap(),
            mgr.queue::<u8>().unwrap(),
        );
        let s = mgr.semaphore(1).unwrap();
        let g = l.acquire().unwrap(); // this thread's connection is made
        mgr.set_call_timeout(Some(CALL_TIMEOUT));
        let frozen = freeze(pid);
        times_out("release", || g.release());
        // (each call below opens a new connection: its handshake has the deadline too)
        times_out("set", || ev.set());
        times_out("is_set", || ev.is_set());
        times_out("len", || q.len());
        times_out("value", || s.value());
        times_out("is_locked", || l.is_locked());
        // no call timeout: the margin bounds it
        mgr.set_call_timeout(None);
        let margin = procactor::manager::CALL_MARGIN;
        let t = Instant::now();
        let r = ev.is_set();
        assert!(matches!(r, Err(ManagerError::Timeout)), "{r:?}");
        let took = t.elapsed();
        assert!(took >= margin && took < margin + CALL_BOUND, "{took:?}");
        drop(frozen);
        // the release timed out: its connection was closed, so the server released the
        // lock then
        assert!(l.acquire_timeout(T).unwrap().is_some());
        assert_eq!(q.len().unwrap(), 0);
        assert_eq!(s.value().unwrap(), 1);
    });
}
