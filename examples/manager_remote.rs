//! A manager reached over TCP (Python's `BaseManager(address=..., authkey=...)` server
//! and a client that `connect()`s to it): the server is a listening manager started by
//! this process, the client a child process that knows only the address and the key.
//!
//! The client connects with `Manager::connect(addr, key)`, finds the dict called
//! `"results"` by its name and writes into it; the parent, on the server side, reads what
//! the client wrote. Then a client with a wrong key is refused by the handshake (HMAC
//! challenge/response in both directions: the key itself never crosses the wire).
//!
//! Prints the address the server listens on, the client's lines, the dict as the server
//! sees it (`{"client-pid": …, "square-0": 0, …, "square-4": 16}`), and the refusal
//! (`wrong key refused: …`).
//!
//! Run: `cargo run --example manager_remote`

use procactor::{Manager, ManagerError, Process};

const AUTHKEY: &[u8] = b"procactor example key";

/// The client: connects to the server with the key and writes into the named dict.
fn client((address, key): (String, Vec<u8>)) {
    let remote = Manager::connect(&address, &key).expect("connect");
    let results = remote.dict_named::<String, u64>("results").expect("dict");
    let pid = u64::from(std::process::id());
    results.insert("client-pid".into(), pid).expect("insert");
    for i in 0..5u64 {
        results
            .insert(format!("square-{i}"), i * i)
            .expect("insert");
    }
    println!(
        "client (pid {pid}): connected to {address}, wrote {} entries",
        results.len().expect("len")
    );
}

#[procactor::main]
fn main() {
    // the server: listens on a free loopback port, and only for clients with the key
    let manager = Manager::builder()
        .listen("127.0.0.1:0")
        .authkey(AUTHKEY)
        .start()
        .expect("manager");
    let address = manager
        .address()
        .expect("a listening manager has an address");
    println!("server: listening on {address}");

    let mut p = Process::new(client, (address.clone(), AUTHKEY.to_vec()))
        .start()
        .expect("start");
    p.join().expect("join");

    let results = manager.dict_named::<String, u64>("results").expect("dict");
    let items: std::collections::BTreeMap<_, _> =
        results.items().expect("items").into_iter().collect();
    println!("server: results = {items:?}");

    match Manager::connect(&address, b"not the key") {
        Err(ManagerError::Auth(why)) => println!("wrong key refused: {why}"),
        Err(e) => panic!("expected an authentication error, got {e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }
    manager.shutdown().expect("shutdown");
}
