//! Every shape of struct that can be a process actor, with each mailbox.
use procactor::{process_actor, Actor, ActorError, Context, ProcessActor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A queue actor (the default mailbox).
#[process_actor]
#[derive(Serialize, Deserialize)]
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

/// A pipe actor: answers each call.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Doubler;

impl Actor for Doubler {
    type Msg = u64;
    type Reply = u64;
    fn handle(&mut self, n: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok(n * 2)
    }
}

/// The default, written out; a tuple struct.
#[process_actor(mailbox = queue)]
#[derive(Serialize, Deserialize)]
struct Pair(String, u32);

impl Actor for Pair {
    type Msg = String;
    type Reply = ();
    fn handle(&mut self, s: String, _: &mut Context<Self>) -> Result<(), ActorError> {
        self.0 = s;
        self.1 += 1;
        Ok(())
    }
}

/// Generic over a message type. (`serde(bound)` replaces the `T: Deserialize<'de>` that
/// serde's derive would add, which is ambiguous next to `T: DeserializeOwned`.)
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: procactor::Message")]
struct Last<T: procactor::Message> {
    last: Option<T>,
}

impl<T: procactor::Message> Actor for Last<T> {
    type Msg = T;
    type Reply = Option<T>;
    fn handle(&mut self, m: T, _: &mut Context<Self>) -> Result<Option<T>, ActorError> {
        Ok(self.last.replace(m))
    }
}

/// Generic, bounded by the four traits in a where clause, plus a const parameter.
#[process_actor]
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Window<T, const N: usize>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    items: Vec<T>,
}

impl<T, const N: usize> Actor for Window<T, N>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Msg = T;
    type Reply = ();
    fn handle(&mut self, m: T, _: &mut Context<Self>) -> Result<(), ActorError> {
        if self.items.len() == N {
            self.items.remove(0);
        }
        self.items.push(m);
        Ok(())
    }
}

fn is_pipe<A: ProcessActor<Mailbox = procactor::PipeMailbox>>() {}
fn is_queue<A: ProcessActor<Mailbox = procactor::QueueMailbox>>() {}

fn main() {
    is_queue::<Counter>();
    is_queue::<Pair>();
    is_queue::<Window<String, 3>>();
    is_pipe::<Doubler>();
    is_pipe::<Last<u8>>();
    assert!(Counter::NAME.ends_with("::Counter"), "{}", Counter::NAME);
    assert!(Last::<u8>::NAME.ends_with("::Last"), "{}", Last::<u8>::NAME);
    let registered = procactor::registered_actors();
    for name in [Counter::NAME, Doubler::NAME, Pair::NAME] {
        assert!(registered.contains(&name), "{name} not in {registered:?}");
    }
    assert!(
        !registered.contains(&Last::<u8>::NAME),
        "a generic actor is not registered"
    );
}
