use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor]
#[derive(Serialize, Deserialize)]
enum Light {
    On,
    Off,
}

fn main() {
    let _ = Light::On;
    let _ = Light::Off;
}
