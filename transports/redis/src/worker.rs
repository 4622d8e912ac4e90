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
    runtime, Actor, ActorError, Context, GetTimeoutError, Message, PoolRef, ProcessActor, PutError,
    SpawnError, Supervisor, SupervisorError,
};
use procactor_transports::target::{self, SameImage, Target, TargetRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};

/// What a [`RedisWorker`] calls for each item, in its simplest form. An `Err` crashes
/// the worker (the item is not marked done, so it is delivered again).
///
/// Any [`Target`] returning `Result<(), ActorError>` is accepted as a handler: a function
/// item, a closure capturing nothing or a function pointer of 0 to 8 arguments, the
/// queue's items being its arguments as one value (a tuple for two or more: a handler
/// `fn(String, u32) -> Result<(), ActorError>` serves a queue of `(String, u32)`).
pub type Handler<T> = fn(T) -> Result<(), ActorError>;

/// A handler bound in the worker's process.
type Bound<T> = Box<dyn Fn(T) -> Result<(), ActorError> + Send + Sync>;
/// The non-generic signature of every handler binder.
type BindFn<T> = fn(&TargetRef, &SameImage) -> Option<Bound<T>>;

fn bind<T: Message, S: 'static, F>(t: &TargetRef, proof: &SameImage) -> Option<Bound<T>>
where
    F: Target<T, S, Output = Result<(), ActorError>> + Send + Sync,
{
    let f = target::resolve_target::<F, T, S>(t, proof).ok()?;
    Some(Box::new(move |item| f.call(item)))
}

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
    /// The binder (`bind::<T, S, F>`) and the handler, as function references.
    binder: FnRef,
    handler: FnRef,
    #[serde(skip)]
    resolved: Option<Bound<T>>,
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
    /// A worker taking items from `queue` and calling `handler` on each (any [`Target`]
    /// taking the item as its arguments, see [`Handler`]).
    ///
    /// # Errors
    ///
    /// `handler` is a closure capturing a pointer-sized value (one capturing anything
    /// else does not build).
    pub fn try_new<S: 'static, F>(
        queue: RedisJoinableQueue<T>,
        handler: F,
    ) -> Result<Self, target::NotATarget>
    where
        F: Target<T, S, Output = Result<(), ActorError>> + Send + Sync,
    {
        let t = target::describe_target(handler)?;
        let binder: BindFn<T> = bind::<T, S, F>;
        Ok(RedisWorker {
            queue,
            binder: FnRef::of(binder),
            handler: FnRef::from(t),
            resolved: None,
            handled: 0,
        })
    }

    /// As [`try_new`](Self::try_new), for a plain function (which cannot be refused).
    pub fn new(queue: RedisJoinableQueue<T>, handler: Handler<T>) -> Self {
        let binder: BindFn<T> = bind::<T, fn(T) -> Result<(), ActorError>, Handler<T>>;
        let t = target::describe(handler);
        RedisWorker {
            queue,
            binder: FnRef::of(binder),
            handler: FnRef::from(t),
            resolved: None,
            handled: 0,
        }
    }

    fn resolve(&mut self) -> Result<&Bound<T>, ActorError> {
        if self.resolved.is_none() {
            let proof = runtime::image_proof().map_err(ActorError::new)?;
            let unexpected = || ActorError::new("a redis worker handler of an unexpected type");
            let binder: BindFn<T> = target::resolve_checked(&self.binder.target(), proof)
                .map_err(|e| ActorError::new(format!("a redis worker handler: {e}")))?;
            self.resolved = Some(binder(&self.handler.target(), proof).ok_or_else(unexpected)?);
        }
        self.resolved
            .as_ref()
            .ok_or_else(|| ActorError::new("a redis worker handler not bound"))
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
        self.resolve()?;
        let end = Instant::now() + TURN;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.queue.get_timeout(left) {
                Ok(item) => {
                    if let Some(handler) = &self.resolved {
                        handler(item)?;
                    }
                    self.queue.task_done().map_err(|e| {
                        ActorError::new(format!("task_done: {e} ({:?})", self.queue.last_error()))
                    })?;
                    self.handled += 1;
                }
                Err(GetTimeoutError::Timeout) => break,
                Err(GetTimeoutError::Decode(e)) => {
                    tracing::error!(error = %e, "redis worker: dropped")
                }
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

/// Starts `n` [`RedisWorker`]s under `sup`, serving `queue` with `handler` (any
/// [`Target`] taking the item as its arguments, see [`Handler`]).
///
/// # Errors
///
/// As [`Supervisor::spawn_pool`], and [`SupervisorError::Spawn`] for a closure capturing
/// a pointer-sized value.
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
pub fn spawn_workers<T: Message, S: 'static, F>(
    sup: &Supervisor,
    n: usize,
    queue: &RedisJoinableQueue<T>,
    handler: F,
) -> Result<PoolRef<RedisWorker<T>>, SupervisorError>
where
    F: Target<T, S, Output = Result<(), ActorError>> + Send + Sync,
{
    let first = RedisWorker::try_new(queue.clone(), handler)
        .map_err(|e| SupervisorError::Spawn(SpawnError::NotATarget(e.0)))?;
    let (binder, handler) = (first.binder, first.handler);
    sup.spawn_pool(n, || RedisWorker {
        queue: queue.clone(),
        binder: binder.clone(),
        handler: handler.clone(),
        resolved: None,
        handled: 0,
    })
}
