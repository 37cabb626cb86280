//! The clock of the approvals workflow (deadlines, expiry, recovery), injectable so that
//! tests can move time instead of sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::time::format_rfc3339;

/// Wall-clock time in UTC: the system's, or a manual one that only moves when told to.
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<OffsetDateTime>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A manual clock that reads `start` until [`Clock::advance`] moves it.
    pub fn manual(start: OffsetDateTime) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// Now, in UTC.
    pub fn now(&self) -> OffsetDateTime {
        match &self.manual {
            None => OffsetDateTime::now_utc(),
            Some(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Now as RFC 3339 with six fractional digits (see [`crate::time::now_rfc3339`]).
    pub fn now_rfc3339(&self) -> String {
        format_rfc3339(self.now())
    }

    /// `seconds` from now, as RFC 3339 (saturating far in the future).
    pub fn in_seconds(&self, seconds: u64) -> String {
        let later = i64::try_from(seconds)
            .ok()
            .and_then(|s| self.now().checked_add(time::Duration::seconds(s)))
            .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
        format_rfc3339(later)
    }

    /// Moves a manual clock forward by `by`; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = time::macros::datetime!(2026-11-21 10:00:00 UTC);
        let clock = Clock::manual(start);
        let clone = clock.clone();
        assert_eq!(clock.now(), start);
        assert_eq!(clock.in_seconds(3600), "2026-11-21T11:00:00.000000Z");
        clone.advance(Duration::from_secs(90));
        assert_eq!(clock.now_rfc3339(), "2026-11-21T10:01:30.000000Z");
        assert_eq!(clock.in_seconds(u64::MAX), "9999-12-31T23:59:59.000000Z");
        let system = Clock::system();
        let before = OffsetDateTime::now_utc();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() - before < time::Duration::seconds(60));
    }
}
