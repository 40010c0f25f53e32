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
    /// `WHERE …` (after `tenant_id = $1`) and its binds, with `$n` placeholders.
    pub(crate) fn where_clause(&self) -> (String, Vec<Bind>) {
        let mut w = Where::default();
        if let Some(v) = &self.actor_id {
            w.cond(" AND actor_id = ?", Bind::Text(v.clone()));
        }
        match &self.action {
            Some(ActionFilter::Exact(a)) => w.cond(" AND action = ?", Bind::Text(a.clone())),
            Some(ActionFilter::Prefix(p)) => {
                // `payment.*` is the range ["payment.", "payment/"): '/' follows '.' in ASCII,
                // so the (tenant_id, action, seq) index serves it on both engines.
                w.cond(" AND action >= ?", Bind::Text(format!("{p}.")));
                w.cond(" AND action < ?", Bind::Text(format!("{p}/")));
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
        (w.sql, w.binds)
    }
}

/// Builds a condition list; `$1` is always the tenant.
#[derive(Default)]
struct Where {
    sql: String,
    binds: Vec<Bind>,
}

impl Where {
    fn cond(&mut self, template: &str, b: Bind) {
        self.binds.push(b);
        self.sql
            .push_str(&template.replace('?', &format!("${}", self.binds.len() + 1)));
    }
}
