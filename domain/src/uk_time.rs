//! Times as people in the UK read them (Europe/London, summer time included): "6 December
//! 2026, 11:18am", "Sunday 10 January 2027 at 2:30pm". The pages and the emails both write
//! times through these, and read a form's UK wall-clock time back as UTC.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::London;

fn london(t: NaiveDateTime) -> DateTime<chrono_tz::Tz> {
    Utc.from_utc_datetime(&t).with_timezone(&London)
}

/// The day a time (UTC) falls on in the UK: "6 December 2026".
pub fn date(t: NaiveDateTime) -> String {
    london(t).format("%-d %B %Y").to_string()
}

/// A time (UTC) as the UK reads it: "6 December 2026, 11:18am"; "midday" and "midnight" for
/// 12:00, as GOV.UK writes them.
pub fn date_time(t: NaiveDateTime) -> String {
    let local = london(t);
    let clock = match local.format("%H:%M").to_string().as_str() {
        "12:00" => "midday".to_string(),
        "00:00" => "midnight".to_string(),
        _ => local.format("%-I:%M%P").to_string(),
    };
    format!("{}, {clock}", local.format("%-d %B %Y"))
}

/// A UK wall-clock time (what someone types in a form) as UTC; `None` for a time the clocks
/// skip when they go forward. An hour that happens twice when they go back is its first.
pub fn from_uk_time(local: NaiveDateTime) -> Option<NaiveDateTime> {
    London
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.naive_utc())
}

/// "Sunday 10 January 2027 at 2:30pm": a session's start, in UK time.
pub fn weekday_time(t: NaiveDateTime) -> String {
    let local = london(t);
    let clock = match local.format("%H:%M").to_string().as_str() {
        "12:00" => "midday".to_string(),
        "00:00" => "midnight".to_string(),
        _ => local.format("%-I:%M%P").to_string(),
    };
    format!("{} at {clock}", local.format("%A %-d %B %Y"))
}
