use procactor::process_actor;
use serde::{Deserialize, Serialize};

#[process_actor]
#[derive(Serialize, Deserialize)]
struct Holder<T: Clone, U>
where
    U: Serialize + Send,
{
    held: Vec<T>,
    other: Option<U>,
}

fn main() {}
