//! Listing backups and keeping N daily / weekly ones (the newest of each day or ISO week),
//! as restic and borg do, plus the newest N whatever their dates.

use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::{BackupError, Location};
use chrono::{DateTime, Datelike, Utc};
use futures::TryStreamExt;
use std::collections::{BTreeMap, BTreeSet};

/// A complete backup (one with a manifest) under a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Its id (directory name).
    pub id: String,
    /// When its snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// Records over all tenants.
    pub records: i64,
    /// Stored bytes over all parts.
    pub bytes: u64,
    /// Whether its parts are encrypted.
    pub encrypted: bool,
}

/// Which backups to keep. A backup kept by any rule stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest N.
    pub last: usize,
    /// The newest of each of the N most recent days that have a backup.
    pub daily: usize,
    /// The newest of each of the N most recent ISO weeks that have a backup.
    pub weekly: usize,
}

impl KeepPolicy {
    /// True when no rule is set (nothing would be kept: pruning refuses that).
    pub fn is_empty(&self) -> bool {
        self.last == 0 && self.daily == 0 && self.weekly == 0
    }
}

/// The complete backups under `at` with their manifests, oldest first (one read of each
/// manifest, shared by listing, restoring the newest and finding later erasures).
pub(crate) async fn manifests(at: &Location) -> Result<Vec<(String, Manifest)>, BackupError> {
    let listing = at
        .store()
        .list_with_delimiter(Some(at.prefix()))
        .await
        .map_err(|e| BackupError::object(format!("listing {at}"), e))?;
    let mut out = Vec::new();
    for dir in listing.common_prefixes {
        let Some(id) = dir.filename() else { continue };
        let Some(bytes) = at.child(id).get(MANIFEST_FILE).await? else {
            continue;
        };
        if let Ok(m) = Manifest::parse(&bytes) {
            out.push((id.to_string(), m));
        }
    }
    out.sort_by(|(a, x), (b, y)| (x.created_at, a).cmp(&(y.created_at, b)));
    Ok(out)
}

/// The complete backups under `at`, oldest first.
pub async fn list(at: &Location) -> Result<Vec<BackupInfo>, BackupError> {
    Ok(manifests(at)
        .await?
        .into_iter()
        .map(|(id, m)| BackupInfo {
            records: m.records(),
            bytes: m.stored_bytes(),
            encrypted: m.encryption.is_some(),
            created_at: m.created_at,
            id,
        })
        .collect())
}

/// The ids `policy` keeps out of `backups`.
pub fn plan(backups: &[BackupInfo], policy: KeepPolicy) -> BTreeSet<String> {
    let mut newest_first: Vec<&BackupInfo> = backups.iter().collect();
    newest_first.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut keep: BTreeSet<String> = newest_first
        .iter()
        .take(policy.last)
        .map(|b| b.id.clone())
        .collect();
    let mut by = |n: usize, bucket: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
        let mut seen: BTreeMap<(i32, u32), ()> = BTreeMap::new();
        for b in &newest_first {
            let k = bucket(&b.created_at);
            if seen.contains_key(&k) {
                continue;
            }
            if seen.len() == n {
                break;
            }
            seen.insert(k, ());
            keep.insert(b.id.clone());
        }
    };
    by(policy.daily, &|t| (t.year(), t.ordinal()));
    by(policy.weekly, &|t| {
        let w = t.iso_week();
        (w.year(), w.week())
    });
    keep
}

/// Deletes the backups under `at` that `policy` does not keep (the manifest first, so an
/// interrupted prune leaves an incomplete backup, never one that looks whole); returns the ids
/// deleted.
pub async fn prune(at: &Location, policy: KeepPolicy) -> Result<Vec<String>, BackupError> {
    if policy.is_empty() {
        return Err(BackupError::Location(
            "a retention policy keeping nothing: set --keep-last, --keep-daily or --keep-weekly"
                .into(),
        ));
    }
    let all = list(at).await?;
    let keep = plan(&all, policy);
    let mut deleted = Vec::new();
    for b in all.into_iter().filter(|b| !keep.contains(&b.id)) {
        let dir = at.child(&b.id);
        let store = at.store();
        store
            .delete(&dir.path(MANIFEST_FILE))
            .await
            .map_err(|e| BackupError::object(format!("deleting {}", dir.show(MANIFEST_FILE)), e))?;
        let objects: Vec<_> = store
            .list(Some(dir.prefix()))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| BackupError::object(format!("listing {dir}"), e))?;
        for o in objects {
            store
                .delete(&o)
                .await
                .map_err(|e| BackupError::object(format!("deleting {o}"), e))?;
        }
        deleted.push(b.id);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, t: &str) -> BackupInfo {
        BackupInfo {
            id: id.into(),
            created_at: DateTime::parse_from_rfc3339(t).unwrap().to_utc(),
            records: 0,
            bytes: 0,
            encrypted: false,
        }
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day_and_weekly_of_each_week() {
        let all = vec![
            at("a", "2026-11-02T01:00:00Z"), // Monday, week 45
            at("b", "2026-11-09T01:00:00Z"), // week 46
            at("c", "2026-11-16T01:00:00Z"), // week 47
            at("d", "2026-11-17T01:00:00Z"),
            at("e", "2026-11-17T13:00:00Z"),
            at("f", "2026-11-18T01:00:00Z"),
        ];
        let daily = plan(
            &all,
            KeepPolicy {
                daily: 2,
                ..Default::default()
            },
        );
        assert_eq!(daily, BTreeSet::from(["e".into(), "f".into()]));
        let weekly = plan(
            &all,
            KeepPolicy {
                weekly: 2,
                ..Default::default()
            },
        );
        assert_eq!(weekly, BTreeSet::from(["b".into(), "f".into()]));
        let both = plan(
            &all,
            KeepPolicy {
                last: 1,
                daily: 1,
                weekly: 3,
            },
        );
        assert_eq!(both, BTreeSet::from(["a".into(), "b".into(), "f".into()]));
    }
}
