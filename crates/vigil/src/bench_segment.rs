//! `vigil bench segment`: a prototype of the ingest design issue 15 (item 5) asks to measure
//! before it is adopted, beside today's paths in one run.
//!
//! The prototype keeps each tenant's records in an append-only segment file: per group one
//! write and one `fdatasync` (the durable record, as the store's `synchronous = FULL` commit is
//! today). The SQL side holds only what the write path needs: one row per group (its seq range
//! and where it lies in the file) and the event-id index that backs idempotency, in a WAL
//! database without a flush per commit (it can be rebuilt from the segments' tails). The query
//! indexes are built behind, in bulk, by an indexer that takes what the writers appended and
//! inserts it into the real store in large transactions.
//!
//! Each round, with new tenants, one tenant per client, the same JSON events:
//! - `raw`: the real store's insert (every index), a transaction per batch (the baseline);
//! - `chained`: today's ingest through the sequencer into the real store;
//! - `segments`: the prototype's write path alone (validation, sealing, serialising, append +
//!   flush, group row, event-id rows);
//! - `segments + indexer`: the same with the indexer running beside it, and when the indexer
//!   has caught up (the rate at which events become queryable).

use crate::bench::{
    chained_run, client_copies, client_inputs, prepare_raw, raw_run, seal_all, start_clock, timed,
    validate, Timed,
};
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::QueryBuilder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vigil_audit::checkpointer::Checkpointer;
use vigil_audit::metrics::AuditMetrics;
use vigil_audit::sequencer::Sequencer;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::NoteSigner;
use vigil_core::event::Event;
use vigil_core::ids::TenantId;
use vigil_store::{NewRecord, Store};

#[derive(Args, Debug)]
pub(crate) struct SegmentArgs {
    /// An empty directory for the run's files (the SQLite store, the segments and their
    /// index); a temporary one when not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Concurrent clients, each its own tenant.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Events per request / per group.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches each client sends per run.
    #[arg(long, default_value_t = 6)]
    batches: usize,
    /// Rounds (each with new tenants).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Records per transaction of the indexer that builds the query indexes behind.
    #[arg(long, default_value_t = 6000)]
    index_chunk: usize,
}

/// The prototype's write-path index: one row per group, one per event id.
const INDEX_SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS segment_groups (tenant_id TEXT NOT NULL, first_seq INTEGER NOT NULL, \
     last_seq INTEGER NOT NULL, file_offset INTEGER NOT NULL, len INTEGER NOT NULL, \
     PRIMARY KEY (tenant_id, first_seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS segment_ids (tenant_id TEXT NOT NULL, event_id TEXT NOT NULL, \
     seq INTEGER NOT NULL, PRIMARY KEY (tenant_id, event_id)) WITHOUT ROWID",
];

/// Rows per statement of the event-id insert (3 parameters each, under SQLite's limit).
const ID_ROWS: usize = 1000;

pub(crate) async fn run(a: SegmentArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let store_url = format!("sqlite://{}", dir.join("store.db").display());
    let store = vigil_store::open(&store_url)
        .await
        .context("opening the store")?;
    let metrics = AuditMetrics::new();
    let cp = Arc::new(Checkpointer::new(
        Arc::clone(&store),
        NoteSigner::new("bench", &[7; 32])?,
        metrics.clone(),
        1000,
        Duration::from_secs(60),
    ));
    let seq = Sequencer::new(Arc::clone(&store), cp, metrics, 5000, None);
    // One connection: SQLite has one writer, and 16 clients contending for its lock through
    // a pool busy-wait (SQLite's busy handler sleeps in growing steps) instead of queueing.
    let index = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(dir.join("segments.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
        )
        .await
        .context("opening the segment index")?;
    for ddl in INDEX_SCHEMA {
        sqlx::query(ddl).execute(&index).await?;
    }
    let segments = dir.join("segments");
    std::fs::create_dir_all(&segments)?;

    let per_client = a.batch * a.batches;
    let total = (a.clients * per_client) as f64;
    println!(
        "segment prototype: {} clients (a tenant each) x {} batches x {} events = {total} events per run; SQLite in {}",
        a.clients,
        a.batches,
        a.batch,
        dir.display()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let mut rows: Vec<[f64; 5]> = vec![];
    for round in 0..a.rounds {
        let inputs = client_inputs(&mut rng, a.clients, per_client, round);
        let prepared = prepare_raw(&inputs, |c| format!("raw-{round}-{c}"))?;
        let raw = total / raw_run(&store, prepared, a.batch).await?.took.as_secs_f64();
        let chained = total
            / chained_run(&seq, &inputs, a.batch, |c| format!("chained-{round}-{c}"))
                .await?
                .took
                .as_secs_f64();
        let alone = segment_run(&index, &segments, &inputs, a.batch, None, |c| {
            format!("seg-{round}-{c}")
        })
        .await?;
        println!(
            "  CPU per event, segments alone: {}",
            alone.cpu.per_event(total)
        );
        let seg = total / alone.took.as_secs_f64();
        let (ix_tx, ix_rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let indexer = tokio::spawn(indexer(Arc::clone(&store), ix_rx, a.index_chunk));
        let both = segment_run(&index, &segments, &inputs, a.batch, Some(ix_tx), |c| {
            format!("segix-{round}-{c}")
        })
        .await?;
        let indexed = indexer.await??;
        anyhow::ensure!(
            indexed == total as usize,
            "the indexer stored {indexed} of {total}"
        );
        let seg_beside = total / both.took.as_secs_f64();
        let queryable = total / started.elapsed().as_secs_f64();
        println!(
            "round {round}: raw insert {raw:>7.0} events/s   chained {chained:>7.0} ({:.2} of raw)   segments {seg:>7.0} ({:.2}; group p99 {:.1} ms)   segments beside the indexer {seg_beside:>7.0} ({:.2}), all indexed at {queryable:>7.0} events/s ({:.2})",
            chained / raw,
            seg / raw,
            alone.latency.value_at_quantile(0.99) as f64 / 1e3,
            seg_beside / raw,
            queryable / raw
        );
        rows.push([raw, chained, seg, seg_beside, queryable]);
    }
    let mean = |i: usize| rows.iter().map(|r| r[i]).sum::<f64>() / rows.len().max(1) as f64;
    let spread = |i: usize| {
        let v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        format!("{lo:.0}–{hi:.0}")
    };
    println!(
        "mean over {} rounds: raw {:.0} ({}), chained {:.0} ({}), segments {:.0} ({}), segments beside the indexer {:.0} ({}), all indexed {:.0} ({}) events/s",
        rows.len(),
        mean(0),
        spread(0),
        mean(1),
        spread(1),
        mean(2),
        spread(2),
        mean(3),
        spread(3),
        mean(4),
        spread(4)
    );
    Ok(())
}

/// The prototype's write path: each client validates its batch, seals it on its tenant's
/// head, appends the records (length-prefixed JSON) to the tenant's segment with one write
/// and one flush, then records the group and its event ids in the index, and (when given)
/// hands the records to the indexer.
async fn segment_run(
    index: &SqlitePool,
    dir: &Path,
    inputs: &[Vec<Value>],
    batch: usize,
    indexer: Option<mpsc::UnboundedSender<(TenantId, Vec<NewRecord>)>>,
    tenant_of: impl Fn(usize) -> String,
) -> anyhow::Result<Timed> {
    let clients = client_copies(inputs, tenant_of)?;
    let started = start_clock();
    let mut tasks = vec![];
    for (tenant, evs) in clients {
        let path = dir.join(format!("{}.seg", tenant.as_str()));
        let (index, indexer) = (index.clone(), indexer.clone());
        tasks.push(tokio::spawn(async move {
            let mut file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?,
            );
            let mut head = ChainHead::genesis();
            let mut offset = 0u64;
            let mut h = Histogram::<u64>::new(3)?;
            for chunk in evs.chunks(batch) {
                let s = Instant::now();
                let events: Vec<Event> = chunk.iter().cloned().map(validate).collect();
                let first_seq = head.seq + 1;
                let records = seal_all(
                    &tenant,
                    &events,
                    &mut head,
                    vigil_audit::checkpointer::now(),
                );
                let mut buf = Vec::with_capacity(records.len() * 1024);
                for r in &records {
                    let bytes = serde_json::to_vec(&r.record)?;
                    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    buf.extend_from_slice(&bytes);
                }
                let len = buf.len() as u64;
                let mut f = file.take().expect("the segment file");
                file = Some(
                    tokio::task::spawn_blocking(move || {
                        f.write_all(&buf)?;
                        f.sync_data()?;
                        Ok::<_, std::io::Error>(f)
                    })
                    .await??,
                );
                let mut tx = index.begin().await?;
                sqlx::query(
                    "INSERT INTO segment_groups (tenant_id, first_seq, last_seq, file_offset, len) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(tenant.as_str())
                .bind(first_seq)
                .bind(head.seq)
                .bind(offset as i64)
                .bind(len as i64)
                .execute(&mut *tx)
                .await?;
                for ids in records.chunks(ID_ROWS) {
                    let mut qb =
                        QueryBuilder::new("INSERT INTO segment_ids (tenant_id, event_id, seq) ");
                    qb.push_values(ids, |mut b, r| {
                        b.push_bind(tenant.as_str())
                            .push_bind(&r.record.event_id)
                            .push_bind(r.record.seq);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                offset += len;
                if let Some(ix) = &indexer {
                    ix.send((tenant.clone(), records))
                        .map_err(|_| anyhow::anyhow!("the indexer stopped"))?;
                }
                let _ = h.record(s.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    drop(indexer);
    timed(started, tasks).await
}

/// Builds the query indexes behind the writers: gathers each tenant's appended records and
/// inserts them into the real store `chunk` at a time (every index, one transaction each).
/// Returns how many it stored.
async fn indexer(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(TenantId, Vec<NewRecord>)>,
    chunk: usize,
) -> anyhow::Result<usize> {
    let mut pending: std::collections::HashMap<TenantId, Vec<NewRecord>> = Default::default();
    let mut stored = 0;
    while let Some((tenant, records)) = rx.recv().await {
        let buf = pending.entry(tenant.clone()).or_default();
        buf.extend(records);
        if buf.len() >= chunk {
            let ready = std::mem::take(buf);
            store.append(&tenant, &ready, &[]).await?;
            stored += ready.len();
        }
    }
    for (tenant, ready) in pending {
        if !ready.is_empty() {
            store.append(&tenant, &ready, &[]).await?;
            stored += ready.len();
        }
    }
    Ok(stored)
}
