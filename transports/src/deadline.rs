//! [`Deadline`]: when a blocking operation gives up. The one deadline type of the
//! workspace: the ring takes it, and the core (which sits above this crate) builds every
//! deadline of its public `_timeout(d)` methods with [`Deadline::after`], so that a
//! timeout too large to represent (`Duration::MAX`) means "wait for ever" everywhere
//! instead of overflowing `Instant + Duration`.

use std::time::{Duration, Instant};

/// When a blocking operation gives up.
///
/// [`Deadline::After`] reads the clock only once the operation actually has to wait, so
/// an operation that finds room or a message at once makes no clock read at all.
/// [`Deadline::after`] reads the clock at once. Both turn a duration too large to add to
/// the clock (e.g. `Duration::MAX`) into [`Deadline::Never`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Give up at this instant.
    At(Instant),
    /// Give up this long after the operation started waiting (a duration too large to
    /// represent waits forever).
    After(Duration),
}

impl Deadline {
    /// The deadline `d` from now, read from the clock now; a `d` too large to represent
    /// (e.g. `Duration::MAX`) is [`Deadline::Never`].
    ///
    /// ```
    /// use procactor_transports::deadline::Deadline;
    /// use std::time::Duration;
    /// assert_eq!(Deadline::after(Duration::MAX), Deadline::Never);
    /// assert!(!Deadline::after(Duration::from_secs(60)).expired());
    /// assert!(Deadline::after(Duration::ZERO).expired());
    /// ```
    pub fn after(d: Duration) -> Deadline {
        Instant::now()
            .checked_add(d)
            .map_or(Deadline::Never, Deadline::At)
    }

    /// `Some(d)` as [`Deadline::after`]`(d)`, `None` as [`Deadline::Never`].
    pub fn after_opt(d: Option<Duration>) -> Deadline {
        d.map_or(Deadline::Never, Deadline::after)
    }

    /// The instant to give up at (`None`: never), reading the clock on the first call for
    /// [`Deadline::After`] and keeping the answer.
    pub fn resolve(&mut self) -> Option<Instant> {
        match *self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at),
            Deadline::After(d) => {
                let at = Instant::now().checked_add(d);
                *self = at.map_or(Deadline::Never, Deadline::At);
                at
            }
        }
    }

    /// The instant to give up at (`None`: never); [`Deadline::After`] counts from now.
    pub fn instant(self) -> Option<Instant> {
        let mut d = self;
        d.resolve()
    }

    /// The time left (`None`: no limit; `Some(ZERO)` once expired).
    pub fn remaining(&self) -> Option<Duration> {
        match *self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
            Deadline::After(d) => Some(d),
        }
    }

    /// Whether the deadline has passed ([`Deadline::Never`] never does; a
    /// [`Deadline::After`] only once it is zero).
    pub fn expired(&self) -> bool {
        match *self {
            Deadline::Never => false,
            Deadline::At(at) => Instant::now() >= at,
            Deadline::After(d) => d.is_zero(),
        }
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(d: Option<Instant>) -> Self {
        d.map_or(Deadline::Never, Deadline::At)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_never() {
        assert_eq!(Deadline::after(Duration::MAX), Deadline::Never);
        assert_eq!(Deadline::After(Duration::MAX).instant(), None);
        assert_eq!(Deadline::after(Duration::MAX).remaining(), None);
        assert!(!Deadline::after(Duration::MAX).expired());
        assert_eq!(Deadline::after_opt(None), Deadline::Never);
    }

    #[test]
    fn finite_durations_count_down() {
        let d = Deadline::after(Duration::from_secs(3600));
        let left = d.remaining().unwrap();
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
        assert!(!d.expired());
        let past = Deadline::At(Instant::now() - Duration::from_millis(1));
        assert!(past.expired());
        assert_eq!(past.remaining(), Some(Duration::ZERO));
        let mut lazy = Deadline::After(Duration::from_secs(5));
        let at = lazy.resolve().unwrap();
        assert_eq!(lazy, Deadline::At(at));
    }
}
