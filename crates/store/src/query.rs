//! Query filters, and the SQL they become (shared by both engines).

use vigil_core::event::Severity;
use vigil_core::time::Timestamp;

/// How to match `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionFilter {
    /// Exactly this action.
    Exact(String),
    /// Every action starting with `prefix.` (written `prefix.*` by callers).
    Prefix(String),
}

/// Filters for a page of records. Every field narrows the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `actor.id` equals.
    pub actor_id: Option<String>,
    /// `action` equals or starts with.
    pub action: Option<ActionFilter>,
    /// `resource.type` equals.
    pub resource_type: Option<String>,
    /// `resource.id` equals.
    pub resource_id: Option<String>,
    /// `outcome` equals.
    pub outcome: Option<String>,
    /// `severity` is this or more severe.
    pub min_severity: Option<Severity>,
    /// `occurred_at` at or after.
    pub since: Option<Timestamp>,
    /// `occurred_at` before.
    pub until: Option<Timestamp>,
    /// `trace_id` equals.
    pub trace_id: Option<String>,
    /// The record's data subject (its keyed reference) equals.
    pub subject_ref: Option<String>,
    /// Only records with a lower seq (the cursor position).
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// A value bound to a placeholder.
#[derive(Debug)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

impl Query {
    /// Appends this query's conditions to `w` (placeholders continue `w`'s numbering, so
    /// several queries' conditions can share one statement).
    pub(crate) fn push_conditions(&self, w: &mut Where) {
        if let Some(v) = &self.actor_id {
            w.cond(" AND actor_id = ?", Bind::Text(v.clone()));
        }
        match &self.action {
            Some(ActionFilter::Exact(a)) => w.cond(" AND action = ?", Bind::Text(a.clone())),
            Some(ActionFilter::Prefix(p)) => {
                // `payment.*` is the range ["payment.", "payment/"): '/' follows '.' in ASCII,
                // so the (tenant_id, action, seq) index serves it on both engines.
                let (from, to) = prefix_range(p);
                w.cond(" AND action >= ?", Bind::Text(from));
                w.cond(" AND action < ?", Bind::Text(to));
            }
            None => {}
        }
        if let Some(v) = &self.subject_ref {
            w.cond(" AND subject_ref = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &self.resource_type {
            w.cond(" AND resource_type = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &self.resource_id {
            w.cond(" AND resource_id = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &self.outcome {
            w.cond(" AND outcome = ?", Bind::Text(v.clone()));
        }
        if let Some(min) = self.min_severity {
            let names: Vec<&str> = Severity::ALL
                .iter()
                .filter(|s| **s >= min)
                .map(|s| s.as_str())
                .collect();
            if names.len() < Severity::ALL.len() {
                w.sql.push_str(" AND severity IN (");
                for (i, n) in names.iter().enumerate() {
                    w.cond(if i == 0 { "?" } else { ",?" }, Bind::Text((*n).to_owned()));
                }
                w.sql.push(')');
            }
        }
        // Timestamps are stored in one fixed-width UTC form, so text order is time order.
        if let Some(t) = self.since {
            w.cond(" AND occurred_at >= ?", Bind::Text(t.to_rfc3339()));
        }
        if let Some(t) = self.until {
            w.cond(" AND occurred_at < ?", Bind::Text(t.to_rfc3339()));
        }
        if let Some(v) = &self.trace_id {
            w.cond(" AND trace_id = ?", Bind::Text(v.clone()));
        }
        if let Some(s) = self.before_seq {
            w.cond(" AND seq < ?", Bind::Int(s));
        }
    }
}

/// `[from, to)` of the actions a `prefix.*` filter matches.
pub(crate) fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}."), format!("{prefix}/"))
}

/// Builds a condition list; `$1` is always the tenant.
#[derive(Default)]
pub(crate) struct Where {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

impl Where {
    /// Appends `template` with its `?` numbered as the next placeholder, bound to `b`.
    pub(crate) fn cond(&mut self, template: &str, b: Bind) {
        self.binds.push(b);
        self.sql
            .push_str(&template.replace('?', &format!("${}", self.binds.len() + 1)));
    }
}

/// The time index's levels: a bucket is a minute, an hour or a day of `occurred_at`, named
/// by the first `len` characters of the timestamp's fixed-width text form
/// (`2026-11-22T10:05`, `2026-11-22T10`, `2026-11-22`). Per tenant and bucket the index keeps
/// the lowest and highest seq of the records that occurred in it, and how many there are.
pub(crate) const TIME_LEVELS: [TimeLevel; 3] = [
    TimeLevel {
        level: 0,
        len: 16,
        micros: 60_000_000,
    },
    TimeLevel {
        level: 1,
        len: 13,
        micros: 3_600_000_000,
    },
    TimeLevel {
        level: 2,
        len: 10,
        micros: 86_400_000_000,
    },
];

/// One level of the time index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeLevel {
    pub(crate) level: i64,
    /// Characters of the timestamp that name a bucket.
    pub(crate) len: usize,
    /// A bucket's width.
    pub(crate) micros: i64,
}

/// One time-index row: `n` records with seqs in `[min_seq, max_seq]` occurred in `bucket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimeBucket {
    pub(crate) level: i64,
    pub(crate) bucket: String,
    pub(crate) min_seq: i64,
    pub(crate) max_seq: i64,
    pub(crate) n: i64,
}

/// The time-index rows a batch of `(occurred_at, seq)` adds to (merged into existing rows by
/// taking the lower minimum, the higher maximum and the sum of counts).
pub(crate) fn time_buckets<'a>(records: impl Iterator<Item = (&'a str, i64)>) -> Vec<TimeBucket> {
    let mut out: std::collections::BTreeMap<(i64, &'a str), (i64, i64, i64)> =
        std::collections::BTreeMap::new();
    for (at, seq) in records {
        for l in TIME_LEVELS {
            let key = at.get(..l.len).unwrap_or(at);
            let e = out.entry((l.level, key)).or_insert((seq, seq, 0));
            e.0 = e.0.min(seq);
            e.1 = e.1.max(seq);
            e.2 += 1;
        }
    }
    out.into_iter()
        .map(|((level, bucket), (min_seq, max_seq, n))| TimeBucket {
            level,
            bucket: bucket.to_owned(),
            min_seq,
            max_seq,
            n,
        })
        .collect()
}

/// A range of buckets `[from, to)` (by name) at one level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BucketRange {
    pub(crate) level: i64,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// Bucket ranges whose union is the smallest run of whole minutes holding `[since, until)`:
/// minutes up to the first whole hour, hours up to the first whole day, days, and the same
/// down again at the end — at most five ranges, however long the window.
pub(crate) fn time_cover(since: Option<Timestamp>, until: Option<Timestamp>) -> Vec<BucketRange> {
    let floor = |t: i64, unit: i64| t - t.rem_euclid(unit);
    let ceil = |t: i64, unit: i64| floor(t + unit - 1, unit);
    let (m, h, d) = (TIME_LEVELS[0], TIME_LEVELS[1], TIME_LEVELS[2]);
    let mut a = floor(since.map_or(i64::MIN / 4, |t| t.micros()), m.micros);
    let mut b = ceil(until.map_or(i64::MAX / 4, |t| t.micros()), m.micros);
    let mut out = vec![];
    if a >= b {
        return out;
    }
    let mut push = |l: TimeLevel, from: i64, to: i64| {
        if from < to {
            out.push(BucketRange {
                level: l.level,
                from: bucket_name(from, l.len),
                to: bucket_name(to, l.len),
            });
        }
    };
    for (fine, coarse) in [(m, h), (h, d)] {
        let (a2, b2) = (ceil(a, coarse.micros), floor(b, coarse.micros));
        if a2 >= b2 {
            push(fine, a, b);
            return out;
        }
        push(fine, a, a2);
        push(fine, b2, b);
        (a, b) = (a2, b2);
    }
    push(d, a, b);
    out
}

/// The name of the bucket starting at `micros`: before 2000 sorts before every bucket, after
/// 9999 after every one.
fn bucket_name(micros: i64, len: usize) -> String {
    /// 9999-12-31T23:59:59.999999Z, the last instant a timestamp can hold.
    const LAST: i64 = 253_402_300_799_999_999;
    match Timestamp::from_micros(micros) {
        Ok(t) => t.to_rfc3339()[..len].to_owned(),
        Err(_) if micros < LAST => String::new(),
        Err(_) => "~".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The buckets a range names, as `[start, end)` in µs (walking bucket by bucket).
    fn spans(r: &BucketRange) -> Vec<(i64, i64)> {
        let l = TIME_LEVELS[r.level as usize];
        let start = |name: &str| {
            let full = format!("{name}{}", &"2000-01-01T00:00:00.000000Z"[name.len()..]);
            Timestamp::parse(&full).unwrap().micros()
        };
        let (mut t, end) = (start(&r.from), start(&r.to));
        let mut out = vec![];
        while t < end {
            out.push((t, t + l.micros));
            t += l.micros;
        }
        out
    }

    proptest! {
        #[test]
        fn the_cover_is_exactly_the_whole_minutes_around_the_window(
            since in 946_684_800_000_000i64..1_000_000_000_000_000,
            len in 0i64..40 * 86_400_000_000,
        ) {
            let until = since + len;
            let cover = time_cover(
                Some(Timestamp::from_micros(since).unwrap()),
                Some(Timestamp::from_micros(until).unwrap()),
            );
            prop_assert!(cover.len() <= 5);
            let mut all: Vec<(i64, i64)> = cover.iter().flat_map(spans).collect();
            all.sort();
            if len == 0 {
                prop_assert!(all.is_empty());
                return Ok(());
            }
            // Contiguous, no overlap, from the minute holding `since` to the one holding the
            // last instant before `until`.
            for w in all.windows(2) {
                prop_assert_eq!(w[0].1, w[1].0);
            }
            prop_assert_eq!(all[0].0, since - since.rem_euclid(60_000_000));
            let last = until - 1;
            prop_assert_eq!(all.last().unwrap().1, last - last.rem_euclid(60_000_000) + 60_000_000);
        }
    }

    #[test]
    fn open_windows_reach_past_every_bucket() {
        let t = Timestamp::parse("2026-11-22T10:05:30Z").unwrap();
        let after = time_cover(Some(t), None);
        assert!(after
            .iter()
            .any(|r| r.level == 0 && r.from == "2026-11-22T10:05"));
        assert!(after.iter().any(|r| r.level == 2 && r.to == "~"));
        let before = time_cover(None, Some(t));
        assert!(before.iter().any(|r| r.level == 2 && r.from.is_empty()));
        assert!(before
            .iter()
            .any(|r| r.level == 0 && r.to == "2026-11-22T10:06"));
    }

    #[test]
    fn a_batch_counts_once_per_bucket_and_level() {
        let rows = time_buckets(
            [
                ("2026-11-22T10:05:01.000000Z", 7),
                ("2026-11-22T10:05:59.000000Z", 5),
                ("2026-11-22T11:00:00.000000Z", 6),
            ]
            .into_iter(),
        );
        let find = |b: &str| rows.iter().find(|r| r.bucket == b).unwrap().clone();
        assert_eq!(
            (
                find("2026-11-22T10:05").min_seq,
                find("2026-11-22T10:05").max_seq,
                find("2026-11-22T10:05").n
            ),
            (5, 7, 2)
        );
        assert_eq!(find("2026-11-22T10").n, 2);
        assert_eq!(
            (
                find("2026-11-22").min_seq,
                find("2026-11-22").max_seq,
                find("2026-11-22").n
            ),
            (5, 7, 3)
        );
        assert_eq!(rows.len(), 2 + 2 + 1);
    }
}
