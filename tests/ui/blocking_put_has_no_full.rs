// A blocking `put` waits for room: its error has no `Full` (that is `try_put`'s), and a
// timed get's error is not a blocking get's.
use procactor::{GetError, PutError, Queue};
use std::time::Duration;

fn main() {
    let q: Queue<u8> = Queue::new().unwrap();
    if let Err(PutError::Full(_)) = q.put(1) {}
    let _: Result<u8, GetError> = q.get_timeout(Duration::from_millis(1));
}
