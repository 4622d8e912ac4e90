//! The actor's statistics as its own process writes them (see `mailbox::cell` for the
//! words), and the senders' choice of which messages are timed.
//!
//! Counting costs a load and a store per message on the actor's own cache lines (one
//! writer: no atomic read-modify-write). Timing costs clock reads (`CLOCK_MONOTONIC`,
//! ~35 ns each on the 2-core VM this was measured on, against ~200 ns for a whole
//! `send` and ~800 ns for a call round trip): one by the sender (the stamp) and two by
//! the actor (when it takes the message, when `handle` returns). So messages are timed
//! one in [`DEFAULT_TIME_EVERY`] by default, picked at random by each sending thread
//! ([`ChildSpec::time_every`](crate::ChildSpec::time_every) changes it: `1` times every
//! message, `0` none): the histograms are a sample of the messages, the counts are
//! exact.

use super::envelope::Meta;
#[cfg(doc)]
use super::mailbox::DEFAULT_TIME_EVERY;
use super::mailbox::{cell, Group};
use crate::stats::{bump, record, HistogramWords as Hist};
use procactor_transports::observe::monotonic_ns;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// A sending thread's sampling generator (xorshift32, seeded per thread).
    static PICK: Cell<u32> = const { Cell::new(0) };
}

/// Whether this send is one of the `every` that is timed (`every >= 2`): `x`, uniform
/// over `1..2^32`, times `every` is below `2^32` for `ceil(2^32 / every) - 1` of its
/// values, one in `every` (a multiplication and a shift: no 64-bit division per send;
/// both are below `2^32`, so the product fits in a `u64`).
fn picked(every: u32) -> bool {
    PICK.with(|c| {
        let mut x = c.get();
        if x == 0 {
            // (any non-zero seed; threads differ by their stack address)
            let local = 0u8;
            x = (std::ptr::addr_of!(local) as usize as u32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c.set(x);
        (u64::from(x) * u64::from(every)) >> 32 == 0
    })
}

impl Group {
    /// What a sender puts in its envelope: a time stamp on the messages picked for
    /// timing.
    #[inline]
    pub(crate) fn meta(&self) -> Meta {
        let every = self.word(cell::TIME_EVERY).load(Ordering::Relaxed);
        // (the word is written from a `u32`; anything larger saturates)
        let timed = every == 1 || (every > 1 && picked(u32::try_from(every).unwrap_or(u32::MAX)));
        Meta {
            sent_ns: if timed { monotonic_ns() } else { 0 },
            trace: super::trace::current(),
        }
    }

    /// Sets how many messages in one are timed (0: none).
    pub(crate) fn set_time_every(&self, every: u32) {
        self.word(cell::TIME_EVERY)
            .store(u64::from(every), Ordering::Relaxed);
    }
}

/// The actor's words, found once when its loop starts.
pub(super) struct Counters<'a> {
    handled: &'a AtomicU64,
    calls: &'a AtomicU64,
    errors: &'a AtomicU64,
    undecodable: &'a AtomicU64,
    handle_time: Hist<'a>,
    mailbox_wait: Hist<'a>,
}

impl<'a> Counters<'a> {
    pub(super) fn new(g: &'a Group, actor: u32) -> Counters<'a> {
        let w = |i| g.actor_word(actor, i);
        Counters {
            handled: w(cell::HANDLED),
            calls: w(cell::CALLS),
            errors: w(cell::ERRORS),
            undecodable: w(cell::UNDECODABLE),
            handle_time: std::array::from_fn(|b| w(cell::HANDLE_TIME + b)),
            mailbox_wait: std::array::from_fn(|b| w(cell::MAILBOX_WAIT + b)),
        }
    }

    /// The loop starts (its uptime counts from now).
    pub(super) fn started(g: &Group, actor: u32) {
        g.actor_word(actor, cell::STARTED_AT)
            .store(monotonic_ns(), Ordering::Relaxed);
    }

    pub(super) fn error(&self) {
        bump(self.errors);
    }

    pub(super) fn undecodable(&self) {
        bump(self.undecodable);
    }

    /// A message was taken: when (for a timed one), its wait recorded.
    #[inline]
    pub(super) fn took(&self, meta: &Meta) -> Option<u64> {
        if meta.sent_ns == 0 {
            return None;
        }
        let now = monotonic_ns();
        record(&self.mailbox_wait, now.saturating_sub(meta.sent_ns));
        Some(now)
    }

    /// `handle` returned for a message taken at `took` (timed) or not.
    #[inline]
    pub(super) fn handled(&self, call: bool, took: Option<u64>) {
        if let Some(t) = took {
            record(&self.handle_time, monotonic_ns().saturating_sub(t));
        }
        bump(self.handled);
        if call {
            bump(self.calls);
        }
    }

    /// Counts an error if dropped before [`Unwinding::disarm`]: around `handle`, so
    /// that a panic is counted as the process unwinds.
    pub(super) fn on_unwind(&self) -> Unwinding<'a> {
        Unwinding(self.errors)
    }
}

pub(super) struct Unwinding<'a>(&'a AtomicU64);

impl Unwinding<'_> {
    #[inline]
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        bump(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::picked;

    #[test]
    fn one_send_in_every_is_picked() {
        for every in [2u32, 16, 1000] {
            let draws = 1u32 << 20;
            let hits = (0..draws).filter(|_| picked(every)).count() as f64;
            let expected = f64::from(draws) / f64::from(every);
            // (binomial: the bound is over 10 standard deviations for every=1000)
            assert!(
                (hits - expected).abs() < expected * 0.1 + 10.0 * expected.sqrt(),
                "every {every}: {hits} picked of {draws}, expected about {expected}"
            );
        }
        // the largest `every` still picks some (x == 1 only), never a wrong overflow
        let big = (0..1000).filter(|_| picked(u32::MAX)).count();
        assert!(big <= 1, "{big}");
    }
}
