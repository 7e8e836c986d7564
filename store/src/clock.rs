//! The clock the programme's calendar reads.

use chrono::NaiveDateTime;
use std::sync::Mutex;

/// Where the time comes from for programme rules that depend on it (challenge milestones,
/// the worker's schedule): the system clock, or one a test moves by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> NaiveDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        crate::now()
    }
}

/// A clock that stands still until moved.
pub struct ManualClock(Mutex<NaiveDateTime>);

impl ManualClock {
    pub fn new(at: NaiveDateTime) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: NaiveDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> NaiveDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
