// A blocking `get` waits for an item: its error has no `Empty` (that is `try_get`'s).
use procactor::{GetError, Queue};

fn main() {
    let q: Queue<u8> = Queue::new().unwrap();
    match q.get() {
        Err(GetError::Empty) => {}
        _ => {}
    }
}
