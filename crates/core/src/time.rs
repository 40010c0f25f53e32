//! Timestamps at microsecond precision, always written the same way.
//!
//! Every timestamp in a record is UTC with exactly six fractional digits
//! (`2026-11-22T10:00:00.000000Z`), so that a third party recomputing a hash sees the very
//! string Vigil hashed. Input may carry any RFC 3339 offset and precision; finer than a
//! microsecond is truncated.

use crate::Error;
use chrono::DateTime;
use std::fmt;

/// A point in time, microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// 2000-01-01T00:00:00Z: nothing audited happened before it.
const MIN_MICROS: i64 = 946_684_800_000_000;
/// 9999-12-31T23:59:59.999999Z.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

impl Timestamp {
    /// Parses an RFC 3339 timestamp, normalized to UTC and truncated to microseconds.
    pub fn parse(s: &str) -> Result<Timestamp, Error> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| {
            Error::invalid(
                "timestamp",
                "must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z",
            )
        })?;
        Timestamp::from_micros(dt.timestamp_micros())
    }

    /// From microseconds since the epoch, refusing times before 2000 or after 9999.
    pub fn from_micros(us: i64) -> Result<Timestamp, Error> {
        if (MIN_MICROS..=MAX_MICROS).contains(&us) {
            Ok(Timestamp(us))
        } else {
            Err(Error::invalid(
                "timestamp",
                "must lie between 2000-01-01 and 9999-12-31",
            ))
        }
    }

    /// The system clock now, to the microsecond: the one clock read (the pure code takes a
    /// `Timestamp`; services call this at their edge).
    pub fn now() -> Timestamp {
        let us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        Timestamp::from_micros(us).expect("the clock reads a time between 2000 and 9999")
    }

    /// Microseconds since the epoch.
    pub fn micros(&self) -> i64 {
        self.0
    }

    /// The canonical text form, e.g. `2026-11-22T10:00:00.000000Z`.
    pub fn to_rfc3339(&self) -> String {
        // Written by hand (civil-from-days, H. Hinnant): it runs several times per event on
        // the ingest path, and a test pins it to chrono's formatting.
        let (days, us_of_day) = (
            self.0.div_euclid(86_400_000_000),
            self.0.rem_euclid(86_400_000_000),
        );
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let secs = us_of_day / 1_000_000;
        let mut out = [0u8; 27];
        let put = |out: &mut [u8; 27], at: usize, v: i64, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(&mut out, 0, year, 4);
        put(&mut out, 5, month, 2);
        put(&mut out, 8, day, 2);
        put(&mut out, 11, secs / 3600, 2);
        put(&mut out, 14, secs / 60 % 60, 2);
        put(&mut out, 17, secs % 60, 2);
        put(&mut out, 20, us_of_day % 1_000_000, 6);
        for (at, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ] {
            out[at] = c;
        }
        String::from_utf8(out.to_vec()).expect("ASCII")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, Utc};

    #[test]
    fn offsets_and_precision_are_normalized() {
        let t = Timestamp::parse("2026-11-22T12:00:00.123456789+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00.123456Z");
        assert_eq!(
            Timestamp::parse("2026-11-22T10:00:00Z")
                .unwrap()
                .to_rfc3339(),
            "2026-11-22T10:00:00.000000Z"
        );
    }

    #[test]
    fn garbage_and_out_of_range_times_are_refused() {
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("1999-12-31T23:59:59Z").is_err());
        assert!(Timestamp::parse("2026-11-22 10:00:00").is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_hand_written_format_equals_chronos(us in MIN_MICROS..=MAX_MICROS) {
            let t = Timestamp::from_micros(us).unwrap();
            let chrono = DateTime::<Utc>::from_timestamp_micros(us).unwrap().to_rfc3339_opts(SecondsFormat::Micros, true);
            proptest::prop_assert_eq!(t.to_rfc3339(), chrono);
        }
    }

    #[test]
    fn the_canonical_form_parses_back_to_itself() {
        let t = Timestamp::parse("2031-01-02T03:04:05.000006Z").unwrap();
        assert_eq!(Timestamp::parse(&t.to_rfc3339()).unwrap(), t);
    }
}
