//! `vigil backup` and `vigil restore`: the commands over `vigil-backup`, with full chain
//! verification after a restore and the restore time (RTO) reported.

use crate::verify::{parse_keys, verify_tenants};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vigil_audit::verification::TrustedKeys;
use vigil_backup::{BackupError, BackupKey, KeepPolicy, Location, Trust};
use vigil_core::checkpoint::{NoteSigner, NoteVerifier};

/// `vigil backup`: take a backup (or list, prune, check, make a key).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The store to back up: sqlite://PATH or postgres://…
    #[arg(long, env = "VIGIL_DATABASE_URL", required = true)]
    database_url: Option<vigil_core::DatabaseUrl>,
    /// Where backups go: a directory, file:///DIR or s3://BUCKET/PREFIX (endpoint and
    /// credentials from AWS_* variables). Each backup is a new directory in it.
    #[arg(long, required = true, value_name = "DEST")]
    to: Option<String>,
    /// Encrypt the parts with AES-256-GCM under this key (`vigil backup keygen` makes one).
    #[arg(long, env = "VIGIL_BACKUP_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    keep: KeepArgs,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// List the complete backups under DEST, oldest first.
    List {
        /// A directory or s3://BUCKET/PREFIX.
        at: String,
    },
    /// Delete the backups under DEST that the keep rules do not keep.
    Prune {
        /// A directory or s3://BUCKET/PREFIX.
        at: String,
        #[command(flatten)]
        keep: KeepArgs,
    },
    /// Check a backup without restoring it: manifest, signers, every part's checksum.
    Check {
        /// A backup, or a location whose newest backup is checked.
        from: String,
        /// The key of an encrypted backup.
        #[arg(long, env = "VIGIL_BACKUP_KEY_FILE", value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Write a new random backup key (64 hex digits, mode 0600) to FILE.
    Keygen {
        /// The key file to create (it must not exist).
        out: PathBuf,
    },
}

/// Backup retention: after a backup (or with `prune`), keep only these.
#[derive(Args, Debug, Default)]
pub(crate) struct KeepArgs {
    /// Keep the newest N backups.
    #[arg(long, default_value_t = 0)]
    keep_last: usize,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, default_value_t = 0)]
    keep_daily: usize,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, default_value_t = 0)]
    keep_weekly: usize,
}

impl KeepArgs {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
        }
    }
}

/// Which checkpoint signing keys a restore accepts: exactly one way must be chosen.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct TrustArgs {
    /// Trust the checkpoint key in this audit data directory (the restoring service's own).
    #[arg(long, env = "VIGIL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The checkpoint key's name in that directory.
    #[arg(long, default_value = "vigil-audit")]
    key_name: String,
    /// Trust this verifier key (name+id+base64, as `vigil keys list` prints). Repeatable.
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<String>,
    /// Trust the keys the backup itself records: checks that it is consistent, not where it
    /// came from.
    #[arg(long)]
    trust_recorded_keys: bool,
}

impl TrustArgs {
    /// The keys to accept, from the flags.
    pub(crate) fn trust(&self) -> anyhow::Result<Trust> {
        if self.trust_recorded_keys {
            return Ok(Trust::Recorded);
        }
        let mut keys = parse_keys(&self.trusted_keys)?;
        if let Some(dir) = &self.data_dir {
            keys.push(data_dir_key(dir, &self.key_name)?);
        }
        if keys.is_empty() {
            anyhow::bail!(
                "say which checkpoint keys to trust: --data-dir DIR (the audit service's), \
                 --trusted-key KEY, or --trust-recorded-keys"
            );
        }
        Ok(Trust::Keys(keys))
    }
}

/// The public half of the checkpoint key in an audit data directory (never created here).
pub(crate) fn data_dir_key(dir: &Path, name: &str) -> anyhow::Result<NoteVerifier> {
    let path = dir.join(vigil_audit::keys::KEY_FILE);
    let seed: [u8; 32] = std::fs::read(&path)
        .with_context(|| format!("reading the checkpoint key {}", path.display()))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
    Ok(NoteSigner::new(name, &seed)
        .map_err(|e| anyhow::anyhow!("key name {name:?}: {e}"))?
        .verifier())
}

fn load_key(path: Option<&Path>) -> anyhow::Result<Option<BackupKey>> {
    path.map(BackupKey::load).transpose().map_err(Into::into)
}

/// An integrity failure exits 1, anything else 2.
fn exit_for(e: BackupError) -> anyhow::Result<ExitCode> {
    if e.is_integrity() {
        eprintln!("vigil: {e}");
        Ok(ExitCode::from(1))
    } else {
        Err(e.into())
    }
}

pub(crate) async fn run_backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BackupCommand::List { at }) => {
            let at = Location::parse(&at)?;
            for b in vigil_backup::list(&at).await? {
                println!(
                    "{}\t{}\t{} records\t{} bytes{}",
                    b.id,
                    b.created_at.to_rfc3339(),
                    b.records,
                    b.bytes,
                    if b.encrypted { "\tencrypted" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(BackupCommand::Prune { at, keep }) => {
            let at = Location::parse(&at)?;
            for id in vigil_backup::prune(&at, keep.policy()).await? {
                println!("deleted {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(BackupCommand::Check {
            from,
            key_file,
            trust,
        }) => {
            let from = Location::parse(&from)?;
            let key = load_key(key_file.as_deref())?;
            match vigil_backup::check(&from, key.as_ref(), &trust.trust()?).await {
                Ok((at, m)) => {
                    println!(
                        "{at}: intact backup of {} records in {} tenants, {} parts",
                        m.records(),
                        m.tenants.len(),
                        m.streams.iter().map(|s| s.parts.len()).sum::<usize>()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => exit_for(e),
            }
        }
        Some(BackupCommand::Keygen { out }) => {
            let key = BackupKey::generate();
            key.save_new(&out)?;
            println!("wrote backup key {} to {}", key.id(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let url = args.database_url.expect("required by clap");
            let to = Location::parse(args.to.as_deref().expect("required by clap"))?;
            let key = load_key(args.key_file.as_deref())?;
            let started = Instant::now();
            let spinner = crate::progress::bar(None, "{spinner} backing up {elapsed}");
            spinner.enable_steady_tick(Duration::from_millis(200));
            let done = vigil_backup::backup(vigil_backup::BackupOptions {
                database_url: url.expose(),
                to: &to,
                key: key.as_ref(),
            })
            .await;
            spinner.finish_and_clear();
            let done = done?;
            let m = &done.manifest;
            println!(
                "backup {} at {}: {} records in {} tenants, {} bytes in {} parts{}, {:.1}s",
                m.id,
                done.at,
                m.records(),
                m.tenants.len(),
                m.stored_bytes(),
                m.streams.iter().map(|s| s.parts.len()).sum::<usize>(),
                if m.encryption.is_some() {
                    ", encrypted"
                } else {
                    ""
                },
                started.elapsed().as_secs_f64()
            );
            if !args.keep.policy().is_empty() {
                for id in vigil_backup::prune(&to, args.keep.policy()).await? {
                    println!("deleted {id} (retention)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `vigil restore`.
#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// A backup, or a location whose newest backup is restored (directory, file:///DIR or
    /// s3://BUCKET/PREFIX).
    #[arg(long, value_name = "SRC")]
    from: String,
    /// The store to restore into: sqlite://PATH or postgres://… (must be empty unless --force).
    #[arg(long, env = "VIGIL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// The key of an encrypted backup.
    #[arg(long, env = "VIGIL_BACKUP_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Replace what the target store holds.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    trust: TrustArgs,
    /// Also write the timings and verdict as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A restore and the verification after it, timed.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RestoreOutcome {
    pub(crate) backup: String,
    pub(crate) records: i64,
    pub(crate) tenants: usize,
    pub(crate) stored_bytes: u64,
    pub(crate) check_seconds: f64,
    pub(crate) load_seconds: f64,
    pub(crate) verify_seconds: f64,
    /// Restore + full verification: the recovery time.
    pub(crate) rto_seconds: f64,
    pub(crate) intact: bool,
    /// Erasures made after the backup, applied again.
    pub(crate) erasures_reapplied: usize,
}

/// Restores, re-applies the erasures made after the backup (with `data_dir`'s signing key),
/// and verifies every tenant against the trusted keys.
pub(crate) async fn restore_and_verify(
    from: &Location,
    database_url: &str,
    key: Option<&BackupKey>,
    trust: &Trust,
    force: bool,
    data_dir: Option<&Path>,
    print: bool,
) -> Result<RestoreOutcome, anyhow::Error> {
    let started = Instant::now();
    let report = vigil_backup::restore(vigil_backup::RestoreOptions {
        from,
        database_url,
        key,
        trust,
        force,
        can_reapply_erasures: data_dir.is_some(),
    })
    .await?;
    let reapplied = match data_dir {
        Some(dir) if !report.erasures_to_reapply.is_empty() => {
            reapply_erasures(database_url, dir, &report.erasures_to_reapply, print).await?
        }
        _ => 0,
    };
    let verifying = Instant::now();
    let store = vigil_store::open_existing(database_url)
        .await
        .context("opening the restored store")?;
    let tenants = store.tenants().await?;
    let trusted = match trust {
        Trust::Keys(k) => TrustedKeys::Only(k.clone()),
        Trust::Recorded => TrustedKeys::FromStore,
    };
    let verified = verify_tenants(&store, tenants, trusted, print).await?;
    Ok(RestoreOutcome {
        backup: report.source,
        records: report.manifest.records(),
        tenants: report.manifest.tenants.len(),
        stored_bytes: report.manifest.stored_bytes(),
        check_seconds: report.check.as_secs_f64(),
        load_seconds: report.load.as_secs_f64(),
        verify_seconds: verifying.elapsed().as_secs_f64(),
        rto_seconds: started.elapsed().as_secs_f64(),
        intact: verified.intact,
        erasures_reapplied: reapplied,
    })
}

/// Destroys again the keys of subjects erased after the backup, each with a new signed
/// receipt in its tenant's chain; returns how many needed it.
async fn reapply_erasures(
    database_url: &str,
    data_dir: &Path,
    erasures: &[vigil_backup::ErasureEntry],
    print: bool,
) -> anyhow::Result<usize> {
    let mut s = vigil_audit::AuditSettings::embedded(data_dir.to_path_buf());
    s.database_url = database_url.to_string().into();
    let w = vigil_audit::app::Writer::open(&s)
        .await
        .context("opening the restored store to re-apply erasures")?;
    let mut done = 0;
    let mut result = Ok(());
    for e in erasures {
        let tenant = vigil_core::ids::TenantId::parse(&e.tenant)
            .map_err(|err| anyhow::anyhow!("tenant {:?}: {err}", e.tenant))?;
        let keys = w
            .store
            .subject_keys(&tenant, std::slice::from_ref(&e.subject_ref))
            .await?;
        if keys.is_empty() {
            continue;
        }
        match vigil_audit::erasure::erase_ref(
            &w.store,
            &w.checkpointer,
            &w.sequencer,
            &tenant,
            e.subject_ref.clone(),
        )
        .await
        {
            Ok(erased) => {
                done += 1;
                if print {
                    println!(
                        "{tenant}: re-applied the erasure of subject {} made after the backup ({} records)",
                        &erased.subject_ref[..erased.subject_ref.len().min(16)],
                        erased.statement.seqs.len()
                    );
                }
            }
            Err(err) => {
                result = Err(anyhow::anyhow!(
                    "re-applying the erasure of a subject of {tenant}: {err}"
                ));
                break;
            }
        }
    }
    w.sequencer.shutdown().await;
    result.map(|_| done)
}

pub(crate) async fn run_restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let from = Location::parse(&args.from)?;
    let key = load_key(args.key_file.as_deref())?;
    let trust = args.trust.trust()?;
    let outcome = match restore_and_verify(
        &from,
        args.database_url.expose(),
        key.as_ref(),
        &trust,
        args.force,
        args.trust.data_dir.as_deref(),
        true,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => match e.downcast::<BackupError>() {
            Ok(b) => return exit_for(b),
            Err(e) => return Err(e),
        },
    };
    println!(
        "restored {} records of {} tenants from {} in {:.1}s (check {:.1}s, load {:.1}s, verify {:.1}s): {}",
        outcome.records,
        outcome.tenants,
        outcome.backup,
        outcome.rto_seconds,
        outcome.check_seconds,
        outcome.load_seconds,
        outcome.verify_seconds,
        if outcome.intact { "intact" } else { "TAMPERED" }
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if outcome.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
