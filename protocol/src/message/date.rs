//! Calendar dates for deadlines and postponements.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};

use super::{InvalidMessage, ParseValueError};
use crate::time::Timestamp;

const VALID: &str = "a calendar date as YYYY-MM-DD (year 0001 to 9999)";

/// A day in the proleptic Gregorian calendar, with no time zone: deadlines
/// between authorities are agreed as dates, not instants.
///
/// Fields are private so every value built here is a real date; a value
/// decoded from the wire is not checked by the derived decoder, which is why
/// [`Body::validate`](super::Body::validate) re-checks dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, ParseValueError> {
        let d = Date { year, month, day };
        if d.is_valid() {
            Ok(d)
        } else {
            Err(ParseValueError::new("date", &d.to_string(), VALID))
        }
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    pub fn day(&self) -> u8 {
        self.day
    }

    /// False only for a value that came from the derived decoder.
    pub(crate) fn is_valid(&self) -> bool {
        (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
    }

    pub(crate) fn check(&self, field: &'static str) -> Result<(), InvalidMessage> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(InvalidMessage::BadDate {
                field,
                year: self.year,
                month: self.month,
                day: self.day,
            })
        }
    }

    /// The UTC date of an instant, so a caller can compare a deadline with
    /// "today" without a date library. Saturates at 9999-12-31.
    pub fn from_timestamp(t: Timestamp) -> Self {
        const MAX_DAYS: u64 = 2_932_896; // 1970-01-01 to 9999-12-31
        let days = (t.as_millis() / 86_400_000).min(MAX_DAYS);
        // Howard Hinnant's civil_from_days, for non-negative day counts.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + u64::from(month <= 2)) as u16;
        Date { year, month, day }
    }
}

fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseValueError::new("date", s, VALID);
        let t = s.trim().as_bytes();
        let shape_ok = t.len() == 10
            && t[4] == b'-'
            && t[7] == b'-'
            && t.iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(err());
        }
        let num =
            |r: std::ops::Range<usize>| t[r].iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
        let (year, month, day) = (num(0..4), num(5..7) as u8, num(8..10) as u8);
        Date::new(year, month, day).map_err(|_| err())
    }
}

crate::serde_as_text!(Date);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_years() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(1900, 2, 29).is_err());
        assert!("2024-02-29".parse::<Date>().is_ok());
        assert!("2023-02-29".parse::<Date>().is_err());
    }

    #[test]
    fn rejects_out_of_range() {
        for bad in [
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-04-31",
            "0000-01-01",
            "2026-1-01",
            "2026/01/01",
            "20260101",
            "2026-01-01T00:00",
            "+026-01-01",
            "２０２６-01-01",
            "",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_parse_round_trip_and_order() {
        let d: Date = " 2026-03-09 ".parse().unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2026, 3, 9));
        assert_eq!(d.to_string(), "2026-03-09");
        assert_eq!(d.to_string().parse::<Date>().unwrap(), d);
        assert!(Date::new(2025, 12, 31).unwrap() < d);
        assert!(Date::new(2026, 3, 10).unwrap() > d);
    }

    #[test]
    fn error_names_the_format() {
        let e = "2026-13-01".parse::<Date>().unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn serde_validates() {
        let d = Date::new(2024, 2, 29).unwrap();
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, "\"2024-02-29\"");
        assert_eq!(serde_json::from_str::<Date>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Date>("\"2023-02-29\"").is_err());
    }

    #[test]
    fn from_timestamp() {
        let ts = |ms| Date::from_timestamp(Timestamp::from_millis(ms)).to_string();
        assert_eq!(ts(0), "1970-01-01");
        assert_eq!(ts(86_400_000 - 1), "1970-01-01");
        assert_eq!(ts(951_782_400_000), "2000-02-29");
        assert_eq!(ts(1_709_164_800_000), "2024-02-29");
        assert_eq!(ts(u64::MAX), "9999-12-31");
        assert!(Date::from_timestamp(Timestamp::from_millis(u64::MAX)).is_valid());
    }
}
