//! Seed 000, "Value + Array": two children in turn increment a shared `Value` and
//! multiply a shared `Array` by 10.
//!
//! Prints:
//! ```text
//! 2
//! [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
//! 3
//! [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
//! ```
use procactor::{Array, Process, Value};

fn f((n, a): (Value<i32>, Array<i32>)) {
    n.set(n.get().unwrap() + 1).unwrap(); // Python: n.value = n.value + 1
    for x in a.lock().unwrap().iter_mut() {
        *x *= 10; // Python: a[i] = a[i] * 10
    }
}

#[procactor::main]
fn main() {
    let num = Value::new(1i32).unwrap();
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();

    let mut p = Process::new(f, (num.clone(), arr.clone())).start().unwrap();
    p.join().unwrap();
    println!("{}", num.get().unwrap());
    println!("{:?}", arr.to_vec());

    let mut p2 = Process::new(f, (num.clone(), arr.clone())).start().unwrap();
    p2.join().unwrap();
    println!("{}", num.get().unwrap());
    println!("{:?}", arr.to_vec());
}
