//! Restoring a backup: check everything that can be checked before the target is touched,
//! load, and compare what was restored with the manifest.

use crate::manifest::{ErasureEntry, Manifest, StreamEntry, TenantEntry, MANIFEST_FILE};
use crate::parts::{self, PartContext, StreamReader, FEED};
use crate::{BackupError, BackupKey, Location};
use std::io::Write;
use std::time::{Duration, Instant};
use vigil_core::checkpoint::NoteVerifier;
use vigil_store::snapshot::{self, Engine, PgLoad, PgSnapshot, TenantSummary};

/// Which keys a backup's checkpoints must be signed by.
#[derive(Debug, Clone)]
pub enum Trust {
    /// These keys (the restoring service's own, or ones configured out of band).
    Keys(Vec<NoteVerifier>),
    /// The keys the backup itself records: checks consistency, not origin. Only on request.
    Recorded,
}

/// What to restore, and where.
#[derive(Debug)]
pub struct RestoreOptions<'a> {
    /// A backup, or a location holding backups (the newest is taken).
    pub from: &'a Location,
    /// The target store.
    pub database_url: &'a str,
    /// The key, for an encrypted backup.
    pub key: Option<&'a BackupKey>,
    /// Which signing keys to accept.
    pub trust: &'a Trust,
    /// Replace a target that holds records.
    pub force: bool,
    /// Erasures made after the backup can be re-applied (the caller holds the signing key for
    /// their new receipts); without it a restore that would bring erased subjects back is
    /// refused.
    pub can_reapply_erasures: bool,
}

/// A restore that was done.
#[derive(Debug)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Where it was read from.
    pub source: String,
    /// Reading and checking every part.
    pub check: Duration,
    /// Loading into the store and comparing heads.
    pub load: Duration,
    /// Subjects erased after this backup was taken (newer backups in the same place list
    /// them): their keys are back in the restored store and must be destroyed again.
    pub erasures_to_reapply: Vec<ErasureEntry>,
}

/// Checks a backup without restoring it: the manifest, the key, the checkpoints' signers and
/// every part. Returns where the backup is and its manifest.
pub async fn check(
    from: &Location,
    key: Option<&BackupKey>,
    trust: &Trust,
) -> Result<(Location, Manifest), BackupError> {
    let (at, manifest) = open_manifest(from).await?;
    check_key(&manifest, key)?;
    check_trust(&manifest, trust)?;
    check_parts(&at, &manifest, key).await?;
    Ok((at, manifest))
}

/// Reads every part and checks it (size, SHA-256, tag) and that each stream decompresses to
/// the length the manifest states.
async fn check_parts(
    at: &Location,
    manifest: &Manifest,
    key: Option<&BackupKey>,
) -> Result<(), BackupError> {
    let ctx = PartContext {
        at,
        backup_id: &manifest.id,
        key,
    };
    for stream in &manifest.streams {
        let mut reader = StreamReader::new()?;
        for part in &stream.parts {
            let bytes = parts::fetch(&ctx, part).await?;
            for chunk in bytes.chunks(FEED) {
                reader.decode(&at.show(&part.path), chunk)?;
            }
        }
        check_length(at, stream, reader.raw_bytes)?;
    }
    Ok(())
}

/// Restores a backup into the store `database_url` names.
pub async fn restore(opts: RestoreOptions<'_>) -> Result<RestoreReport, BackupError> {
    let engine = Engine::of(opts.database_url)?;
    let (at, manifest) = open_manifest(opts.from).await?;
    if manifest.engine != engine.name() {
        return Err(BackupError::Manifest(format!(
            "a {} backup restores into a {} store, not {}",
            manifest.engine,
            manifest.engine,
            engine.name()
        )));
    }
    if manifest.schema_version > engine.schema_version() {
        return Err(BackupError::Manifest(format!(
            "the backup's schema is at migration {}, this build knows {}: restore with the newer vigil that wrote it ({})",
            manifest.schema_version,
            engine.schema_version(),
            manifest.vigil_version
        )));
    }
    check_key(&manifest, opts.key)?;
    check_trust(&manifest, opts.trust)?;
    let erasures_to_reapply = later_erasures(opts.from, &at, &manifest).await?;
    if !erasures_to_reapply.is_empty() && !opts.can_reapply_erasures {
        return Err(BackupError::Manifest(format!(
            "{} data subjects were erased after this backup was taken; restoring it must erase \
             them again, which needs the audit service's signing key for the new receipts \
             (pass --data-dir)",
            erasures_to_reapply.len()
        )));
    }
    if !opts.force && !snapshot::is_empty(opts.database_url).await? {
        return Err(BackupError::NotEmpty(vigil_core::redact_url(
            opts.database_url,
        )));
    }
    let started = Instant::now();
    check_parts(&at, &manifest, opts.key).await?;
    let check_time = started.elapsed();
    let ctx = PartContext {
        at: &at,
        backup_id: &manifest.id,
        key: opts.key,
    };
    let restored = match &engine {
        Engine::Sqlite(path) => load_sqlite(&ctx, &manifest, opts.database_url, path).await?,
        Engine::Postgres => load_postgres(&ctx, &manifest, opts.database_url, opts.force).await?,
    };
    compare(&manifest.tenants, &restored)?;
    Ok(RestoreReport {
        source: at.to_string(),
        manifest,
        check: check_time,
        load: started.elapsed() - check_time,
        erasures_to_reapply,
    })
}

/// The erasures newer backups beside this one list and this one does not.
async fn later_erasures(
    from: &Location,
    at: &Location,
    manifest: &Manifest,
) -> Result<Vec<ErasureEntry>, BackupError> {
    // `from` is the backup itself or the place holding it.
    let home = if from.prefix() == at.prefix() {
        match at.parent() {
            Some((parent, _)) => parent,
            None => return Ok(Vec::new()),
        }
    } else {
        from.clone()
    };
    let mut later = std::collections::BTreeSet::new();
    for (id, m) in crate::prune::manifests(&home).await? {
        if m.created_at > manifest.created_at && id != manifest.id {
            later.extend(m.erasures);
        }
    }
    for e in &manifest.erasures {
        later.remove(e);
    }
    Ok(later.into_iter().collect())
}

/// `from` is a backup when it holds a manifest; otherwise the newest backup under it.
async fn open_manifest(from: &Location) -> Result<(Location, Manifest), BackupError> {
    if let Some(bytes) = from.get(MANIFEST_FILE).await? {
        return Ok((from.clone(), Manifest::parse(&bytes)?));
    }
    let (id, newest) = crate::prune::manifests(from).await?.pop().ok_or_else(|| {
        BackupError::Manifest(format!("{from} holds no backup (no {MANIFEST_FILE})"))
    })?;
    Ok((from.child(&id), newest))
}

fn check_key(manifest: &Manifest, key: Option<&BackupKey>) -> Result<(), BackupError> {
    match (&manifest.encryption, key) {
        (None, _) => Ok(()),
        (Some(e), None) => Err(BackupError::Key(format!(
            "the backup is encrypted ({}, key {}): pass --key-file",
            e.algorithm, e.key_id
        ))),
        (Some(e), Some(k)) if e.key_id != k.id() => Err(BackupError::Key(format!(
            "the backup was encrypted with key {}, the key file is key {}",
            e.key_id,
            k.id()
        ))),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Every tenant's latest checkpoint must open under a trusted key and state what the
/// manifest says: a backup made (or rewritten) under another key is refused before anything
/// is written.
fn check_trust(manifest: &Manifest, trust: &Trust) -> Result<(), BackupError> {
    let Trust::Keys(keys) = trust else {
        return Ok(());
    };
    for t in &manifest.tenants {
        let Some(cp) = &t.checkpoint else { continue };
        let ok = keys.iter().any(|k| {
            k.open(&cp.note).is_ok_and(|c| {
                c.tenant == t.tenant && c.size == cp.size && c.chain_hash.to_hex() == cp.chain_hash
            })
        });
        if !ok {
            return Err(BackupError::Untrusted {
                tenant: t.tenant.clone(),
                signer: signers(&cp.note),
            });
        }
    }
    Ok(())
}

/// The keys named on a note's signature lines (`name+keyid`), for the refusal's message.
fn signers(note: &str) -> String {
    use base64::Engine as _;
    let names: Vec<String> = note
        .lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|rest| rest.split_once(' '))
        .map(
            |(name, b64)| match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(blob) if blob.len() >= 4 => format!("{name}+{}", hex::encode(&blob[..4])),
                _ => name.to_string(),
            },
        )
        .collect();
    if names.is_empty() {
        "no key".into()
    } else {
        names.join(", ")
    }
}

fn check_length(at: &Location, stream: &StreamEntry, raw: u64) -> Result<(), BackupError> {
    if raw != stream.raw_bytes {
        return Err(BackupError::CorruptPart {
            part: at.show(
                &stream
                    .parts
                    .last()
                    .map(|p| p.path.clone())
                    .unwrap_or_default(),
            ),
            reason: format!(
                "stream {} decompresses to {raw} bytes, the manifest says {}",
                stream.name, stream.raw_bytes
            ),
        });
    }
    Ok(())
}

/// SQLite: the database file is written beside the target and renamed over it (with any
/// stale WAL of the old file removed first), so the target is either the old file or the
/// whole restored one.
async fn load_sqlite(
    ctx: &PartContext<'_>,
    manifest: &Manifest,
    url: &str,
    path: &std::path::Path,
) -> Result<Vec<TenantSummary>, BackupError> {
    let stream = manifest
        .streams
        .iter()
        .find(|s| s.name == "database")
        .ok_or_else(|| BackupError::Manifest("a SQLite backup without its database".into()))?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io("creating", dir, e))?;
    }
    let staging = path.with_extension("restoring");
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staging)
            .map_err(|e| BackupError::io("creating", &staging, e))?
    };
    let mut reader = StreamReader::new()?;
    for part in &stream.parts {
        let bytes = parts::fetch(ctx, part).await?;
        for chunk in bytes.chunks(FEED) {
            let raw = reader.decode(&ctx.at.show(&part.path), chunk)?;
            file.write_all(&raw)
                .map_err(|e| BackupError::io("writing", &staging, e))?;
        }
    }
    check_length(ctx.at, stream, reader.raw_bytes)?;
    file.sync_all()
        .map_err(|e| BackupError::io("syncing", &staging, e))?;
    drop(file);
    for suffix in ["-wal", "-shm"] {
        let side = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("removing", &side, e)),
        }
    }
    std::fs::rename(&staging, path).map_err(|e| BackupError::io("renaming into", path, e))?;
    // Migrates a backup of an older schema to this build's.
    drop(vigil_store::open(url).await?);
    Ok(snapshot::sqlite_summary(path).await?.tenants)
}

/// Postgres: a forced restore drops the tables first; the schema is migrated; every table is
/// loaded in one transaction, so a failure leaves an empty store, never half of one.
async fn load_postgres(
    ctx: &PartContext<'_>,
    manifest: &Manifest,
    url: &str,
    force: bool,
) -> Result<Vec<TenantSummary>, BackupError> {
    if force {
        let tables: Vec<String> = manifest.streams.iter().map(|s| s.name.clone()).collect();
        snapshot::pg_drop(url, &tables).await?;
    }
    drop(vigil_store::open(url).await?);
    let mut load = PgLoad::begin(url).await?;
    let target = load.tables().await?;
    for stream in &manifest.streams {
        let Some(table) = target.iter().find(|t| t.name == stream.name) else {
            return Err(BackupError::Manifest(format!(
                "table {} is not in this build's schema",
                stream.name
            )));
        };
        if let Some(c) = stream.columns.iter().find(|c| !table.columns.contains(c)) {
            return Err(BackupError::Manifest(format!(
                "column {}.{c} is not in this build's schema",
                stream.name
            )));
        }
        let spec = vigil_store::snapshot::TableSpec {
            name: stream.name.clone(),
            columns: stream.columns.clone(),
        };
        let mut copy = load.copy_in(&spec).await?;
        let mut reader = StreamReader::new()?;
        for part in &stream.parts {
            let bytes = parts::fetch(ctx, part).await?;
            for chunk in bytes.chunks(FEED) {
                let raw = reader.decode(&ctx.at.show(&part.path), chunk)?;
                if !raw.is_empty() {
                    copy.send(&raw).await?;
                }
            }
        }
        check_length(ctx.at, stream, reader.raw_bytes)?;
        copy.finish().await?;
    }
    if !manifest
        .streams
        .iter()
        .any(|s| s.name == "event_time_index")
    {
        load.rebuild_time_index().await?;
    }
    load.commit().await?;
    let mut snap = PgSnapshot::begin(url).await?;
    let summary = snap.summary().await?;
    snap.finish().await?;
    Ok(summary.tenants)
}

/// The restored store must show exactly the manifest's tenants, counts, heads and latest
/// checkpoints.
fn compare(expected: &[TenantEntry], restored: &[TenantSummary]) -> Result<(), BackupError> {
    for e in expected {
        let Some(r) = restored.iter().find(|r| r.tenant == e.tenant) else {
            return Err(BackupError::Mismatch {
                tenant: e.tenant.clone(),
                what: "missing".into(),
            });
        };
        let what = if r.records != e.records {
            format!("{} records, the manifest says {}", r.records, e.records)
        } else if (r.head_seq, &r.head_chain_hash) != (e.head_seq, &e.head_chain_hash) {
            format!(
                "head {} {}, the manifest says {} {}",
                r.head_seq, r.head_chain_hash, e.head_seq, e.head_chain_hash
            )
        } else if r.checkpoint.as_ref().map(|c| (c.0, &c.1))
            != e.checkpoint.as_ref().map(|c| (c.size, &c.chain_hash))
        {
            "its latest checkpoint differs".into()
        } else {
            continue;
        };
        return Err(BackupError::Mismatch {
            tenant: e.tenant.clone(),
            what,
        });
    }
    if let Some(extra) = restored
        .iter()
        .find(|r| !expected.iter().any(|e| e.tenant == r.tenant))
    {
        return Err(BackupError::Mismatch {
            tenant: extra.tenant.clone(),
            what: "not in the backup".into(),
        });
    }
    Ok(())
}
