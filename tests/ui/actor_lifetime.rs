use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor]
#[derive(Serialize, Deserialize)]
struct Borrower<'a> {
    name: &'a str,
}

fn main() {}
