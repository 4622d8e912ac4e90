use procactor::{process_actor, Actor, ActorError, Context};
use serde::{Deserialize, Serialize};

#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Doubler;

impl Actor for Doubler {
    type Msg = u64;
    fn handle(&mut self, n: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok(n * 2)
    }
}

fn main() {}
