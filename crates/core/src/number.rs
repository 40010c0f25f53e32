//! Numbers an audit log can keep exactly. An event is hashed in its RFC 8785 form, where a
//! number is an IEEE double printed as ECMAScript prints it: a number in the submitted text
//! that does not come back the same from that form — `18446744073709551616` (read back as
//! `18446744073709552000`), `1.00000000000000001` (as `1`) — would be stored altered, so it
//! is refused, with its field named. `0.1`, `1.0`, `1e3` and `-0` come back as the same number
//! (`0.1`, `1`, `1000`, `0`) and are kept.

use crate::Error;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// Whether `v` holds a number serde_json read as a double (a fraction, an exponent, or an
/// integer beyond 64 bits): only those can have been altered by reading.
pub fn has_double(v: &Value) -> bool {
    match v {
        Value::Number(n) => !n.is_i64() && !n.is_u64(),
        Value::Array(a) => a.iter().any(has_double),
        Value::Object(m) => m.values().any(has_double),
        _ => false,
    }
}

/// Checks the numbers of `v`, parsed from `text`: only when `v` holds a double (rare in audit
/// events) is the text walked.
pub fn check_numbers(v: &Value, text: &str) -> Result<(), Error> {
    if has_double(v) {
        check_exact(text)
    } else {
        Ok(())
    }
}

/// Checks every number literal of the JSON `text` (already known to parse) against what RFC
/// 8785 would write for it; the first that differs is refused, at its JSON path.
pub fn check_exact(text: &str) -> Result<(), Error> {
    walk(text, &mut String::new())
}

fn walk(text: &str, path: &mut String) -> Result<(), Error> {
    let t = text.trim_start();
    match t.as_bytes().first() {
        Some(b'{') => {
            let members: BTreeMap<String, &RawValue> =
                serde_json::from_str(t).map_err(|e| Error::invalid(here(path), e.to_string()))?;
            for (k, v) in members {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k);
                walk(v.get(), path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(t).map_err(|e| Error::invalid(here(path), e.to_string()))?;
            for (i, v) in items.into_iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v.get(), path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') => {
            let literal = t.trim_end();
            if kept_exactly(literal) {
                Ok(())
            } else {
                Err(Error::invalid(
                    here(path),
                    format!(
                        "the number {} cannot be kept exactly (it would be stored as {}); send it as a string",
                        clip(literal),
                        canonical(literal).unwrap_or_else(|| "nothing".into())
                    ),
                ))
            }
        }
        _ => Ok(()),
    }
}

fn here(path: &str) -> String {
    if path.is_empty() {
        "(event)".into()
    } else {
        path.to_owned()
    }
}

fn clip(s: &str) -> String {
    if s.len() > 40 {
        format!("{}…", &s[..40])
    } else {
        s.to_owned()
    }
}

/// What RFC 8785 writes for the number `literal`.
fn canonical(literal: &str) -> Option<String> {
    let f: f64 = literal.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let mut w = crate::jcs::Writer::default();
    w.float(f);
    Some(String::from_utf8(w.buf).expect("JCS output is UTF-8"))
}

/// Whether `literal` and what RFC 8785 writes for it are the same number.
pub fn kept_exactly(literal: &str) -> bool {
    match (
        decimal(literal),
        canonical(literal).as_deref().and_then(decimal),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A JSON number literal as (negative, significant digits, exponent): the value is
/// `0.DIGITS × 10^exponent`; zero is `(false, "", 0)` whatever its sign.
fn decimal(s: &str) -> Option<(bool, String, i64)> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let lead = digits.bytes().take_while(|b| *b == b'0').count();
    let sig = digits[lead..].trim_end_matches('0');
    if sig.is_empty() {
        return Some((false, String::new(), 0));
    }
    // 0.DIGITS × 10^(len(int) - lead + exp)
    let exponent = int.len() as i64 - lead as i64 + exp;
    Some((neg, sig.to_owned(), exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_that_come_back_the_same_are_kept() {
        for ok in [
            "0",
            "-0",
            "1",
            "1.0",
            "1e3",
            "1E+3",
            "0.1",
            "-2.5",
            "123.456",
            "1e21",
            "1e-7",
            "9007199254740991",
            "5e-324",
            "1.7976931348623157e308",
            "100",
            "0.000001",
        ] {
            assert!(kept_exactly(ok), "{ok}: {:?}", canonical(ok));
        }
    }

    #[test]
    fn numbers_that_would_be_altered_are_refused() {
        for bad in [
            "18446744073709551616",
            "123456789012345678901234567890",
            "-9223372036854775809",
            "9007199254740993",
            "1.00000000000000001",
            "0.30000000000000000001",
            "1e400",
        ] {
            assert!(!kept_exactly(bad), "{bad}: {:?}", canonical(bad));
        }
    }

    #[test]
    fn the_field_is_named() {
        let e = check_exact(r#"{"payload":{"list":[1,{"x":18446744073709551616}]}}"#).unwrap_err();
        assert_eq!(e.field(), Some("payload.list[1].x"), "{e}");
        assert!(e.to_string().contains("18446744073709552000"), "{e}");
        assert!(check_exact(r#"{"payload":{"x":0.1,"y":[1.5e3]}}"#).is_ok());
    }
}
