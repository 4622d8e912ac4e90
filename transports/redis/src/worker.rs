//! Supervised workers whose mailbox is a Redis queue: [`spawn_workers`] starts `n`
//! [`RedisWorker`] actors under a [`Supervisor`]; each takes items from a
//! [`RedisJoinableQueue`] shared by every host, runs a handler on it and marks it done.
//! A worker that crashes (a panic, an `Err` from the handler, a signal) is restarted by
//! its supervisor's strategy, and the item it held is taken over after the queue's
//! visibility timeout, by it or by another worker.

use crate::queue::RedisJoinableQueue;
use procactor_core::actor::QueueMailbox;
use procactor_core::pool::FnRef;
use procactor_core::{
    runtime, Actor, ActorError, Context, GetError, Message, PoolRef, ProcessActor, PutError,
    Supervisor, SupervisorError,
};
use procactor_transports::target;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};

/// What a [`RedisWorker`] calls for each item. An `Err` crashes the worker (the item is
/// not marked done, so it is delivered again).
pub type Handler<T> = fn(T) -> Result<(), ActorError>;

/// The message a [`RedisWorker`] sends itself to take its next turn at the Redis queue
/// (so that a stop request from its supervisor is handled between turns).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Turn;

/// How long one turn reads from Redis before yielding to the local mailbox.
const TURN: Duration = Duration::from_millis(100);

/// A queue actor serving a [`RedisJoinableQueue`] (see the [module docs](self)).
///
/// Its state travels to its process through the supervisor's private start channel; it
/// carries the handler as a function reference of this binary, resolved there only
/// after the image check every procactor child makes.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisWorker<T> {
    queue: RedisJoinableQueue<T>,
    handler: FnRef,
    #[serde(skip)]
    resolved: Option<Handler<T>>,
    /// Items handled by this incarnation.
    #[serde(skip)]
    handled: u64,
}

impl<T> fmt::Debug for RedisWorker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWorker")
            .field("queue", &self.queue)
            .field("handler", &self.handler.1)
            .field("handled", &self.handled)
            .finish()
    }
}

impl<T: Message> RedisWorker<T> {
    /// A worker taking items from `queue` and calling `handler` on each.
    pub fn new(queue: RedisJoinableQueue<T>, handler: Handler<T>) -> Self {
        RedisWorker {
            queue,
            handler: FnRef::of(handler),
            resolved: Some(handler),
            handled: 0,
        }
    }

    fn resolve(&mut self) -> Result<Handler<T>, ActorError> {
        if let Some(h) = self.resolved {
            return Ok(h);
        }
        let proof = runtime::image_proof().map_err(ActorError::new)?;
        let h: Handler<T> = target::resolve_checked(&self.handler.target(), proof)
            .ok_or_else(|| ActorError::new("a redis worker handler of an unexpected type"))?;
        self.resolved = Some(h);
        Ok(h)
    }
}

// Not offered by rustc as "the trait `Actor` is implemented for `RedisWorker<T>`" when a
// user's struct lacks its `impl Actor` (tests/ui/actor_without_impl.rs).
#[diagnostic::do_not_recommend]
impl<T: Message> Actor for RedisWorker<T> {
    type Msg = Turn;
    type Reply = ();

    fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.resolve()?;
        next_turn(ctx)
    }

    fn handle(&mut self, _: Turn, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        let handler = self.resolve()?;
        let end = Instant::now() + TURN;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.queue.get_timeout(left) {
                Ok(item) => {
                    handler(item)?;
                    self.queue.task_done().map_err(|e| {
                        ActorError::new(format!("task_done: {e} ({:?})", self.queue.last_error()))
                    })?;
                    self.handled += 1;
                }
                Err(GetError::Empty) => break,
                Err(GetError::Decode(e)) => tracing::error!(error = %e, "redis worker: dropped"),
                Err(e) => {
                    return Err(ActorError::new(format!(
                        "redis queue: {e} ({:?})",
                        self.queue.last_error()
                    )))
                }
            }
        }
        next_turn(ctx)
    }
}

/// Queues this worker's next turn; a closed mailbox (the supervisor is stopping it) ends
/// the worker normally.
fn next_turn<T: Message>(ctx: &mut Context<RedisWorker<T>>) -> Result<(), ActorError> {
    match ctx.myself().send(Turn) {
        Ok(()) => Ok(()),
        Err(PutError::Closed(_)) => {
            ctx.stop();
            Ok(())
        }
        Err(e) => Err(ActorError::new(format!("next turn: {e}"))),
    }
}

impl<T: Message> ProcessActor for RedisWorker<T> {
    const NAME: &'static str = "procactor_redis::RedisWorker";
    type Mailbox = QueueMailbox;
}

/// Starts `n` [`RedisWorker`]s under `sup`, serving `queue` with `handler`.
///
/// # Errors
///
/// As [`Supervisor::spawn_pool`].
///
/// # Examples
///
/// ```no_run
/// use procactor_redis::{spawn_workers, ConnectRedis};
/// use procactor_core::{ActorError, JoinableQueue, Supervisor};
///
/// fn work(x: u64) -> Result<(), ActorError> {
///     println!("{x}");
///     Ok(())
/// }
///
/// fn main() {
///     procactor_core::init();
///     let q = JoinableQueue::<u64>::connect_redis("redis://127.0.0.1:6379/", "work").unwrap();
///     let sup = Supervisor::builder().build().unwrap();
///     let _workers = spawn_workers(&sup, 2, &q, work).unwrap();
///     q.put(42).unwrap();
///     q.join();
/// }
/// ```
pub fn spawn_workers<T: Message>(
    sup: &Supervisor,
    n: usize,
    queue: &RedisJoinableQueue<T>,
    handler: Handler<T>,
) -> Result<PoolRef<RedisWorker<T>>, SupervisorError> {
    sup.spawn_pool(n, || RedisWorker::new(queue.clone(), handler))
}
