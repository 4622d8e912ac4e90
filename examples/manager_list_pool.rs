//! Seed 001, "Manager类": a `Manager().list()` shared with a `Pool`. Every task prints its
//! number and appends it to the shared list; the parent keeps submitting tasks with
//! `apply_async` while the list is empty and stops as soon as it is not, then closes and
//! joins the pool.
//!
//! Prints the task numbers `0`, `1`, … as the workers run them (how many depends on how
//! fast the first worker answers: tasks already submitted still run, as in Python), then
//! how many tasks the parent submitted and the shared list (`lists = [0, 1, …]`, in the
//! order the workers appended).
//!
//! A Pool task's arguments travel through shared memory, where a proxy cannot go: the
//! proxy is given to each worker once, through the pool's initializer, which keeps it in
//! a `static` (the seed's Linux version uses a module global in the same way).
//!
//! Run: `cargo run --example manager_list_pool`

use procactor::{Manager, Pool, SharedList};
use std::sync::OnceLock;

/// The worker's proxy of the shared list, set by [`init`].
static LISTS: OnceLock<SharedList<u64>> = OnceLock::new();

fn init(lists: SharedList<u64>) {
    let _ = LISTS.set(lists);
}

fn test(i: u64) {
    println!("{i}");
    LISTS
        .get()
        .expect("set by the initializer")
        .push(i)
        .expect("append");
}

#[procactor::main]
fn main() {
    let manager = Manager::start().expect("manager");
    let lists = manager.list::<u64>().expect("list");
    let pool = Pool::builder()
        .initializer(init, lists.clone())
        .build()
        .expect("pool");
    let mut submitted = 0u64;
    for i in 0..10_000_000u64 {
        // while the shared list is empty, keep adding tasks to the pool
        if lists.is_empty().expect("len") {
            pool.apply_async(test, i).expect("apply_async");
            submitted += 1;
        } else {
            break;
        }
    }
    pool.close();
    pool.join().expect("join");

    let all = lists.to_vec().expect("to_vec");
    println!("submitted {submitted} task(s) before the shared list became non-empty");
    if all.len() <= 20 {
        println!("lists = {all:?}");
    } else {
        println!("lists = {:?} … ({} items)", &all[..20], all.len());
    }
}
