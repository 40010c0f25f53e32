//! Wiring: [`Application::build`] opens the store, loads the key, starts the sequencer and
//! binds the listener; [`Application::run_until_stopped`] serves until the shutdown signal,
//! then lets queued writes commit and checkpoints every tenant.

use crate::checkpointer::Checkpointer;
use crate::error::AuditError;
use crate::http::{router, AppState};
use crate::in_process::InProcess;
use crate::metrics::AuditMetrics;
use crate::sequencer::Sequencer;
use crate::settings::AuditSettings;
use axum::{Extension, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use vigil_producer::{AuditProducer, Mode, ProducerConfig};
use vigil_security::capability::CapabilityPolicy;
use vigil_security::context::{Guard, IdentitySource, SecurityConfig};
use vigil_security::http_metrics::{HttpMetrics, MAX_ERROR_CODES};

/// A built, bound audit service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
    retention: Option<tokio::task::JoinHandle<()>>,
    verifier: Option<tokio::task::JoinHandle<()>>,
    webhook_worker: tokio::task::JoinHandle<()>,
    webhook_stop: tokio::sync::watch::Sender<bool>,
    shutdown_drain: std::time::Duration,
}

/// What writes to the audit store: the store, the checkpointer with its key, the sequencer.
/// The service is built on it, and so is `vigil backfill --database-url` (which writes without
/// a running service).
#[derive(Debug)]
pub struct Writer {
    /// The store.
    pub store: Arc<dyn vigil_store::Store>,
    /// Checkpoints, signed with the data directory's key.
    pub checkpointer: Arc<Checkpointer>,
    /// The group-commit writer.
    pub sequencer: Sequencer,
    /// Tenants' redaction policies, as the sequencer applies them.
    pub redactor: Arc<crate::redaction::Redactor>,
    /// Metrics.
    pub metrics: AuditMetrics,
}

impl Writer {
    /// Loads (or creates) the signing key, opens and migrates the store, and starts the
    /// sequencer; checkpoints a tenant missed (a crash) are made in the background.
    pub async fn open(settings: &AuditSettings) -> Result<Writer, AuditError> {
        // The key first: it creates the data directory, where the default SQLite file lives.
        let signer = crate::keys::load_or_create(&settings.data_dir, &settings.key_name)?;
        let store = vigil_store::open(settings.database_url.expose())
            .await
            .map_err(|source| AuditError::Store {
                what: format!("opening the audit store {}", settings.database_url),
                source,
            })?;
        let metrics = AuditMetrics::new();
        let checkpointer = Arc::new(Checkpointer::new(
            Arc::clone(&store),
            signer,
            metrics.clone(),
            settings.checkpoint_every,
            settings.checkpoint_interval,
        ));
        checkpointer
            .publish_key()
            .await
            .map_err(|source| AuditError::Store {
                what: "publishing the checkpoint public key".into(),
                source,
            })?;
        {
            let cp = Arc::clone(&checkpointer);
            tokio::spawn(async move {
                if let Err(e) = cp.catch_up().await {
                    tracing::warn!(error = %e, "checkpoint catch-up at start failed");
                }
            });
        }
        // Every tenant may have a policy of its own, so the redactor is always there.
        let redactor = Arc::new(crate::redaction::Redactor::new(
            settings.redaction.clone(),
            crate::keys::load_or_create_secret(
                &settings.data_dir,
                crate::keys::REDACTION_SECRET_FILE,
            )?,
            vigil_core::erasure::Kek::new(crate::keys::load_or_create_secret(
                &settings.data_dir,
                crate::keys::SUBJECT_KEK_FILE,
            )?),
            Arc::clone(&store),
            metrics.clone(),
        ));
        let sequencer = Sequencer::new(
            Arc::clone(&store),
            Arc::clone(&checkpointer),
            metrics.clone(),
            settings.max_group_events,
            Some(Arc::clone(&redactor)),
        );
        Ok(Writer {
            store,
            checkpointer,
            sequencer,
            redactor,
            metrics,
        })
    }
}

impl Application {
    /// Opens and migrates the store, loads (or creates) the signing key and binds.
    pub async fn build(settings: AuditSettings) -> Result<Application, AuditError> {
        if settings.trust_headers
            && !settings.listen.ip().is_loopback()
            && settings.trusted_peers.is_empty()
        {
            return Err(AuditError::Settings(format!(
                "--trust-headers on a non-loopback address ({}) would let anyone who reaches it claim any identity: \
                 name the gateway's address with --trusted-peer, or listen on loopback",
                settings.listen
            )));
        }
        let policy = match &settings.capability_policy {
            Some(path) => CapabilityPolicy::from_file(path)?,
            None => CapabilityPolicy::shipped(),
        };
        let Writer {
            store,
            checkpointer,
            sequencer,
            redactor,
            metrics,
        } = Writer::open(&settings).await?;
        let guard = Guard::new(policy, metrics.registry());
        let pool: vigil_security::runtime_metrics::PoolReading = {
            let store = Arc::clone(&store);
            Arc::new(move || store.pool_stats().reading())
        };
        vigil_security::runtime_metrics::register(metrics.registry(), "audit", Some(pool));
        crate::metrics::register_write_lock(metrics.registry(), Arc::clone(&store));
        vigil_security::runtime_metrics::register_disk(
            metrics.registry(),
            "audit",
            &settings.data_dir,
        );
        let bearer = match &settings.jwks {
            Some(cfg) => {
                let v = vigil_auth::JwksVerifier::start(cfg.clone(), metrics.registry());
                if let Err(e) = v.refresh().await {
                    tracing::warn!(error = %e, "the issuer's JWKS is not reachable yet; bearer tokens are refused until it is");
                }
                Some(Arc::new(v) as Arc<dyn vigil_security::token::TokenVerifier>)
            }
            None => settings.bearer.clone(),
        };
        // The service's own events (capability denials) go straight to its sequencer; while
        // the store is away they wait in the producer's memory queue (bounded, counted).
        let mut own = ProducerConfig::new("vigil-audit");
        own.mode = Mode::DropOnFull;
        let producer = AuditProducer::start(
            own,
            Arc::new(InProcess(sequencer.clone())),
            metrics.registry(),
        )
        .await?;
        guard.set_denial_sink(Arc::new(crate::denials::AuditDenials::new(
            producer.clone(),
        )));
        // Always scheduled: a tenant's own period applies even when the service keeps all.
        let retention = Some(tokio::spawn(crate::retention::run_schedule(
            Arc::clone(&store),
            Arc::clone(&checkpointer),
            sequencer.clone(),
            metrics.clone(),
            settings.retention,
            settings.retention_interval,
        )));
        let webhook_key = crate::keys::load_or_create_secret(
            &settings.data_dir,
            crate::webhooks::SECRET_KEY_FILE,
        )?;
        let webhooks = Arc::new(crate::webhooks::Webhooks::new(
            Arc::clone(&store),
            vigil_core::webhook::SecretKey::new(webhook_key),
            settings.webhooks.clone(),
            metrics.clone(),
        ));
        let (webhook_stop, stop_rx) = tokio::sync::watch::channel(false);
        let webhook_worker = tokio::spawn(Arc::clone(&webhooks).run(stop_rx));
        let verifier = settings.verify_every.map(|every| {
            tokio::spawn(crate::verification::run_schedule(
                Arc::clone(&store),
                metrics.clone(),
                every,
                Some(Arc::clone(&webhooks)),
            ))
        });
        let kafka = match &settings.kafka {
            Some(k) => Some(
                crate::kafka::KafkaIngest::start(k.clone(), sequencer.clone(), metrics.clone())
                    .await?,
            ),
            None => None,
        };
        let state = Arc::new(AppState {
            store,
            redactor,
            sequencer,
            producer,
            kafka,
            checkpointer,
            metrics,
            bearer: bearer.clone(),
            retention: settings.retention,
            webhooks,
            draining: Default::default(),
            console: settings.console.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| AuditError::Settings(format!("an HTTP client: {e}")))?,
        });
        let source = IdentitySource {
            trusted_headers: settings
                .trust_headers
                .then(|| settings.trusted_peers.clone()),
            bearer,
        };
        let app = router(Arc::clone(&state)).layer(Extension(SecurityConfig { source, guard }));
        let http_metrics = HttpMetrics::new("audit", state.metrics.registry(), MAX_ERROR_CODES);
        let app = vigil_security::harden(app, http_metrics);
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| AuditError::Http {
                    what: format!("binding {}", settings.listen),
                    source,
                })?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(settings.listen), store = %settings.database_url, "audit service listening");
        Ok(Application {
            listener,
            state,
            router: app,
            retention,
            verifier,
            webhook_worker,
            webhook_stop,
            shutdown_drain: settings.shutdown_drain,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Appends events in-process (for services running in the same process, `vigil dev`).
    pub fn sequencer(&self) -> crate::sequencer::Sequencer {
        self.state.sequencer.clone()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` resolves; then reports not ready and keeps serving for the
    /// drain period, finishes in-flight requests, commits what is queued and checkpoints
    /// every active tenant.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AuditError> {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let (state, drain) = (Arc::clone(&self.state), self.shutdown_drain);
        let drained = vigil_security::drain::after_drain(shutdown, drain, move || {
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed)
        });
        axum::serve(self.listener, service)
            .with_graceful_shutdown(drained)
            .await
            .map_err(|source| AuditError::Http {
                what: "serving HTTP".into(),
                source,
            })?;
        for task in [&self.retention, &self.verifier].into_iter().flatten() {
            task.abort();
        }
        // The webhook worker finishes the pass under way (its deliveries recorded), for a
        // while; then it is stopped where it is (what it sent unrecorded goes out again).
        let _ = self.webhook_stop.send(true);
        let mut worker = self.webhook_worker;
        if tokio::time::timeout(std::time::Duration::from_secs(10), &mut worker)
            .await
            .is_err()
        {
            worker.abort();
        }
        if let Some(k) = &self.state.kafka {
            k.stop().await;
        }
        self.state.producer.shutdown().await;
        self.state.sequencer.shutdown().await;
        Ok(())
    }
}
