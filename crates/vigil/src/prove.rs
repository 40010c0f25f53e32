//! `vigil prove`: checks one event against its tenant's signed tree through the API, trusting
//! nothing the server says that it can check itself: the record's leaf hash is recomputed from
//! its content (and each visible payload member against its commitment), the inclusion proof
//! is verified against the root of a checkpoint signed by a pinned key, and, given the
//! checkpoint the client saw last time, the consistency proof shows the log only grew since.
//! Exit 0 proven, 1 not proven (what failed is named), 2 usage or connection error.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;
use vigil_core::checkpoint::{Checkpoint, NoteVerifier};
use vigil_core::hash::Hash32;
use vigil_core::merkle::{verify_consistency, verify_inclusion};
use vigil_core::record::Record;

/// Arguments of `vigil prove`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProveArgs {
    /// The audit API (or the gateway in front of it).
    #[arg(long, env = "VIGIL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The event to prove.
    #[arg(long)]
    event_id: String,
    /// A bearer token (JWT or API key) for the tenant; without one the identity headers are
    /// sent (`--tenant`, `--roles`: what the audit API takes from loopback in development).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The tenant, for the identity headers.
    #[arg(long, env = "VIGIL_TENANT")]
    tenant: Option<String>,
    /// Roles for the identity headers.
    #[arg(long, default_value = "support")]
    roles: String,
    /// Accept checkpoints signed by this verifier key only (name+id+base64). Repeatable.
    /// Without one the keys are fetched from the same server, which proves integrity against
    /// that server's key only (a warning says so).
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<String>,
    /// A checkpoint note seen before (a file): the latest must extend it (consistency proof).
    /// With `--save-checkpoint` to the same file, each run checks the log only grew since the
    /// last.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Write the latest checkpoint note here once everything is proven.
    #[arg(long)]
    save_checkpoint: Option<PathBuf>,
}

/// What did not hold (exit 1), told apart from usage and connection errors (exit 2).
#[derive(Debug)]
struct NotProven(String);

impl std::fmt::Display for NotProven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotProven {}

fn not_proven(why: impl Into<String>) -> anyhow::Error {
    NotProven(why.into()).into()
}

struct Api {
    http: reqwest::Client,
    args: ProveArgs,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.args.token {
            req = req.bearer_auth(t);
        } else if let Some(t) = &self.args.tenant {
            req = req
                .header("X-Tenant-ID", t)
                .header("X-Roles", &self.args.roles);
        } else {
            bail!("give --token, or --tenant for the identity headers");
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("GET {url}: the answer is not JSON"))?;
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or("no message");
            bail!("GET {path}: {status}: {msg}");
        }
        Ok(body)
    }
}

fn hash(v: &serde_json::Value, what: &str) -> anyhow::Result<Hash32> {
    v.as_str()
        .and_then(Hash32::from_hex)
        .ok_or_else(|| not_proven(format!("{what} is not a hash")))
}

/// The `proof` member of a proof answer, as hashes.
fn path(answer: &serde_json::Value) -> anyhow::Result<Vec<Hash32>> {
    answer["proof"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| hash(h, "a proof entry"))
        .collect()
}

/// Opens a note with one of the keys.
fn open(note: &str, keys: &[NoteVerifier], what: &str) -> anyhow::Result<Checkpoint> {
    keys.iter().find_map(|k| k.open(note).ok()).ok_or_else(|| {
        not_proven(format!(
            "{what} carries no valid signature by a trusted key"
        ))
    })
}

pub(crate) async fn run(args: ProveArgs) -> anyhow::Result<ExitCode> {
    match prove(args).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.downcast_ref::<NotProven>().is_some() => {
            println!("NOT PROVEN: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

async fn prove(args: ProveArgs) -> anyhow::Result<()> {
    let mut keys = crate::verify::parse_keys(&args.trusted_keys)?;
    let earlier = match &args.checkpoint {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        args,
    };
    if keys.is_empty() {
        eprintln!(
            "warning: no --trusted-key: using the keys the server publishes, which proves the \
             record against that server's own key only"
        );
        let listed = api.get("/v1/keys").await?;
        for k in listed["keys"].as_array().into_iter().flatten() {
            if let Some(v) = k["verifier_key"].as_str() {
                keys.push(NoteVerifier::parse(v)?);
            }
        }
    }
    let id = &api.args.event_id;
    // The record, as the caller may see it: its leaf hash from its content, not the column.
    let record: Record = serde_json::from_value(api.get(&format!("/v1/events/{id}")).await?)
        .context("the event is not a record")?;
    if let Err(damage) = vigil_core::verify::check_record(&record) {
        return Err(not_proven(format!("seq {}: {damage}", record.seq)));
    }
    let leaf = record.compute_leaf_hash();
    println!(
        "event {id}: seq {}, leaf hash {} recomputed from the record ({} payload members checked, {} withheld)",
        record.seq,
        leaf.to_hex(),
        record.payload.len(),
        record.withheld.len() + record.sealed.len()
    );
    let p = api
        .get(&format!("/v1/proofs/inclusion?event_id={id}"))
        .await?;
    let note = p["checkpoint"]
        .as_str()
        .ok_or_else(|| not_proven("the inclusion proof came without its checkpoint"))?;
    let cp = open(note, &keys, "the latest checkpoint")?;
    if cp.tenant != record.tenant_id {
        return Err(not_proven(format!(
            "the checkpoint is {}'s, the record {}'s",
            cp.tenant, record.tenant_id
        )));
    }
    let root = cp
        .root
        .ok_or_else(|| not_proven("the checkpoint carries no Merkle root"))?;
    let size = cp.size as u64;
    let proof = path(&p)?;
    if p["tree_size"].as_u64() != Some(size) {
        return Err(not_proven("the proof is not for the checkpoint's tree"));
    }
    if !verify_inclusion(&leaf, record.seq as u64 - 1, size, &proof, &root) {
        return Err(not_proven(format!(
            "the inclusion proof does not lead from the record's leaf to the signed root at {size}"
        )));
    }
    println!(
        "included in the tree of {size} records: {} hashes lead to the root {} signed on {}",
        proof.len(),
        root.to_hex(),
        cp.time
    );
    if let Some(old_note) = &earlier {
        let old = open(old_note, &keys, "the earlier checkpoint")?;
        let old_root = old
            .root
            .ok_or_else(|| not_proven("the earlier checkpoint carries no Merkle root"))?;
        if old.tenant != cp.tenant || old.size > cp.size {
            return Err(not_proven(format!(
                "the earlier checkpoint ({} at {}) is not a prefix candidate of the latest ({} at {})",
                old.tenant, old.size, cp.tenant, cp.size
            )));
        }
        let c = api
            .get(&format!(
                "/v1/proofs/consistency?from={}&to={size}",
                old.size
            ))
            .await?;
        let proof = path(&c)?;
        if !verify_consistency(old.size as u64, size, &old_root, &root, &proof) {
            return Err(not_proven(format!(
                "the tree at {} is not a prefix of the tree at {size}: the log was rewritten",
                old.size
            )));
        }
        println!(
            "consistent with the earlier checkpoint at {} ({} hashes): the log only grew",
            old.size,
            proof.len()
        );
    }
    if let Some(path) = &api.args.save_checkpoint {
        std::fs::write(path, note).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("PROVEN");
    Ok(())
}
