//! Seed 003, "multiprocessing.Manager()": two processes write into one `Manager().dict()`;
//! the parent prints the dict once both have finished.
//!
//! A plain variable would not be shared (each process has its own copy); the dict lives
//! in the manager's server process, and each child reaches it through the proxy passed
//! in its arguments.
//!
//! Prints `{"Darr_en1": 22, "Darr_en2": 44}` (the seed's `{'Darr_en1': 22, 'Darr_en2': 44}`).
//!
//! Run: `cargo run --example manager_dict`

use procactor::{Manager, Process, SharedDict};
use std::collections::BTreeMap;

fn add_data((p_dict, key, value): (SharedDict<String, i64>, String, i64)) {
    p_dict.insert(key, value).expect("insert");
}

#[procactor::main]
fn main() {
    let manager = Manager::start().expect("manager");
    let process_dict = manager.dict::<String, i64>().expect("dict");
    let mut first_process = Process::new(add_data, (process_dict.clone(), "Darr_en1".into(), 22))
        .start()
        .expect("start");
    let mut second_process = Process::new(add_data, (process_dict.clone(), "Darr_en2".into(), 44))
        .start()
        .expect("start");
    first_process.join().expect("join");
    second_process.join().expect("join");

    let items: BTreeMap<String, i64> = process_dict.items().expect("items").into_iter().collect();
    println!("{items:?}");
}
