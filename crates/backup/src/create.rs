//! Taking a backup.

use crate::manifest::{
    CheckpointEntry, EncryptionInfo, ErasureEntry, Manifest, StreamEntry, TenantEntry, FORMAT,
    MANIFEST_FILE,
};
use crate::parts::{PartContext, StreamWriter};
use crate::{BackupError, BackupKey, Location};
use futures::StreamExt;
use rand::Rng;
use tokio::io::AsyncReadExt;
use vigil_store::snapshot::{self, Engine, PgSnapshot, Summary, TenantSummary};

/// What to back up, and where.
#[derive(Debug)]
pub struct BackupOptions<'a> {
    /// The store.
    pub database_url: &'a str,
    /// Where backups go; this one lands in a new directory named by its id.
    pub to: &'a Location,
    /// Encrypts the parts when set.
    pub key: Option<&'a BackupKey>,
}

/// A backup that was written.
#[derive(Debug)]
pub struct BackupSummary {
    /// Its manifest.
    pub manifest: Manifest,
    /// Where it is.
    pub at: Location,
}

/// Takes a consistent snapshot of the store and writes it as a new backup; the manifest goes
/// last, so an interrupted backup is never mistaken for a complete one.
pub async fn backup(opts: BackupOptions<'_>) -> Result<BackupSummary, BackupError> {
    let engine = Engine::of(opts.database_url)?;
    let created_at = chrono::Utc::now();
    let id = format!(
        "{}-{:04x}",
        created_at.format("%Y%m%dT%H%M%SZ"),
        rand::thread_rng().gen::<u16>()
    );
    let at = opts.to.child(&id);
    let ctx = PartContext {
        at: &at,
        backup_id: &id,
        key: opts.key,
    };
    let (summary, streams) = match &engine {
        Engine::Sqlite(path) => sqlite(opts.database_url, path, &ctx).await?,
        Engine::Postgres => postgres(opts.database_url, &ctx).await?,
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        id,
        created_at,
        vigil_version: env!("CARGO_PKG_VERSION").into(),
        engine: engine.name().into(),
        schema_version: summary.schema_version,
        compression: "zstd".into(),
        encryption: opts.key.map(|k| EncryptionInfo {
            algorithm: "AES-256-GCM".into(),
            key_id: k.id(),
        }),
        tenants: summary.tenants.into_iter().map(entry).collect(),
        streams,
        erasures: summary
            .erasures
            .into_iter()
            .map(|(tenant, subject_ref)| ErasureEntry {
                tenant,
                subject_ref,
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    at.put(MANIFEST_FILE, json).await?;
    Ok(BackupSummary { manifest, at })
}

type Snapshot = (Summary, Vec<StreamEntry>);

/// SQLite: `VACUUM INTO` a file beside the database (same file system, so there is room for
/// a copy of it), then that file is the one stream.
async fn sqlite(
    url: &str,
    path: &std::path::Path,
    ctx: &PartContext<'_>,
) -> Result<Snapshot, BackupError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".vigil-backup-")
        .tempdir_in(dir)
        .map_err(|e| BackupError::io("creating a work directory in", dir, e))?;
    let snap = tmp.path().join("snapshot.db");
    snapshot::sqlite_snapshot(url, &snap).await?;
    let summary = snapshot::sqlite_summary(&snap).await?;
    let mut w = StreamWriter::new(ctx, "database", Vec::new())?;
    let mut f = tokio::fs::File::open(&snap)
        .await
        .map_err(|e| BackupError::io("opening", &snap, e))?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| BackupError::io("reading", &snap, e))?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).await?;
    }
    Ok((summary, vec![w.finish().await?]))
}

/// Postgres: every table from one repeatable-read transaction, in `COPY` text format.
async fn postgres(url: &str, ctx: &PartContext<'_>) -> Result<Snapshot, BackupError> {
    let mut snap = PgSnapshot::begin(url).await?;
    let summary = snap.summary().await?;
    let mut streams = Vec::new();
    for table in snap.tables().await? {
        let mut w = StreamWriter::new(ctx, &table.name, table.columns.clone())?;
        let mut rows = snap.copy_out(&table).await?;
        while let Some(chunk) = rows.next().await {
            w.write(&chunk?).await?;
        }
        drop(rows);
        streams.push(w.finish().await?);
    }
    snap.finish().await?;
    Ok((summary, streams))
}

fn entry(t: TenantSummary) -> TenantEntry {
    TenantEntry {
        tenant: t.tenant,
        records: t.records,
        head_seq: t.head_seq,
        head_chain_hash: t.head_chain_hash,
        checkpoint: t
            .checkpoint
            .map(|(size, chain_hash, note)| CheckpointEntry {
                size,
                chain_hash,
                note,
            }),
    }
}
