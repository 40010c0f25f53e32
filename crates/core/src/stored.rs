//! Records as a store holds them: the columns' text, the JSON columns not yet decoded.
//!
//! Reading a whole chain (verification) is bound by turning rows into [`Record`]s — a string
//! per column and a JSON decode of four columns per row — more than by hashing them.
//! [`StoredBatch`] keeps a batch of rows as one text buffer with offsets, and
//! [`StoredRow::to_record`] decodes a row only where a [`Record`] is wanted; the verifier
//! checks most rows straight from the text (`ChainVerifier::push_stored`).

use crate::record::{Party, Record, RecordSource};
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

impl StoredRow<'_> {
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

/// The members of a JSON object written the way Vigil writes its string maps — `{"k":"v",…}`
/// with keys of printable ASCII other than `"` and `\`, in strictly ascending order, no
/// whitespace, and every value exactly `value_len` lowercase hex digits — or None for any
/// other text (which may still be valid JSON: the caller then decodes it the general way).
/// Such text is its own RFC 8785 form: hashing it as it stands is hashing it canonicalized.
pub(crate) fn plain_hex_map(s: &str, value_len: usize) -> Option<PlainHexMap<'_>> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    let mut i = 1;
    let mut prev: Option<&[u8]> = None;
    let mut count = 0;
    let end = b.len() - 1;
    while i < end {
        if count > 0 {
            if b[i] != b',' {
                return None;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let k0 = i + 1;
        let mut j = k0;
        while j < end && b[j] != b'"' {
            if !(0x20..0x7f).contains(&b[j]) || b[j] == b'\\' {
                return None;
            }
            j += 1;
        }
        let key = &b[k0..j];
        if prev.is_some_and(|p| p >= key) {
            return None;
        }
        prev = Some(key);
        // `":"` then the value in quotes.
        let v0 = j + 3;
        let v1 = v0 + value_len;
        if b.get(j..v0) != Some(b"\":\"")
            || v1 >= end
            || b[v1] != b'"'
            || !b[v0..v1]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            return None;
        }
        i = v1 + 1;
        count += 1;
    }
    Some(PlainHexMap { text: s, count })
}

/// A JSON object [`plain_hex_map`] accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainHexMap<'a> {
    /// The object's text, canonical as it stands.
    pub(crate) text: &'a str,
    /// How many members it has.
    pub(crate) count: usize,
}

impl<'a> PlainHexMap<'a> {
    /// The members in order, with their index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let inner = &self.text[1..self.text.len() - 1];
        inner.split("\",\"").filter(|m| !m.is_empty()).map(|m| {
            let m = m.strip_prefix('"').unwrap_or(m);
            let m = m.strip_suffix('"').unwrap_or(m);
            m.split_once("\":\"").expect("checked by plain_hex_map")
        })
    }

    /// The value of `key`, and the member's index.
    pub(crate) fn get(&self, key: &str) -> Option<(usize, &'a str)> {
        self.iter()
            .enumerate()
            .find(|(_, (k, _))| *k == key)
            .map(|(i, (_, v))| (i, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_maps_are_recognized_and_anything_else_is_not() {
        let h = "ab".repeat(32);
        let ok = format!(r#"{{"a":"{h}","b c":"{h}"}}"#);
        let m = plain_hex_map(&ok, 64).expect("plain");
        assert_eq!(m.count, 2);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [("a", &h[..]), ("b c", &h[..])]
        );
        assert_eq!(m.get("b c"), Some((1, &h[..])));
        assert_eq!(m.get("c"), None);
        assert_eq!(plain_hex_map("{}", 64).map(|m| m.count), Some(0));
        let empty_key = format!(r#"{{"":"{h}","x":"{h}"}}"#);
        let m = plain_hex_map(&empty_key, 64).expect("an empty key is a key");
        assert_eq!(m.iter().collect::<Vec<_>>(), [("", &h[..]), ("x", &h[..])]);
        for bad in [
            format!(r#"{{"b":"{h}","a":"{h}"}}"#),        // out of order
            format!(r#"{{"a":"{h}","a":"{h}"}}"#),        // duplicate
            format!(r#"{{"a": "{h}"}}"#),                 // whitespace
            format!(r#"{{"a":"{}"}}"#, h.to_uppercase()), // upper case
            format!(r#"{{"a":"{}"}}"#, &h[2..]),          // short
            format!(r#"{{"\u0061":"{h}"}}"#),             // escape
            format!(r#"{{"é":"{h}"}}"#),                  // not ASCII
            format!(r#"{{"a":"{h}",}}"#),                 // trailing comma
            format!(r#"{{"a":"{h}"}},"x":1}}"#),          // more after the object
            "".to_owned(),
            "{".to_owned(),
            "}".to_owned(),
            r#"{""}"#.to_owned(),
        ] {
            assert!(plain_hex_map(&bad, 64).is_none(), "{bad}");
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
