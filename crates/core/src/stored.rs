//! Records as a store holds them: the columns' text, the JSON columns not yet decoded.
//!
//! Reading a whole chain (verification) is bound by turning rows into [`Record`]s — a string
//! per column and a JSON decode of four columns per row — more than by hashing them.
//! [`StoredBatch`] keeps a batch of rows as one text buffer with offsets, and
//! [`StoredRow::to_record`] decodes a row only where a [`Record`] is wanted; the verifier
//! checks most rows straight from the text (`ChainVerifier::push_stored`).

use crate::record::{HashedFields, Party, Record, RecordSource};
use std::collections::BTreeMap;

/// One stored row, borrowed: every column as the store returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredRow<'a> {
    /// `tenant_id`.
    pub tenant_id: &'a str,
    /// `seq`.
    pub seq: i64,
    /// `event_id`.
    pub event_id: &'a str,
    /// `occurred_at`.
    pub occurred_at: &'a str,
    /// `received_at`.
    pub received_at: &'a str,
    /// `actor_type`.
    pub actor_type: &'a str,
    /// `actor_id`.
    pub actor_id: &'a str,
    /// `action`.
    pub action: &'a str,
    /// `resource_type`.
    pub resource_type: &'a str,
    /// `resource_id`.
    pub resource_id: &'a str,
    /// `outcome`.
    pub outcome: &'a str,
    /// `severity`.
    pub severity: &'a str,
    /// `source_service`.
    pub source_service: &'a str,
    /// `producer_id`.
    pub producer_id: Option<&'a str>,
    /// `producer_seq`.
    pub producer_seq: Option<i64>,
    /// `trace_id`.
    pub trace_id: Option<&'a str>,
    /// `schema_version`.
    pub schema_version: i64,
    /// `payload_commitments` (a JSON object).
    pub payload_commitments: &'a str,
    /// `payload` (a JSON object).
    pub payload: &'a str,
    /// `payload_salts` (a JSON object).
    pub payload_salts: &'a str,
    /// `leaf_hash`.
    pub leaf_hash: &'a str,
    /// `chain_hash`.
    pub chain_hash: &'a str,
    /// `subject_ref`.
    pub subject_ref: Option<&'a str>,
    /// `payload_sealed` (a JSON object).
    pub payload_sealed: &'a str,
}

/// Decodes a JSON column of a possibly tampered row. Anything unparseable becomes a marker
/// member, so that verification reports the record instead of the read failing.
fn json_map<T: serde::de::DeserializeOwned>(raw: &str, marker: impl FnOnce(String) -> T) -> T {
    serde_json::from_str(raw).unwrap_or_else(|_| marker(raw.to_owned()))
}

/// The marker member an unparseable JSON column reads as.
const UNPARSEABLE: &str = "\u{0}unparseable";

impl<'a> StoredRow<'a> {
    /// The hashed form's members other than the commitments, as the columns hold them.
    pub(crate) fn hashed_fields(&self) -> HashedFields<'a> {
        HashedFields {
            tenant_id: self.tenant_id,
            seq: self.seq,
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            received_at: self.received_at,
            actor_kind: self.actor_type,
            actor_id: self.actor_id,
            action: self.action,
            resource_kind: self.resource_type,
            resource_id: self.resource_id,
            outcome: self.outcome,
            severity: self.severity,
            service: self.source_service,
            producer_id: self.producer_id,
            producer_seq: self.producer_seq,
            trace_id: self.trace_id,
            schema_version: self.schema_version,
        }
    }

    /// The record this row holds. A JSON column that does not parse reads as a marker member
    /// (an unparseable commitments or sealed column as a member that never verifies), so a
    /// tampered row is reported by the verifier instead of failing the read.
    pub fn to_record(&self) -> Record {
        Record {
            tenant_id: self.tenant_id.to_owned(),
            seq: self.seq,
            event_id: self.event_id.to_owned(),
            occurred_at: self.occurred_at.to_owned(),
            received_at: self.received_at.to_owned(),
            actor: Party {
                kind: self.actor_type.to_owned(),
                id: self.actor_id.to_owned(),
            },
            action: self.action.to_owned(),
            resource: Party {
                kind: self.resource_type.to_owned(),
                id: self.resource_id.to_owned(),
            },
            outcome: self.outcome.to_owned(),
            severity: self.severity.to_owned(),
            source: RecordSource {
                service: self.source_service.to_owned(),
                producer_id: self.producer_id.map(str::to_owned),
                producer_seq: self.producer_seq,
            },
            trace_id: self.trace_id.map(str::to_owned),
            schema_version: self.schema_version,
            payload_commitments: json_map(self.payload_commitments, |raw| {
                BTreeMap::from([(UNPARSEABLE.to_owned(), raw)])
            }),
            payload: json_map(self.payload, |raw| {
                serde_json::Map::from_iter([(
                    UNPARSEABLE.to_owned(),
                    serde_json::Value::String(raw),
                )])
            }),
            payload_salts: json_map(self.payload_salts, |_| BTreeMap::new()),
            withheld: BTreeMap::new(),
            leaf_hash: self.leaf_hash.to_owned(),
            chain_hash: self.chain_hash.to_owned(),
            subject_ref: self.subject_ref.map(str::to_owned),
            sealed: json_map(self.payload_sealed, |raw| {
                BTreeMap::from([(UNPARSEABLE.to_owned(), raw)])
            }),
        }
    }
}

/// How many text columns a row has (nullable ones included).
const TEXTS: usize = 21;

/// Where one row's columns lie in the batch's text.
#[derive(Clone, Debug)]
struct Spans {
    seq: i64,
    producer_seq: Option<i64>,
    schema_version: i64,
    /// The end of each text column; each starts where the one before ends.
    ends: [u32; TEXTS],
    /// Bit i: text column i is NULL.
    nulls: u32,
}

/// A batch of stored rows in one text buffer: one allocation per batch instead of some thirty
/// per row.
#[derive(Clone, Debug, Default)]
pub struct StoredBatch {
    text: String,
    rows: Vec<Spans>,
}

impl StoredBatch {
    /// An empty batch with room for `rows` rows of about `bytes` bytes each.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        StoredBatch {
            text: String::with_capacity(rows * bytes),
            rows: Vec::with_capacity(rows),
        }
    }

    /// Copies `row` in.
    pub fn push(&mut self, row: &StoredRow<'_>) {
        let texts: [Option<&str>; TEXTS] = [
            Some(row.tenant_id),
            Some(row.event_id),
            Some(row.occurred_at),
            Some(row.received_at),
            Some(row.actor_type),
            Some(row.actor_id),
            Some(row.action),
            Some(row.resource_type),
            Some(row.resource_id),
            Some(row.outcome),
            Some(row.severity),
            Some(row.source_service),
            row.producer_id,
            row.trace_id,
            Some(row.payload_commitments),
            Some(row.payload),
            Some(row.payload_salts),
            Some(row.leaf_hash),
            Some(row.chain_hash),
            row.subject_ref,
            Some(row.payload_sealed),
        ];
        let mut spans = Spans {
            seq: row.seq,
            producer_seq: row.producer_seq,
            schema_version: row.schema_version,
            ends: [0; TEXTS],
            nulls: 0,
        };
        for (i, t) in texts.into_iter().enumerate() {
            match t {
                Some(t) => self.text.push_str(t),
                None => spans.nulls |= 1 << i,
            }
            spans.ends[i] = u32::try_from(self.text.len()).expect("a batch under 4 GiB");
        }
        self.rows.push(spans);
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The last row's seq.
    pub fn last_seq(&self) -> Option<i64> {
        self.rows.last().map(|s| s.seq)
    }

    /// The rows, in the order pushed.
    pub fn rows(&self) -> impl Iterator<Item = StoredRow<'_>> + '_ {
        let mut start = 0usize;
        self.rows.iter().map(move |s| {
            let mut cols: [Option<&str>; TEXTS] = [None; TEXTS];
            for (i, c) in cols.iter_mut().enumerate() {
                let end = s.ends[i] as usize;
                if s.nulls & (1 << i) == 0 {
                    *c = Some(&self.text[start..end]);
                }
                start = end;
            }
            let t = |i: usize| cols[i].unwrap_or("");
            StoredRow {
                tenant_id: t(0),
                seq: s.seq,
                event_id: t(1),
                occurred_at: t(2),
                received_at: t(3),
                actor_type: t(4),
                actor_id: t(5),
                action: t(6),
                resource_type: t(7),
                resource_id: t(8),
                outcome: t(9),
                severity: t(10),
                source_service: t(11),
                producer_id: cols[12],
                producer_seq: s.producer_seq,
                trace_id: cols[13],
                schema_version: s.schema_version,
                payload_commitments: t(14),
                payload: t(15),
                payload_salts: t(16),
                leaf_hash: t(17),
                chain_hash: t(18),
                subject_ref: cols[19],
                payload_sealed: t(20),
            }
        })
    }
}

/// The most members [`plain_string_map`] takes (more go the general way).
const MAX_PLAIN_MEMBERS: usize = 64;

/// The members of a JSON object of strings written the way Vigil writes its string maps —
/// `{"k":"v",…}` with no whitespace, no escapes or control characters anywhere, keys of ASCII
/// in strictly ascending order, at most 64 members — or None for any other text (which may
/// still be valid JSON: the caller then decodes it the general way). Such text is its own
/// RFC 8785 form: hashing it as it stands is hashing it canonicalized.
pub(crate) fn plain_string_map(s: &str) -> Option<PlainMap<'_>> {
    let b = s.as_bytes();
    // One pass the compiler vectorizes; after it, every '"' is a string's delimiter.
    if b.first() != Some(&b'{')
        || b.last() != Some(&b'}')
        || !b
            .iter()
            .fold(true, |ok, &c| ok & (c >= 0x20) & (c != b'\\'))
    {
        return None;
    }
    let mut map = PlainMap {
        text: s,
        count: 0,
        members: [(0, 0, 0); MAX_PLAIN_MEMBERS],
    };
    let quote = |from: usize| memchr::memchr(b'"', &b[from..]).map(|n| from + n);
    let end = b.len() - 1;
    let mut i = 1;
    let mut prev: &[u8] = &[];
    while i < end {
        if map.count > 0 {
            if b[i] != b',' {
                return None;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'"') || map.count == MAX_PLAIN_MEMBERS {
            return None;
        }
        let k0 = i + 1;
        let k1 = quote(k0)?;
        let key = &b[k0..k1];
        if !key.is_ascii() || (map.count > 0 && prev >= key) {
            return None;
        }
        prev = key;
        // `":"` then the value up to its closing quote.
        let v0 = k1 + 3;
        if b.get(k1..v0) != Some(b"\":\"") {
            return None;
        }
        let v1 = quote(v0)?;
        if v1 >= end {
            return None;
        }
        map.members[map.count] = (k0 as u32, k1 as u32, v1 as u32);
        map.count += 1;
        i = v1 + 1;
    }
    Some(map)
}

/// A JSON object [`plain_string_map`] accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainMap<'a> {
    /// The object's text, canonical as it stands.
    pub(crate) text: &'a str,
    /// How many members it has.
    pub(crate) count: usize,
    /// Where each member's key starts and ends, and where its value ends (it starts three
    /// bytes after the key's end).
    members: [(u32, u32, u32); MAX_PLAIN_MEMBERS],
}

impl<'a> PlainMap<'a> {
    fn member(&self, i: usize) -> (&'a str, &'a str) {
        let (k0, k1, v1) = self.members[i];
        let (k0, k1, v1) = (k0 as usize, k1 as usize, v1 as usize);
        (&self.text[k0..k1], &self.text[k1 + 3..v1])
    }

    /// The members in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        (0..self.count).map(|i| self.member(i))
    }

    /// The value of `key`, and the member's index.
    pub(crate) fn get(&self, key: &str) -> Option<(usize, &'a str)> {
        (0..self.count)
            .map(|i| (i, self.member(i)))
            .find(|(_, (k, _))| *k == key)
            .map(|(i, (_, v))| (i, v))
    }
}

/// Splits a JSON object written without whitespace — `{"k":V,…}`, keys without escapes —
/// into its members, calling `f` with each key and value text until it returns false; false
/// when `f` did, or the text is not of that shape. A value's text is delimited, not
/// validated: the caller hashes it against a commitment, and a text that hashes to one is
/// the canonical JSON of the committed value. With every value valid JSON, the object is
/// too, and a JSON parser reads exactly these members.
pub(crate) fn plain_members<'a>(s: &'a str, mut f: impl FnMut(&'a str, &'a str) -> bool) -> bool {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return false;
    }
    let end = b.len() - 1;
    let mut i = 1;
    while i < end {
        if i > 1 {
            if b[i] != b',' {
                return false;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return false;
        }
        let k0 = i + 1;
        let Some(k1) = memchr::memchr2(b'"', b'\\', &b[k0..end]).map(|n| k0 + n) else {
            return false;
        };
        if b[k1] != b'"' || b.get(k1 + 1) != Some(&b':') {
            return false;
        }
        let v0 = k1 + 2;
        let Some(v1) = value_end(b, v0, end) else {
            return false;
        };
        // Every index sliced at is that of an ASCII byte: a character boundary.
        if !f(&s[k0..k1], &s[v0..v1]) {
            return false;
        }
        i = v1;
    }
    i == end
}

/// Where the JSON value starting at `i` ends (exclusive), for well-formed text without
/// whitespace; None when it is unclosed by `end`, its brackets do not pair (up to 64 deep)
/// or a top-level number or literal is empty. Garbage gives some end at an ASCII byte, never
/// a panic.
fn value_end(b: &[u8], mut i: usize, end: usize) -> Option<usize> {
    // Bit n: the bracket open at depth n is '{' (else '[').
    let (mut depth, mut braces) = (0u32, 0u64);
    loop {
        if i >= end {
            return None;
        }
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', b.get(i..end)?)?;
                    if b[i] == b'"' {
                        i += 1;
                        break;
                    }
                    i += 2;
                }
            }
            c @ (b'{' | b'[') => {
                if depth == 64 {
                    return None;
                }
                braces = (braces & !(1 << depth)) | (u64::from(c == b'{') << depth);
                depth += 1;
                i += 1;
                continue;
            }
            c @ (b'}' | b']') => {
                depth = depth.checked_sub(1)?;
                if (braces >> depth) & 1 != u64::from(c == b'}') {
                    return None;
                }
                i += 1;
            }
            _ if depth > 0 => {
                i += 1;
                continue;
            }
            // A number or a literal at the top.
            _ => {
                let n = b[i..end]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'))
                    .count();
                return (n > 0).then_some(i + n);
            }
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_maps_are_recognized_and_anything_else_is_not() {
        let h = "ab".repeat(32);
        let ok = format!(r#"{{"a":"{h}","b c":"{h}"}}"#);
        let m = plain_string_map(&ok).expect("plain");
        assert_eq!(m.count, 2);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [("a", &h[..]), ("b c", &h[..])]
        );
        assert_eq!(m.get("b c"), Some((1, &h[..])));
        assert_eq!(m.get("c"), None);
        assert_eq!(plain_string_map("{}").map(|m| m.count), Some(0));
        let many = |n: usize| {
            let m: Vec<String> = (0..n).map(|i| format!(r#""k{i:03}":"{h}""#)).collect();
            format!("{{{}}}", m.join(","))
        };
        assert_eq!(plain_string_map(&many(64)).map(|m| m.count), Some(64));
        assert!(plain_string_map(&many(65)).is_none());
        let empty_key = format!(r#"{{"":"{h}","x":"{h}"}}"#);
        let m = plain_string_map(&empty_key).expect("an empty key is a key");
        assert_eq!(m.iter().collect::<Vec<_>>(), [("", &h[..]), ("x", &h[..])]);
        for bad in [
            format!(r#"{{"b":"{h}","a":"{h}"}}"#), // out of order
            format!(r#"{{"a":"{h}","a":"{h}"}}"#), // duplicate
            format!(r#"{{"a": "{h}"}}"#),          // whitespace
            "{\"a\":\"x\ny\"}".to_owned(),         // control character
            r#"{"a":"x\"y"}"#.to_owned(),          // escaped quote
            format!(r#"{{"a":"{h}","b":1}}"#),     // not a string
            format!(r#"{{"\u0061":"{h}"}}"#),      // escape
            format!(r#"{{"é":"{h}"}}"#),           // not ASCII
            format!(r#"{{"a":"{h}",}}"#),          // trailing comma
            format!(r#"{{"a":"{h}"}},"x":1}}"#),   // more after the object
            "".to_owned(),
            "{".to_owned(),
            "}".to_owned(),
            r#"{""}"#.to_owned(),
        ] {
            assert!(plain_string_map(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_members_split_what_a_parser_would_and_refuse_other_shapes() {
        let split = |s: &str| {
            let mut out = vec![];
            plain_members(s, |k, v| {
                out.push((k.to_owned(), v.to_owned()));
                true
            })
            .then_some(out)
        };
        let text =
            r#"{"a":1.5,"b":"x\"}y","c":{"d":[1,{"e":"]"}],"f":null},"g":[],"h":true,"i":-2e-7}"#;
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).unwrap();
        let got = split(text).expect("plain");
        assert_eq!(
            got.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            parsed.keys().map(String::as_str).collect::<Vec<_>>()
        );
        for (k, v) in &got {
            assert_eq!(
                &serde_json::from_str::<serde_json::Value>(v).unwrap(),
                &parsed[k]
            );
        }
        assert_eq!(split("{}"), Some(vec![]));
        for bad in [
            r#"{"a": 1}"#,
            r#"{"a":1 ,"b":2}"#,
            r#"{"a":1,}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":"unclosed}"#,
            r#"{"a":[1}"#,
            r#"{"a":1]}"#,
            r#"["a",1]"#,
            r#"{"a"}"#,
            "{",
            "",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
        // Garbage never panics, whatever it is split into.
        for junk in ["{\"a\":\"\\é\"}", "{\"é\":é}", "{\"a\":}}}", "{\"a\":\"\\"] {
            let _ = split(junk);
        }
    }

    #[test]
    fn a_batch_gives_back_its_rows() {
        let row = |seq: i64, trace: Option<&'static str>| StoredRow {
            tenant_id: "t",
            seq,
            event_id: "e",
            occurred_at: "o",
            received_at: "r",
            actor_type: "user",
            actor_id: "u",
            action: "a.b",
            resource_type: "doc",
            resource_id: "d",
            outcome: "success",
            severity: "info",
            source_service: "svc",
            producer_id: None,
            producer_seq: Some(seq * 2),
            trace_id: trace,
            schema_version: 1,
            payload_commitments: "{}",
            payload: "{}",
            payload_salts: "{}",
            leaf_hash: "l",
            chain_hash: "c",
            subject_ref: Some(""),
            payload_sealed: "{}",
        };
        let rows = [row(1, None), row(2, Some("x")), row(3, Some(""))];
        let mut b = StoredBatch::default();
        for r in &rows {
            b.push(r);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.last_seq(), Some(3));
        assert_eq!(b.rows().collect::<Vec<_>>(), rows);
    }
}
