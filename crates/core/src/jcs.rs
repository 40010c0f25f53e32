//! RFC 8785 JSON Canonicalization Scheme.
//!
//! Our own writer, because it sits on every hot path (content hashes, commitments, the
//! hashed form, verification) and the general-purpose crate allocates per member. Numbers are
//! formatted as ECMAScript's `Number.prototype.toString` by `ryu-js`; object members are
//! ordered by UTF-16 code units. It is tested against the public vectors in
//! `shared/vectors/jcs` (copied into `crates/core/testdata/jcs`, so a clone tests on its own) and, property by property, against the maintained
//! `serde_json_canonicalizer` crate.

use serde_json::Value;

/// Canonical bytes of any JSON value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.value(value);
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
        // Which bytes need an escape: control characters, '"' and '\\'. Everything else,
        // including all of UTF-8 beyond ASCII, is copied as is, in runs.
        const fn table() -> [bool; 256] {
            let mut t = [false; 256];
            let mut i = 0;
            while i < 0x20 {
                t[i] = true;
                i += 1;
            }
            t[b'"' as usize] = true;
            t[b'\\' as usize] = true;
            t
        }
        static ESCAPE: [bool; 256] = table();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.buf.reserve(s.len() + 2);
        self.buf.push(b'"');
        let bytes = s.as_bytes();
        // Almost every string needs no escape: one pass the compiler vectorizes (no early
        // exit) decides, and the string is copied whole.
        let plain = bytes
            .iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
        if plain {
            self.buf.extend_from_slice(bytes);
            self.buf.push(b'"');
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !ESCAPE[b as usize] {
                continue;
            }
            self.buf.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => self.buf.extend_from_slice(b"\\\""),
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                0x08 => self.buf.extend_from_slice(b"\\b"),
                0x0c => self.buf.extend_from_slice(b"\\f"),
                _ => self.buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]),
            }
            start = i + 1;
        }
        self.buf.extend_from_slice(&bytes[start..]);
        self.buf.push(b'"');
    }

    /// Writes `{"id":…,"type":…}` (an actor or a resource), keys in canonical order.
    pub fn party(&mut self, id: &str, kind: &str) {
        self.raw("{");
        self.key("id");
        self.string(id);
        self.raw(",");
        self.key("type");
        self.string(kind);
        self.raw("}");
    }

    /// Writes a record's or event's `source` object, keys in canonical order.
    pub fn source(&mut self, service: &str, producer_id: Option<&str>, producer_seq: Option<i64>) {
        self.raw("{");
        if let Some(p) = producer_id {
            self.key("producer_id");
            self.string(p);
            self.raw(",");
        }
        if let Some(n) = producer_seq {
            self.key("producer_seq");
            self.int(n);
            self.raw(",");
        }
        self.key("service");
        self.string(service);
        self.raw("}");
    }

    /// Writes any JSON value canonically.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.raw("null"),
            Value::Bool(true) => self.raw("true"),
            Value::Bool(false) => self.raw("false"),
            Value::String(s) => self.string(s),
            Value::Number(n) => match n.as_i64() {
                Some(i) if i.unsigned_abs() < (1 << 53) => self.int(i),
                _ => self.float(
                    n.as_f64()
                        .expect("a JSON number is finite without arbitrary_precision"),
                ),
            },
            Value::Array(a) => {
                self.buf.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.value(x);
                }
                self.buf.push(b']');
            }
            Value::Object(m) => self.object(m),
        }
    }

    /// Writes a JSON object canonically (members in UTF-16 order of their keys).
    pub fn object(&mut self, m: &serde_json::Map<String, Value>) {
        let mut ascii = true;
        let mut ordered = true;
        let mut last: Option<&String> = None;
        for k in m.keys() {
            ascii &= k.is_ascii();
            ordered &= last.is_none_or(|l| l < k);
            last = Some(k);
        }
        self.buf.push(b'{');
        // Byte order is UTF-16 order for ASCII keys: members already in it are written as
        // they come, others sorted (by bytes when ASCII, by UTF-16 code units when not).
        if ascii && ordered {
            self.members(m.iter());
        } else {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            if ascii {
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            } else {
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            self.members(members.into_iter());
        }
        self.buf.push(b'}');
    }

    fn members<'v>(&mut self, members: impl Iterator<Item = (&'v String, &'v Value)>) {
        for (i, (k, x)) in members.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.string(k);
            self.buf.push(b':');
            self.value(x);
        }
    }

    /// Writes a finite double as ECMAScript prints it (`1e+21`, `0.000001`, `-0` as `0`).
    pub fn float(&mut self, f: f64) {
        if f == 0.0 {
            self.buf.push(b'0');
        } else {
            self.buf
                .extend_from_slice(ryu_js::Buffer::new().format_finite(f).as_bytes());
        }
    }

    /// Writes an integer; canonical only when exactly representable as an IEEE double
    /// (|n| < 2^53), which every integer Vigil writes is (or, from a tampered row, need not be).
    pub fn int(&mut self, n: i64) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vectors() -> PathBuf {
        // The package directory cargo names at run time (a shared target directory may hold
        // a test binary built in another checkout).
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        PathBuf::from(dir).join("testdata/jcs")
    }

    #[test]
    fn every_public_vector_canonicalizes_to_its_expected_bytes() {
        let dir = vectors();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.join("input")).expect("testdata/jcs/input exists") {
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

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,8}|[\\x00-\\x20\"\\\\\u{e000}\u{10000}]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "\\PC{0,6}|[a-z\u{e000}\u{10000}\u{7f}]{0,3}",
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn the_scalar_fast_path_matches_the_generic_canonicalizer(i in proptest::num::i64::ANY, f in proptest::num::f64::NORMAL, s in "\\PC*", b in proptest::bool::ANY) {
            for v in [Value::from(i), Value::from(f), Value::from(-f), Value::from(s), Value::from(b), Value::Null, Value::from(i % (1 << 53)), Value::from(f64::MIN_POSITIVE), Value::from(-0.0), Value::from(1e21), Value::from(1e-7), Value::from(u64::MAX)] {
                proptest::prop_assert_eq!(to_vec(&v), serde_json_canonicalizer::to_vec(&v).unwrap(), "{}", v);
            }
        }

        #[test]
        fn any_json_value_canonicalizes_as_the_maintained_crate_does(v in arb_json()) {
            proptest::prop_assert_eq!(String::from_utf8(to_vec(&v)).unwrap(), serde_json_canonicalizer::to_string(&v).unwrap());
        }

        #[test]
        fn the_direct_string_writer_matches_the_generic_canonicalizer(s in "\\PC*|[\\x00-\\x20\"\\\\]*") {
            let mut w = Writer::default();
            w.string(&s);
            proptest::prop_assert_eq!(w.buf, to_vec(&Value::String(s)));
        }
    }
}
