//! A user crate that renames the facade (`pa = { package = "procactor", .. }`): it
//! compiles only if `#[process_actor]` and `#[main]` find the facade under the name
//! this crate gives it (they used to write `::procactor`, which does not resolve here).
//! Its unit test checks that the generated code runs: the actor registered its name.

use pa::{Actor, ActorError, Context};
use serde::{Deserialize, Serialize};

/// A queue-mailbox actor declared through the renamed facade.
#[pa::process_actor]
#[derive(Debug, Serialize, Deserialize)]
pub struct Counter {
    /// The running total.
    pub total: u64,
}

impl Actor for Counter {
    type Msg = u64;
    type Reply = u64;

    fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<u64, ActorError> {
        self.total += n;
        Ok(self.total)
    }
}

/// A pipe-mailbox actor declared through the renamed facade.
#[pa::process_actor(mailbox = pipe)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Echo;

impl Actor for Echo {
    type Msg = String;
    type Reply = String;

    fn handle(&mut self, s: String, _ctx: &mut Context<Self>) -> Result<String, ActorError> {
        Ok(s)
    }
}

/// `#[main]` through the renamed facade: it starts with `pa::init()`.
#[pa::main]
pub fn main_like() -> usize {
    pa::registered_actors().len()
}

#[cfg(test)]
mod tests {
    pa::test_support!();

    use super::*;
    use pa::ProcessActor;

    #[test]
    fn the_generated_code_uses_the_renamed_facade() {
        let names = pa::registered_actors();
        assert!(names.iter().any(|n| n.ends_with("::Counter")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("::Echo")), "{names:?}");
        assert!(<Counter as ProcessActor>::NAME.ends_with("::Counter"));
        assert!(<Echo as ProcessActor>::NAME.ends_with("::Echo"));
        assert!(main_like() >= 2);
    }
}
