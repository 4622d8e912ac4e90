//! Manager: shared dict, list and namespace, from children and over authenticated TCP.
procactor::test_support!();

mod common;
use common::{wait_until, watchdog};
use procactor::{Manager, ManagerError, Process, SharedDict, SharedList};
use proptest::prelude::{proptest, ProptestConfig};
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
            assert!(p.join_timeout(T).unwrap().unwrap().success());
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
        assert!(p.join_timeout(T).unwrap().unwrap().success());
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
        // an authenticated client that sends a garbage frame gets a refusal and goes on
        let mut raw = procactor::connection::Client::connect(&addr, KEY).unwrap();
        raw.send_bytes(b"\xff\x00 not a request").unwrap();
        let answer = raw.recv_bytes(1 << 20).unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("undecodable request"));
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

/// Applies `ops` to the shared dict (keys prefixed by the process number, so that each
/// process owns its keys) and list; returns what each op answered.
/// What each process of the proptest gets: the dict, the list, its number, its ops.
type OpsArgs = (
    SharedDict<(u32, u8), u32>,
    SharedList<(u32, u32)>,
    u32,
    Vec<Op>,
);

fn run_ops((d, l, me, ops): OpsArgs) -> Vec<Option<u32>> {
    ops.iter()
        .map(|op| match op {
            Op::Insert(k, v) => d.insert((me, *k), *v).unwrap(),
            Op::Remove(k) => d.remove(&(me, *k)).unwrap(),
            Op::Push(v) => {
                l.push((me, *v)).unwrap();
                None
            }
            Op::Get(k) => d.get(&(me, *k)).unwrap(),
        })
        .collect()
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..6, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u8..6).prop_map(Op::Remove),
        any::<u32>().prop_map(Op::Push),
        (0u8..6).prop_map(Op::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn operations_from_several_processes_match_a_local_model(
        per_process in proptest::collection::vec(
            proptest::collection::vec(op_strategy(), 0..30), 1..4),
    ) {
        let per = per_process.clone();
        watchdog(120, move || {
            let mgr = Manager::start().unwrap();
            let d = mgr.dict::<(u32, u8), u32>().unwrap();
            let l = mgr.list::<(u32, u32)>().unwrap();
            let mut ps: Vec<_> = per
                .iter()
                .enumerate()
                .map(|(me, ops)| {
                    Process::new(run_ops, (d.clone(), l.clone(), me as u32, ops.clone()))
                        .start()
                        .unwrap()
                })
                .collect();
            let mut model: BTreeMap<(u32, u8), u32> = BTreeMap::new();
            let mut pushed: Vec<Vec<u32>> = vec![Vec::new(); per.len()];
            for (me, (ops, p)) in per.iter().zip(ps.iter_mut()).enumerate() {
                let answers = p.result().unwrap();
                // the process's own keys: each answer is what a local map answers
                for (op, got) in ops.iter().zip(answers) {
                    let want = match op {
                        Op::Insert(k, v) => model.insert((me as u32, *k), *v),
                        Op::Remove(k) => model.remove(&(me as u32, *k)),
                        Op::Push(v) => {
                            pushed[me].push(*v);
                            None
                        }
                        Op::Get(k) => model.get(&(me as u32, *k)).copied(),
                    };
                    assert_eq!(got, want, "{op:?}");
                }
            }
            assert_eq!(d.items().unwrap().into_iter().collect::<BTreeMap<_, _>>(), model);
            // the list is an interleaving that keeps each process's order
            let all = l.to_vec().unwrap();
            for (me, want) in pushed.iter().enumerate() {
                let mine: Vec<u32> = all
                    .iter()
                    .filter(|(p, _)| *p == me as u32)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(&mine, want);
            }
            assert_eq!(all.len(), pushed.iter().map(Vec::len).sum::<usize>());
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
