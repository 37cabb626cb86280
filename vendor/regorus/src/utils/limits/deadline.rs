// AAF patch (see AAF-PATCHES.md at the crate root): a wall-clock deadline per thread.
//
// regorus's own execution timer is checked between interpreter steps only, so one long
// built-in call, a slow parse or the load-time evaluation of a policy could run past it. This
// deadline is checked wherever regorus checks its memory limit (the lexer for every token,
// the parser, interpreter steps, the loops of built-ins, value deserialisation), every
// `STRIDE` checks, so each of those stops soon after the deadline with
// `LimitError::TimeLimitExceeded`.

use core::cell::Cell;
use std::thread_local;
use std::time::{Duration, Instant};

use super::LimitError;

/// Checks between two reads of the clock.
const STRIDE: u32 = 32;

thread_local! {
    static DEADLINE: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
    // Once the deadline has been seen passed, every later check fails at once (until the
    // deadline is replaced), so that code which tries alternatives after an error (the
    // parser's speculative comprehension parses) cannot go on exploring them.
    static PASSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `operation` with a deadline `limit` from now on this thread (or the deadline already
/// in force, if that is earlier); the previous deadline is restored afterwards, also when
/// `operation` panics.
pub fn with_thread_deadline<R>(limit: Duration, operation: impl FnOnce() -> R) -> R {
    struct Restore(Option<(Instant, Duration)>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
            PASSED.with(|p| p.set(self.1));
        }
    }
    let new = Instant::now().checked_add(limit).map(|at| (at, limit));
    let saved = DEADLINE.with(|d| {
        let old = d.get();
        let effective = match (old, new) {
            (Some(o), Some(n)) if o.0 <= n.0 => Some(o),
            (_, Some(n)) => Some(n),
            (o, None) => o,
        };
        d.set(effective);
        old
    });
    let _restore = Restore(saved, PASSED.with(|p| p.replace(false)));
    operation()
}

/// Whether this thread's deadline (if any) has passed; reads the clock every `STRIDE` calls.
pub fn check_thread_deadline() -> Result<(), LimitError> {
    if DEADLINE.with(Cell::get).is_none() {
        return Ok(());
    }
    let ticks = TICKS.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n
    });
    if ticks % STRIDE != 0 && !PASSED.with(Cell::get) {
        return Ok(());
    }
    check_thread_deadline_now()
}

/// Whether this thread's deadline (if any) has passed, reading the clock now.
pub fn check_thread_deadline_now() -> Result<(), LimitError> {
    let Some((deadline, limit)) = DEADLINE.with(Cell::get) else {
        return Ok(());
    };
    let now = Instant::now();
    if now >= deadline {
        PASSED.with(|p| p.set(true));
        return Err(LimitError::TimeLimitExceeded {
            elapsed: limit.saturating_add(now.duration_since(deadline)),
            limit,
        });
    }
    Ok(())
}

/// Time left before this thread's deadline: `None` when there is none.
pub fn thread_deadline_remaining() -> Option<Duration> {
    DEADLINE.with(Cell::get).map(|(at, _)| at.saturating_duration_since(Instant::now()))
}
