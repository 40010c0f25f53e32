//! Durations on the command line and in `VIGIL_*` variables: `90s`, `15m`, `250ms`,
//! `1h 30m` (humantime's syntax), or a bare number in the unit the flag was first given in
//! (seconds or milliseconds, as each flag's help says), so older invocations keep working.

use std::time::Duration;

/// A duration whose bare numbers are seconds.
pub(crate) fn secs(s: &str) -> Result<Duration, String> {
    parse(s, Duration::from_secs)
}

/// A duration whose bare numbers are milliseconds.
pub(crate) fn millis(s: &str) -> Result<Duration, String> {
    parse(s, Duration::from_millis)
}

fn parse(s: &str, bare: fn(u64) -> Duration) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(bare(n));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}: write a duration such as 90s, 15m, 250ms or 1h 30m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_or_the_flags_own_unit() {
        assert_eq!(secs("90").unwrap(), Duration::from_secs(90));
        assert_eq!(millis("90").unwrap(), Duration::from_millis(90));
        assert_eq!(secs("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(millis("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(secs(" 250ms ").unwrap(), Duration::from_millis(250));
        let e = secs("ten").unwrap_err();
        assert!(e.contains("such as 90s"), "{e}");
        assert!(secs("-5").is_err());
    }
}
