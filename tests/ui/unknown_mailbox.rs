use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor(mailbox = channel)]
#[derive(Serialize, Deserialize)]
struct Echo;

fn main() {}
