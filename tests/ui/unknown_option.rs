use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor(mailbx = pipe)]
#[derive(Serialize, Deserialize)]
struct Echo;

fn main() {}
