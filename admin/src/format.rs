//! How the pages write money and times for people: pounds and pence with thousands
//! separators ("£2,499.99"), and UK dates and times in Europe/London ("6 December 2026",
//! "6 December 2026, 11:18am"), whatever the server's own time zone.

use chrono::{DateTime, NaiveDate};
use voucherd_domain::money::display_decimal;
/// UK times are the domain's, so the pages and the emails write them alike.
pub use voucherd_domain::uk_time::{date, date_time, from_uk_time, weekday_time};

/// An amount the core gave as a decimal string ("2499.999746", "-1.50"), rounded to the penny:
/// "£2,500.00", "-£1.50". Text that is not an amount (a form's answer shown back) is shown
/// after a pound sign as it was typed.
pub fn pounds(text: &str) -> String {
    display_decimal(&crate::portal::tidy_money(text)).unwrap_or_else(|| format!("£{}", text.trim()))
}

/// One CSV cell, quoted; a cell a spreadsheet would run as a formula gets a leading
/// apostrophe (an amount is a number: a spreadsheet reads "-0.01" as one).
pub fn csv_cell(text: &str) -> String {
    let s = text.replace('"', "\"\"");
    let s = if s.starts_with(['=', '+', '@', '\t', '\r'])
        || (s.starts_with('-') && s.parse::<f64>().is_err())
    {
        format!("'{s}")
    } else {
        s
    };
    format!("\"{s}\"")
}

/// A time or a date as the core writes them (RFC 3339, or `2026-12-06`), for people; text
/// that is neither is shown as it is.
pub fn when(text: &str) -> String {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return date_time(t.naive_utc());
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => d.format("%-d %B %Y").to_string(),
        Err(_) => text.to_string(),
    }
}

/// The day of a time or date as the core writes them: "6 December 2026".
pub fn day(text: &str) -> String {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return date(t.naive_utc());
    }
    when(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn at(s: &str) -> NaiveDateTime {
        DateTime::parse_from_rfc3339(s).unwrap().naive_utc()
    }

    #[test]
    fn amounts_are_pounds_and_pence_with_separators() {
        assert_eq!(pounds("54000000.00"), "£54,000,000.00");
        assert_eq!(pounds("2499.99"), "£2,499.99");
        assert_eq!(pounds("2499.999746"), "£2,500.00");
        assert_eq!(pounds("-1.50"), "-£1.50");
        assert_eq!(pounds("0.000001"), "£0.00");
        assert_eq!(pounds("£900,000"), "£900,000.00");
        assert_eq!(pounds("abc"), "£abc");
    }

    #[test]
    fn times_are_uk_local_with_summer_time() {
        // Winter: London is UTC.
        assert_eq!(
            date_time(at("2026-12-06T11:18:26.028189Z")),
            "6 December 2026, 11:18am"
        );
        // Summer: London is an hour ahead, so late evening UTC is the next day there.
        assert_eq!(
            date_time(at("2026-07-01T23:30:00Z")),
            "2 July 2026, 12:30am"
        );
        assert_eq!(date(at("2026-07-01T23:30:00Z")), "2 July 2026");
        assert_eq!(date_time(at("2026-07-01T11:00:00Z")), "1 July 2026, midday");
        assert_eq!(
            date_time(at("2026-01-01T00:00:00Z")),
            "1 January 2026, midnight"
        );
        assert_eq!(when("2026-12-06"), "6 December 2026");
        assert_eq!(when("not a time"), "not a time");
        assert_eq!(
            weekday_time(at("2027-07-11T13:30:00Z")),
            "Sunday 11 July 2027 at 2:30pm"
        );
    }

    #[test]
    fn a_typed_uk_time_is_read_in_summer_time_too() {
        let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            from_uk_time(local("2027-07-11 14:30")),
            Some(at("2027-07-11T13:30:00Z"))
        );
        assert_eq!(
            from_uk_time(local("2027-01-10 14:30")),
            Some(at("2027-01-10T14:30:00Z"))
        );
        // 28 March 2027: the clocks go from 1am to 2am.
        assert_eq!(from_uk_time(local("2027-03-28 01:30")), None);
    }
}
