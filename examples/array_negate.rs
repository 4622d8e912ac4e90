//! Seed 001, "Array": a child negates every element of a shared `Array`.
//!
//! Prints `[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]`.
use procactor::{Array, Process};

fn test(a: Array<i32>) {
    for i in 0..a.len() {
        if let Some(x) = a.get(i) {
            a.set(i, -x).unwrap(); // Python: a[i] = -a[i]
        }
    }
}

#[procactor::main]
fn main() {
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    let mut p = Process::new(test, arr.clone()).start().unwrap();
    p.join().unwrap();
    println!("{:?}", arr.to_vec());
}
