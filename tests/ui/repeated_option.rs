use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor(mailbox = queue, mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Echo;

fn main() {}
