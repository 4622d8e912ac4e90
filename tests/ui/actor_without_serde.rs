use procactor::{process_actor, Actor, ActorError, Context};

#[process_actor]
struct Counter {
    total: u64,
}

impl Actor for Counter {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, n: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        self.total += n;
        Ok(())
    }
}

fn main() {}
