use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor]
#[derive(Serialize, Deserialize)]
struct Counter {
    total: u64,
}

fn main() {
    let _ = Counter { total: 0 };
}
