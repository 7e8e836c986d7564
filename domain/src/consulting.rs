//! Technical consulting: sessions in advisers' slots, paid for in consulting minutes — a unit
//! of their own, never money.

use chrono::{Duration, NaiveDateTime};

/// Consulting time, in whole minutes, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minutes(i64);

/// The longest allowance a voucher may carry: 1,000 hours.
pub const MAX_MINUTES: i64 = 60_000;

impl Minutes {
    pub fn new(minutes: i64) -> Result<Minutes, String> {
        if (0..=MAX_MINUTES).contains(&minutes) {
            Ok(Minutes(minutes))
        } else {
            Err(format!("must be between 0 and {MAX_MINUTES} minutes"))
        }
    }

    pub fn hours(hours: u32) -> Result<Minutes, String> {
        Minutes::new(i64::from(hours) * 60)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A slot lasts 15 minutes to 8 hours, on whole minutes, and starts in the future.
pub fn check_slot(
    starts_at: NaiveDateTime,
    ends_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Minutes, (&'static str, String)> {
    if starts_at <= now {
        return Err(("starts_at", "must be in the future".into()));
    }
    let length = ends_at - starts_at;
    if length < Duration::minutes(15) || length > Duration::hours(8) {
        return Err((
            "ends_at",
            "must be 15 minutes to 8 hours after starts_at".into(),
        ));
    }
    if length.num_seconds() % 60 != 0 {
        return Err((
            "ends_at",
            "must make the slot a whole number of minutes".into(),
        ));
    }
    Minutes::new(length.num_minutes()).map_err(|m| ("ends_at", m))
}

/// How close to its start a booking may still be cancelled.
pub const CANCEL_NOTICE_HOURS: i64 = 24;

pub fn may_cancel(starts_at: NaiveDateTime, now: NaiveDateTime) -> bool {
    starts_at - now >= Duration::hours(CANCEL_NOTICE_HOURS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn t(h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2027, 1, 10)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn slots_are_bounded_and_in_the_future() {
        assert_eq!(check_slot(t(10, 0), t(11, 30), t(9, 0)).unwrap().get(), 90);
        assert_eq!(
            check_slot(t(10, 0), t(10, 10), t(9, 0)).unwrap_err().0,
            "ends_at"
        );
        assert_eq!(
            check_slot(t(10, 0), t(19, 0), t(9, 0)).unwrap_err().0,
            "ends_at"
        );
        assert_eq!(
            check_slot(t(10, 0), t(11, 0), t(10, 0)).unwrap_err().0,
            "starts_at"
        );
    }

    #[test]
    fn minutes_are_never_negative_and_cancellation_needs_a_days_notice() {
        assert!(Minutes::new(-1).is_err());
        assert_eq!(Minutes::hours(2).unwrap().get(), 120);
        assert!(may_cancel(t(10, 0) + Duration::days(1), t(10, 0)));
        assert!(!may_cancel(t(10, 0) + Duration::days(1), t(10, 1)));
    }
}
