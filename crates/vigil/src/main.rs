//! `vigil`: the one binary. Subcommands wire the library crates together; errors become exit
//! codes here and nowhere else (0 success, 1 not intact / not allowed, 2 usage or
//! configuration error).

mod auth;
mod backup;
mod bench;
mod bench_gateway;
mod bench_jwt;
mod bench_pipeline;
mod bench_proofs;
mod bench_regress;
mod bench_retention;
mod bench_segment;
mod coverage;
mod drill;
mod duration_arg;
mod example_service;
mod pipeline;
mod progress;
mod prove;
mod retention;
mod settings_file;
mod verify;

use anyhow::Context;

/// mimalloc: the proxy path allocates per request (headers, bodies, futures), and glibc's
/// malloc showed as a tenth of the gateway's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vigil_audit::{Application, AuditSettings};

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Tenant-aware security and a tamper-evident audit trail for HTTP services"
)]
struct Cli {
    /// A TOML file of settings, a table per command (`[audit.serve]`, `[auth.serve]`, …) and
    /// a key per flag; flags and VIGIL_* variables win over it.
    #[arg(long, global = true, env = "VIGIL_SETTINGS", value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Export traces over OTLP to this collector (base URL: http://host:4318 for HTTP, or
    /// http://host:4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc). Off when unset; the other
    /// OTEL_* variables are honoured (docs/tracing.md).
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum RetentionCommand {
    /// Purge now: every tenant by its period, or one (`--dry-run`: say what would be purged).
    Run(retention::RetentionArgs),
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything on loopback with embedded defaults (SQLite in ./.vigil): nothing to install.
    Dev {
        /// Where the SQLite database and keys live.
        #[arg(long, env = "VIGIL_DATA_DIR", default_value = ".vigil")]
        data_dir: PathBuf,
        /// Where the audit API listens.
        #[arg(long, env = "VIGIL_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the auth service listens.
        #[arg(long, env = "VIGIL_AUTH_LISTEN", default_value = "127.0.0.1:8081")]
        auth_listen: SocketAddr,
        /// Where the gateway listens (in front of the audit API).
        #[arg(long, env = "VIGIL_GATEWAY_LISTEN", default_value = "127.0.0.1:8000")]
        gateway_listen: SocketAddr,
        /// How often the audit service verifies every chain in the background (0: never).
        #[arg(long, env = "VIGIL_VERIFY_EVERY", default_value = "1h", value_parser = duration_arg::millis)]
        verify_every: Duration,
    },
    /// The audit service.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The gateway: authenticating reverse proxy with per-tenant rate limits.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// The auth service: tokens, JWKS, signing keys, users, service clients, API keys.
    Auth {
        #[command(subcommand)]
        command: auth::AuthCommand,
    },
    /// Check every tenant's chain (or one) and every checkpoint signature against the records.
    /// Exit 0 intact, 1 tampered (first bad seq named), 2 usage or connection error.
    Verify {
        /// The store to check: sqlite://PATH or postgres://…
        #[arg(long, env = "VIGIL_DATABASE_URL")]
        database_url: vigil_core::DatabaseUrl,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Accept checkpoints signed by this verifier key only (name+id+base64, from `vigil keys
        /// list` or GET /v1/keys). Repeatable. Default: the keys recorded in the store.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
    },
    /// Prove one event through the API: its record against its leaf hash, the inclusion proof
    /// against a checkpoint signed by a pinned key, and (given the checkpoint seen last time)
    /// that the log only grew since. Exit 0 proven, 1 not proven, 2 usage or connection error.
    Prove(Box<prove::ProveArgs>),
    /// Back the store up: a consistent snapshot in checksummed (optionally encrypted) parts
    /// with a manifest, to a directory or S3-compatible storage; also list, prune, check.
    Backup(Box<backup::BackupArgs>),
    /// Restore a backup into an empty store (or --force), check it against its manifest and
    /// verify every chain; reports the time taken (RTO). Exit 1 when the backup is damaged,
    /// untrusted or does not verify.
    Restore(Box<backup::RestoreArgs>),
    /// Find the mutating axum routes of a Rust codebase that emit no audit event; exit 1 when
    /// fewer than --min of them are audited (or an `audit:ignore` lacks its reason).
    Coverage(coverage::CoverageArgs),
    /// Disaster-recovery drills against a local stack under load, with a report (timeline,
    /// metrics before/during/after, losses, time to detect and recover). Exit 1 when a check
    /// fails.
    Drill {
        #[command(subcommand)]
        command: drill::DrillCommand,
    },
    /// Checkpoint signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Store historical events from an NDJSON file (or -): deterministic and idempotent, the
    /// same file twice stores each event once. Exit 1 if some lines were invalid or refused.
    Backfill(pipeline::BackfillArgs),
    /// Purge payload values older than the retention period, with a signed manifest in the
    /// tenant's chain (vigil verify then names the purge instead of calling it tampering).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Erase one data subject: destroy its key after a signed receipt in the tenant's chain,
    /// leaving its sealed fields unreadable and every record verifiable. Exit 2 when nothing
    /// is stored about the subject.
    Erase(retention::EraseArgs),
    /// Re-submit dead-lettered Kafka messages to their topic after a fix (idempotent).
    Replay(pipeline::ReplayArgs),
    /// Follow a tenant's new events (human lines on a terminal, NDJSON in pipes).
    Tail(pipeline::TailArgs),
    /// A small orders service that audits itself through the producer and the audit layer
    /// (HTTP or Kafka, with a spool): to try the pipeline, and for the fault tests.
    ExampleService(example_service::ExampleServiceArgs),
    /// Benchmarks (figures in BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Serve the audit API.
    Serve(Box<ServeArgs>),
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// Serve the gateway.
    Serve {
        /// The gateway's TOML configuration (routes, auth, rate limits, CORS).
        #[arg(long, env = "VIGIL_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Overrides `listen` of the file.
        #[arg(long, env = "VIGIL_GATEWAY_LISTEN")]
        listen: Option<SocketAddr>,
        /// Overrides `rate_limit.default_rpm` (requests per minute per tenant).
        #[arg(long, env = "GATEWAY_RATE_LIMIT_RPM")]
        rate_limit_rpm: Option<u32>,
        /// Overrides `rate_limit.redis_url`.
        #[arg(long, env = "VIGIL_REDIS_URL")]
        redis_url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Print the public keys that signed checkpoints in a store.
    List {
        /// The store: sqlite://PATH or postgres://…
        #[arg(long, env = "VIGIL_DATABASE_URL")]
        database_url: vigil_core::DatabaseUrl,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VIGIL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// sqlite://PATH or postgres://… (default: SQLite in the data directory).
    #[arg(long, env = "VIGIL_DATABASE_URL")]
    database_url: Option<vigil_core::DatabaseUrl>,
    /// Holds the checkpoint signing key (and the default SQLite file).
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = ".vigil")]
    data_dir: PathBuf,
    /// Accept the caller's identity from X-Tenant-ID, X-User-ID and X-Roles (loopback peers
    /// and --trusted-peer addresses only).
    #[arg(long, env = "VIGIL_TRUST_HEADERS")]
    trust_headers: bool,
    /// A non-loopback peer (the gateway) whose identity headers are trusted. Repeatable;
    /// needed to trust headers on a non-loopback address.
    #[arg(
        long = "trusted-peer",
        env = "VIGIL_TRUSTED_PEERS",
        value_delimiter = ','
    )]
    trusted_peers: Vec<std::net::IpAddr>,
    /// A Cedar capability policy replacing the shipped one (validated at start).
    #[arg(long, env = "VIGIL_CAPABILITY_POLICY")]
    capability_policy: Option<PathBuf>,
    /// Accept bearer JWTs signed (EdDSA) by this Ed25519 public key (PEM file).
    #[arg(long, env = "VIGIL_TOKEN_PUBLIC_KEY", requires = "token_issuer")]
    token_public_key: Option<PathBuf>,
    /// The `iss` bearer tokens must carry.
    #[arg(long, env = "VIGIL_TOKEN_ISSUER")]
    token_issuer: Option<String>,
    /// The `aud` bearer tokens must carry.
    #[arg(long, env = "VIGIL_TOKEN_AUDIENCE", default_value = "vigil")]
    token_audience: String,
    /// Clock skew allowed on `exp` and `nbf` (a bare number: seconds).
    #[arg(long, alias = "token-leeway-secs", env = "VIGIL_TOKEN_LEEWAY", default_value = "30s", value_parser = duration_arg::secs)]
    token_leeway: Duration,
    /// Accept bearer JWTs verified through this JWKS (the auth service's
    /// /.well-known/jwks.json); needs --token-issuer.
    #[arg(
        long,
        env = "VIGIL_JWKS_URL",
        requires = "token_issuer",
        conflicts_with = "token_public_key"
    )]
    jwks_url: Option<String>,
    #[command(flatten)]
    jwks: auth::JwksArgs,
    /// Sign a checkpoint after this many new events per tenant.
    #[arg(long, env = "VIGIL_CHECKPOINT_EVERY", default_value_t = 1000)]
    checkpoint_every: i64,
    /// ...or this long after the last one (a bare number: seconds).
    #[arg(long, alias = "checkpoint-interval-secs", env = "VIGIL_CHECKPOINT_INTERVAL", default_value = "60s", value_parser = duration_arg::secs)]
    checkpoint_interval: Duration,
    /// Most events one group commit writes.
    #[arg(long, env = "VIGIL_MAX_GROUP_EVENTS", default_value_t = 5000)]
    max_group_events: usize,
    /// A JSON redaction policy for every tenant, applied before events are hashed, e.g.
    /// {"mode": "enforce", "rules": [{"path": "payload.card.number", "action": "mask"}]}
    /// (docs/governance.md).
    #[arg(long, env = "VIGIL_REDACTION_POLICY", value_name = "FILE")]
    redaction_policy: Option<PathBuf>,
    /// Purge payload values older than this many days (a signed manifest in each tenant's
    /// chain makes the purge verifiable); 0 keeps everything. A tenant's own period
    /// (PUT /v1/retention-policy) comes first.
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// How often the retention job runs.
    #[arg(long, env = "VIGIL_RETENTION_INTERVAL", default_value = "1h", value_parser = duration_arg::secs)]
    retention_interval: Duration,
    /// Verify every tenant's chain and checkpoints this often in the background (damage is
    /// logged and counted for the VigilAuditChainDamaged alert); 0 turns it off.
    #[arg(long, env = "VIGIL_VERIFY_EVERY", default_value = "1h", value_parser = duration_arg::millis)]
    verify_every: Duration,
    /// Wait this long after a webhook delivery's first failure; doubled after each (at most
    /// an hour).
    #[arg(long, env = "VIGIL_WEBHOOK_BACKOFF", default_value = "5s", value_parser = duration_arg::millis)]
    webhook_backoff: Duration,
    /// Attempts before a webhook delivery is dead-lettered.
    #[arg(long, env = "VIGIL_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    webhook_max_attempts: u32,
    /// On SIGTERM, answer /readyz with 503 and keep serving this long before closing the
    /// port, so load balancers take the instance out of rotation first (a rolling update
    /// without failed requests); 0: close at once.
    #[arg(long, env = "VIGIL_SHUTDOWN_DRAIN", default_value = "0s", value_parser = duration_arg::millis)]
    shutdown_drain: Duration,
    /// The auth service the web console (/console) signs users in through
    /// (http://host:port); without it only the development identity can sign in.
    #[arg(long, env = "VIGIL_CONSOLE_AUTH_URL")]
    console_auth_url: Option<String>,
    /// The tracing backend's page for a trace, `{trace_id}` replaced (the console links
    /// each event's trace id there), e.g. http://jaeger:16686/trace/{trace_id}.
    #[arg(long, env = "VIGIL_TRACE_URL")]
    trace_url: Option<String>,
    /// A heartbeat on a live tail (GET /v1/events/tail) while no records arrive.
    #[arg(long, env = "VIGIL_TAIL_HEARTBEAT", default_value = "15s", value_parser = duration_arg::millis)]
    tail_heartbeat: Duration,
    /// A live tail without records this long is closed (clients reconnect).
    #[arg(long, env = "VIGIL_TAIL_IDLE", default_value = "5m", value_parser = duration_arg::millis)]
    tail_idle: Duration,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Consuming `audit.events.v1`.
#[derive(Args, Debug)]
struct KafkaArgs {
    /// Consume audit events from these Kafka brokers (host:port, comma-separated); also
    /// KAFKA_BOOTSTRAP.
    #[arg(long, env = "VIGIL_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The consumer group: instances in one group share the topic's partitions.
    #[arg(long, env = "VIGIL_KAFKA_GROUP", default_value = "vigil-audit")]
    kafka_group: String,
    /// Partitions to create audit.events.v1 with, if it does not exist.
    #[arg(long, env = "VIGIL_KAFKA_PARTITIONS", default_value_t = 3)]
    kafka_partitions: i32,
    /// Messages larger than this go to the dead-letter topic as too_large (at most 65536,
    /// the limit of every ingest path).
    #[arg(long, env = "VIGIL_KAFKA_MAX_EVENT_BYTES", default_value_t = 65536)]
    kafka_max_event_bytes: usize,
    /// Static membership in the group (group.instance.id, unique per instance): a restarted
    /// instance takes its partitions back without a rebalance, on brokers that implement it
    /// fully. Default: dynamic membership.
    #[arg(long, env = "VIGIL_KAFKA_INSTANCE_ID")]
    kafka_instance_id: Option<String>,
    /// A consumer silent this long is out of the group and its partitions move to the others.
    /// (A bare number: milliseconds.)
    #[arg(long, alias = "kafka-session-timeout-ms", env = "VIGIL_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = duration_arg::millis)]
    kafka_session_timeout: Duration,
    /// The topic to consume (its dead letters go to TOPIC.dlq).
    #[arg(long, env = "VIGIL_KAFKA_TOPIC", default_value = "audit.events.v1")]
    kafka_topic: String,
}

impl KafkaArgs {
    /// The bootstrap servers: the flag, VIGIL_KAFKA_BOOTSTRAP, or the seeds' KAFKA_BOOTSTRAP.
    fn bootstrap(&self) -> Option<String> {
        self.kafka_bootstrap
            .clone()
            .or_else(|| std::env::var("KAFKA_BOOTSTRAP").ok())
            .filter(|b| !b.trim().is_empty())
    }
}

impl ServeArgs {
    fn settings(self) -> anyhow::Result<AuditSettings> {
        let mut s = AuditSettings::embedded(self.data_dir);
        if let Some(path) = &self.token_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --token-public-key {}", path.display()))?;
            let issuer = self.token_issuer.as_deref().unwrap_or_default();
            let v = vigil_security::token::StaticKeyVerifier::ed25519_pem(
                &pem,
                issuer,
                &self.token_audience,
                self.token_leeway.as_secs(),
            )
            .map_err(|e| anyhow::anyhow!("--token-public-key {}: {e}", path.display()))?;
            s.bearer = Some(std::sync::Arc::new(v));
        }
        if let Some(url) = &self.jwks_url {
            let issuer = self.token_issuer.clone().unwrap_or_default();
            s.jwks = Some(
                self.jwks
                    .config(url, &issuer, &self.token_audience, self.token_leeway),
            );
        }
        s.listen = self.listen;
        if let Some(url) = self.database_url {
            s.database_url = url;
        }
        s.trust_headers = self.trust_headers;
        s.trusted_peers = self.trusted_peers;
        s.capability_policy = self.capability_policy;
        s.checkpoint_every = self.checkpoint_every;
        s.checkpoint_interval = self.checkpoint_interval.max(Duration::from_millis(100));
        s.max_group_events = self.max_group_events;
        s.retention =
            (self.retention_days > 0).then(|| Duration::from_secs(self.retention_days * 86_400));
        s.retention_interval = self.retention_interval.max(Duration::from_secs(1));
        s.verify_every = (!self.verify_every.is_zero()).then_some(self.verify_every);
        s.webhooks.backoff = self.webhook_backoff.max(Duration::from_millis(10));
        s.webhooks.max_attempts = self.webhook_max_attempts;
        s.shutdown_drain = self.shutdown_drain;
        s.console = vigil_audit::settings::ConsoleSettings {
            auth_url: self.console_auth_url.clone(),
            trace_url: self.trace_url.clone(),
            tail_heartbeat: self.tail_heartbeat,
            tail_idle: self.tail_idle,
        };
        if let Some(path) = &self.redaction_policy {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the redaction policy {}", path.display()))?;
            s.redaction = vigil_core::redaction::Policy::from_json(&text)
                .with_context(|| format!("the redaction policy {}", path.display()))?;
        }
        s.kafka = self
            .kafka
            .bootstrap()
            .map(|bootstrap| vigil_audit::kafka::KafkaSettings {
                bootstrap,
                group: self.kafka.kafka_group.clone(),
                partitions: self.kafka.kafka_partitions.max(1),
                max_event_bytes: self.kafka.kafka_max_event_bytes,
                instance_id: self
                    .kafka
                    .kafka_instance_id
                    .clone()
                    .filter(|id| !id.is_empty()),
                session_timeout: self.kafka.kafka_session_timeout,
                topic: self.kafka.kafka_topic.clone(),
            });
        Ok(s)
    }
}

/// The `service.name` traces carry unless `OTEL_SERVICE_NAME` says otherwise.
fn service_name(c: &Command) -> &'static str {
    match c {
        Command::Dev { .. } => "vigil-dev",
        Command::Audit { .. } => "vigil-audit",
        Command::Gateway { .. } => "vigil-gateway",
        Command::Auth { .. } => "vigil-auth",
        Command::ExampleService(_) => "vigil-example-service",
        _ => "vigil",
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing requests and checkpointing");
}

async fn serve(settings: AuditSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    Ok(app.run_until_stopped(shutdown_signal()).await?)
}

async fn gateway(
    path: PathBuf,
    listen: Option<SocketAddr>,
    rpm: Option<u32>,
    redis_url: Option<String>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = vigil_gateway::GatewayConfig::from_toml(&text)
        .with_context(|| format!("{}", path.display()))?;
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(r) = rpm {
        config.rate_limit.default_rpm = r.max(1);
    }
    if let Some(u) = redis_url {
        config.rate_limit.redis_url = Some(u);
    }
    let gw = vigil_gateway::Gateway::build(config).await?;
    Ok(gw.run_until_stopped(shutdown_signal()).await?)
}

async fn keys_list(database_url: &str) -> anyhow::Result<()> {
    let store = vigil_store::open_existing(database_url)
        .await
        .context("opening the store")?;
    for k in store.public_keys().await? {
        println!("{}\t{}\t{}", k.verifier_key, k.key_id, k.created_at);
    }
    Ok(())
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let args = match settings_file::layer(Cli::command(), std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the runtime");
    // Inside the runtime: the gRPC exporter starts its connection task on it.
    let telemetry = match rt.block_on(async {
        vigil_security::telemetry::init(&vigil_security::telemetry::TelemetryConfig {
            otlp_endpoint: cli.otlp_endpoint.clone(),
            service_name: service_name(&cli.command).to_owned(),
            // A drill or a benchmark runs whole services in this process: their logs would bury
            // its report.
            default_filter: if matches!(cli.command, Command::Drill { .. } | Command::Bench { .. })
            {
                "warn,sqlx=warn"
            } else {
                "info,sqlx=warn"
            },
        })
    }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result: anyhow::Result<ExitCode> = rt.block_on(async {
        match cli.command {
            Command::Dev {
                data_dir,
                listen,
                auth_listen,
                gateway_listen,
                verify_every,
            } => auth::dev(
                data_dir,
                [listen, auth_listen, gateway_listen],
                (!verify_every.is_zero()).then_some(verify_every),
                shutdown_signal(),
            )
            .await
            .map(|_| ExitCode::SUCCESS),
            Command::Auth { command } => auth::run(command, shutdown_signal()).await,
            Command::Gateway {
                command:
                    GatewayCommand::Serve {
                        config,
                        listen,
                        rate_limit_rpm,
                        redis_url,
                    },
            } => gateway(config, listen, rate_limit_rpm, redis_url)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Audit {
                command: AuditCommand::Serve(args),
            } => match args.settings() {
                Ok(settings) => serve(settings).await.map(|_| ExitCode::SUCCESS),
                Err(e) => Err(e),
            },
            Command::Verify {
                database_url,
                tenant,
                trusted_keys,
            } => verify::run(database_url.expose(), tenant.as_deref(), &trusted_keys).await,
            Command::Keys {
                command: KeysCommand::List { database_url },
            } => keys_list(database_url.expose())
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Drill { command } => drill::run(command).await,
            Command::Prove(args) => prove::run(*args).await,
            Command::Coverage(args) => coverage::run(args),
            Command::Backup(args) => backup::run_backup(*args).await,
            Command::Restore(args) => backup::run_restore(*args).await,
            Command::Bench { command } => bench::run(command).await,
            Command::Backfill(args) => pipeline::backfill(args).await,
            Command::Retention(RetentionCommand::Run(args)) => retention::run(args).await,
            Command::Erase(args) => retention::erase(args).await,
            Command::Replay(args) => pipeline::replay(args).await,
            Command::Tail(args) => pipeline::tail(args, shutdown_signal()).await,
            Command::ExampleService(args) => example_service::run(args, shutdown_signal())
                .await
                .map(|_| ExitCode::SUCCESS),
        }
    });
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(2)
        }
    }
}
