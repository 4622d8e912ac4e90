//! Seed 000, "pipe": a child sends `[42, None, 'hello']` through a Pipe; the parent
//! prints it after joining the child.
//!
//! ```text
//! $ cargo run --example pipe_send
//! [42, None, 'hello']
//! ```
//!
//! Python's list of mixed values becomes a `Vec` of a small enum; `Display` prints it the
//! way Python's `print` does.

use procactor::{Connection, Pipe, Process};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The Python values this program sends.
#[derive(Debug, Serialize, Deserialize)]
enum PyValue {
    Int(i64),
    None,
    Str(String),
}

impl fmt::Display for PyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::Int(i) => write!(f, "{i}"),
            PyValue::None => f.write_str("None"),
            PyValue::Str(s) => write!(f, "'{s}'"),
        }
    }
}

/// Python's `repr` of a list.
struct PyList<'a>(&'a [PyValue]);

impl fmt::Display for PyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

/// `def f(conn): conn.send([42, None, 'hello']); conn.close()`
fn f(mut conn: Connection<Vec<PyValue>, Vec<PyValue>>) {
    conn.send(&vec![
        PyValue::Int(42),
        PyValue::None,
        PyValue::Str("hello".into()),
    ])
    .expect("send");
    conn.close();
}

#[procactor::main]
fn main() {
    let (parent_conn, child_conn) = Pipe::<Vec<PyValue>>::new().expect("pipe");
    let mut p = Process::new(f, child_conn).start().expect("start");
    p.join().expect("join");
    let received = parent_conn.recv().expect("recv");
    println!("{}", PyList(&received)); // prints "[42, None, 'hello']"
}
