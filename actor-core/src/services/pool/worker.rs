//! The worker process: binds the functions it is sent, runs chunks, reports results.

#[cfg(feature = "test-hooks")]
use super::fault;
use super::wire::{
    ChunkOut, FnRef, TaskMsg, WorkerBoot, WorkerResult, CELL_CHUNK, CELL_ERRORS, CELL_READY,
    CELL_SENT, CELL_TASKS, CELL_TASK_TIME,
};
use crate::codec::{self, Encoded};
use crate::runtime;
use crate::shared::RawArray;
use crate::stats::{record, HistogramWords};
use crate::{Bytes, GetError, Message};
use procactor_transports::frame::{FrameReader, Wait};
use procactor_transports::observe::monotonic_ns;
use procactor_transports::target::{self, SameImage, Target, TargetRef};
use procactor_transports::{AsFd, OwnedFd};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

/// A bound function in a worker: decodes a chunk (bytes and the descriptors of its
/// handles), runs it, encodes its results; with them, how many items it ran and how
/// many of those panicked.
pub(super) type Runner = Box<dyn Fn(&[u8], Vec<OwnedFd>) -> Result<(Vec<u8>, Ran), String>>;

/// What one chunk ran: items, and items whose function panicked.
#[derive(Clone, Copy)]
pub(super) struct Ran {
    pub(super) tasks: u64,
    pub(super) panicked: u64,
}
/// The non-generic signature of every binder.
pub(super) type BindFn = fn(&TargetRef, &SameImage) -> Option<Runner>;
/// The non-generic signature of every initializer trampoline.
pub(super) type InitFn = fn(&TargetRef, &SameImage, Encoded) -> Result<(), String>;
pub(super) fn bind<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
    target: &TargetRef,
    proof: &SameImage,
) -> Option<Runner> {
    let f = target::resolve_target::<F, A, S>(target, proof).ok()?;
    Some(Box::new(move |bytes: &[u8], fds: Vec<OwnedFd>| {
        let args: Vec<A> =
            codec::decode(bytes, fds).map_err(|e| format!("decoding the arguments: {e}"))?;
        let tasks = args.len() as u64;
        let mut panicked = 0u64;
        let mut ok = Vec::with_capacity(args.len());
        let mut mixed: Option<Vec<Result<R, String>>> = None;
        for a in args {
            // (the panic goes back as the item's result: not printed, see the module)
            let r = runtime::quietly(|| std::panic::catch_unwind(AssertUnwindSafe(|| f.call(a))))
                .map_err(|p| runtime::take_panic_message(&*p));
            match (&mut mixed, r) {
                (None, Ok(v)) => ok.push(v),
                (None, Err(m)) => {
                    panicked += 1;
                    let mut all: Vec<Result<R, String>> = ok.drain(..).map(Ok).collect();
                    all.push(Err(m));
                    mixed = Some(all);
                }
                (Some(all), r) => {
                    panicked += u64::from(r.is_err());
                    all.push(r);
                }
            }
        }
        let out: ChunkOut<R> = match mixed {
            None => Ok(ok),
            Some(all) => Err(all),
        };
        let mut buf = Vec::new();
        codec::encode(&out, &mut buf, None).map_err(|e| format!("encoding the results: {e}"))?;
        Ok((buf, Ran { tasks, panicked }))
    }))
}

pub(super) fn init_trampoline<A: Message, S: 'static, F: Target<A, S, Output = ()>>(
    target: &TargetRef,
    proof: &SameImage,
    args: Encoded,
) -> Result<(), String> {
    let f = target::resolve_target::<F, A, S>(target, proof)
        .map_err(|e| format!("initializer: {e}"))?;
    let a: A = args.decode().map_err(|e| e.to_string())?;
    f.call(a);
    Ok(())
}
/// The target of every worker process.
pub(super) fn worker_main(boot: WorkerBoot) {
    let WorkerBoot {
        tasks,
        results,
        slot,
        cell,
        sock,
        fns,
        init,
        maxtasks,
    } = boot;
    tasks.close(); // the pool is the one sender of tasks
    let proof = match runtime::image_proof() {
        Ok(p) => p,
        Err(e) => panic!("pool worker: {e}"),
    };
    if let Some((tramp, target, args)) = init {
        let t: InitFn = target::resolve_checked(&tramp.target(), proof)
            .unwrap_or_else(|e| panic!("pool worker: initializer trampoline: {e}"));
        if let Err(e) = t(&target.target(), proof, args) {
            panic!("pool worker: initializer failed: {e}");
        }
    }
    if let Some(w) = cell.atomic_u64(CELL_READY) {
        w.store(1, Ordering::Release);
    }
    let mut runners: HashMap<u32, Runner> = HashMap::new();
    let register = |runners: &mut HashMap<u32, Runner>, id: u32, b: &FnRef, t: &FnRef| {
        let binder: Option<BindFn> = target::resolve_checked(&b.target(), proof).ok();
        if let Some(r) = binder.and_then(|binder| binder(&t.target(), proof)) {
            runners.insert(id, r);
        }
    };
    for (id, b, t) in &fns {
        register(&mut runners, *id, b, t);
    }
    let chunk_word = cell.atomic_u64(CELL_CHUNK);
    let stats = Stats::of(&cell);
    let mut reader = FrameReader::new();
    let mut done = 0u64;
    loop {
        let (chunk, f, args, fds) = match tasks.get() {
            Ok(TaskMsg::Register(id, b, t)) => {
                register(&mut runners, id, &b, &t);
                continue;
            }
            Ok(TaskMsg::Run(chunk, f, args)) => (chunk, f, Ok(args), Vec::new()),
            Ok(TaskMsg::RunSocket(chunk, f)) => {
                match reader.fill(sock.0.as_fd(), Wait::Forever, None) {
                    Ok(_) => {
                        let args = Bytes::from(reader.payload());
                        (chunk, f, Ok(args), reader.consume())
                    }
                    Err(e) => (
                        chunk,
                        f,
                        Err(format!("reading the task's arguments from the pool: {e}")),
                        Vec::new(),
                    ),
                }
            }
            Err(GetError::Disconnected) => return, // the pool is gone or closed
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "pool worker: undecodable task skipped");
                continue;
            }
            Err(GetError::Broken) => panic!("pool worker: the task ring is broken"),
        };
        if let Some(w) = chunk_word {
            w.store(chunk, Ordering::Release);
        }
        let began = stats.as_ref().map(|_| monotonic_ns());
        let out = args.and_then(|args| match runners.get(&f) {
            Some(run) => run(&args, fds),
            None => Err(format!("unknown function {f} in the worker")),
        });
        if let (Some(s), Some(began)) = (&stats, began) {
            s.ran(&out, monotonic_ns().saturating_sub(began));
        }
        let out = out.map(|(bytes, _)| Bytes::from(bytes));
        if let Some(w) = cell.atomic_u64(CELL_SENT) {
            w.fetch_add(1, Ordering::AcqRel);
        }
        #[cfg(feature = "test-hooks")]
        let msg = if fault::RESULTS.hit() {
            WorkerResult::Garbage(chunk)
        } else {
            WorkerResult::Done(chunk, slot, out)
        };
        #[cfg(not(feature = "test-hooks"))]
        let msg = WorkerResult::Done(chunk, slot, out);
        if let Err(e) = results.put(msg) {
            panic!("pool worker: the result ring refused a result: {e}");
        }
        if let Some(w) = chunk_word {
            w.store(0, Ordering::Release);
        }
        done += 1;
        if maxtasks != 0 && done >= maxtasks {
            return; // recycled: the pool starts a fresh worker on this ring
        }
    }
}

/// A worker's statistics words in its cell (it is their one writer while it runs; see
/// `wire::CELL_WORDS`). Two clock reads per chunk (~35 ns each here, against ~2.7 µs for
/// the quickest `apply_async` round trip): every chunk is timed.
struct Stats<'a> {
    tasks: &'a std::sync::atomic::AtomicU64,
    errors: &'a std::sync::atomic::AtomicU64,
    time: HistogramWords<'a>,
}

impl<'a> Stats<'a> {
    fn of(cell: &'a RawArray<u64>) -> Option<Stats<'a>> {
        let mut time = Vec::with_capacity(crate::stats::HISTOGRAM_BUCKETS + 1);
        for b in 0..=crate::stats::HISTOGRAM_BUCKETS {
            time.push(cell.atomic_u64(CELL_TASK_TIME + b)?);
        }
        Some(Stats {
            tasks: cell.atomic_u64(CELL_TASKS)?,
            errors: cell.atomic_u64(CELL_ERRORS)?,
            time: time.try_into().ok()?,
        })
    }

    /// A chunk ran for `ns`: its items count as tasks, those that panicked as errors; a
    /// chunk that failed as a whole (its arguments undecodable, its function unknown, its
    /// results unencodable) counts as one task and one error.
    fn ran(&self, out: &Result<(Vec<u8>, Ran), String>, ns: u64) {
        let (tasks, errors) = match out {
            Ok((_, r)) => (r.tasks, r.panicked),
            Err(_) => (1, 1),
        };
        // (one writer: a load and a store)
        let add = |w: &std::sync::atomic::AtomicU64, n: u64| {
            w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed)
        };
        add(self.tasks, tasks);
        add(self.errors, errors);
        record(&self.time, ns);
    }
}
