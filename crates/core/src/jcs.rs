//! RFC 8785 JSON Canonicalization Scheme.
//!
//! Arbitrary values go through the maintained `serde_json_canonicalizer` crate (tested here
//! against the public vectors in `shared/vectors/jcs`). The hashed form of a record has a fixed
//! set of ASCII keys, so [`Writer`] writes it directly in canonical order without building a
//! map; a property test pins that both paths give the same bytes.

use serde_json::Value;

/// Canonical bytes of any JSON value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    // Scalars (most payload members) are written directly; floats, arrays and objects go
    // through the canonicalizer, which implements ECMAScript number formatting and UTF-16
    // key order. A property test pins that both agree.
    let mut w = Writer::with_capacity(64);
    match value {
        Value::Null => w.raw("null"),
        Value::Bool(true) => w.raw("true"),
        Value::Bool(false) => w.raw("false"),
        Value::String(s) => w.string(s),
        Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() < (1 << 53)) => {
            w.int(n.as_i64().expect("checked"))
        }
        // Serializing a `serde_json::Value` cannot fail: its keys are strings, numbers finite.
        _ => {
            return serde_json_canonicalizer::to_vec(value)
                .expect("a serde_json::Value always canonicalizes")
        }
    }
    w.buf
}

/// Appends canonical JSON pieces to a buffer; the caller is responsible for key order.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// Writes a raw ASCII token such as `{`, `,` or `:`.
    pub fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Writes `"key":` — `key` must need no escaping (the record's keys are plain ASCII).
    pub fn key(&mut self, key: &str) {
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Writes a string with RFC 8785 escaping (that of ECMAScript's `JSON.stringify`).
    pub fn string(&mut self, s: &str) {
        self.buf.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => {
                    self.buf.extend_from_slice(&bytes[start..i]);
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.buf.extend_from_slice(b"\\u00");
                    self.buf.push(HEX[(b >> 4) as usize]);
                    self.buf.push(HEX[(b & 0xf) as usize]);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            self.buf.extend_from_slice(&bytes[start..i]);
            self.buf.extend_from_slice(esc);
            start = i + 1;
        }
        self.buf.extend_from_slice(&bytes[start..]);
        self.buf.push(b'"');
    }

    /// Writes an integer; canonical only when exactly representable as an IEEE double
    /// (|n| < 2^53), which every integer Vigil writes is (or, from a tampered row, need not be).
    pub fn int(&mut self, n: i64) {
        use std::io::Write;
        write!(self.buf, "{n}").expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vectors() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/jcs")
    }

    #[test]
    fn every_public_vector_canonicalizes_to_its_expected_bytes() {
        let dir = vectors();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.join("input")).expect("shared/vectors/jcs/input exists")
        {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let expected =
                std::fs::read(dir.join("output").join(path.file_name().unwrap())).unwrap();
            let value: Value = serde_json::from_slice(&input).unwrap();
            assert_eq!(
                String::from_utf8(to_vec(&value)).unwrap(),
                String::from_utf8(expected).unwrap(),
                "vector {}",
                path.display()
            );
            seen += 1;
        }
        assert!(seen >= 5, "expected the five public vectors, found {seen}");
    }

    proptest::proptest! {
        #[test]
        fn the_scalar_fast_path_matches_the_generic_canonicalizer(i in proptest::num::i64::ANY, f in proptest::num::f64::NORMAL, s in "\\PC*", b in proptest::bool::ANY) {
            for v in [Value::from(i), Value::from(f), Value::from(s), Value::from(b), Value::Null, Value::from(i % (1 << 53))] {
                proptest::prop_assert_eq!(to_vec(&v), serde_json_canonicalizer::to_vec(&v).unwrap(), "{}", v);
            }
        }

        #[test]
        fn the_direct_string_writer_matches_the_generic_canonicalizer(s in "\\PC*|[\\x00-\\x20\"\\\\]*") {
            let mut w = Writer::default();
            w.string(&s);
            proptest::prop_assert_eq!(w.buf, to_vec(&Value::String(s)));
        }
    }
}
