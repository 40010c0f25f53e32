//! Wiring: [`Application::build`] opens the database, loads (or creates) the keys and binds;
//! [`Application::run_until_stopped`] serves, keeps the key ring current and delivers the
//! audit outbox until the shutdown signal.

use crate::http::{router, AppState};
use crate::keyring::{KeyPolicy, KeyRing};
use crate::outbox::KeyRingTokens;
use crate::service::ServiceError;
use crate::settings::AuthSettings;
use crate::store::AuthStore;
use crate::throttle::ThrottlePolicy;
use axum::{Extension, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use vigil_auth::password::PasswordPolicy;
use vigil_auth::{JwksConfig, JwksVerifier};
use vigil_core::ids::TenantId;
use vigil_core::DatabaseUrl;
use vigil_producer::transport::LogTransport;
use vigil_producer::{AuditProducer, HttpAuth, HttpTransport, Mode, ProducerConfig, Transport};
use vigil_security::capability::CapabilityPolicy;
use vigil_security::context::{Guard, IdentitySource, SecurityConfig};
use vigil_security::http_metrics::{HttpMetrics, MAX_ERROR_CODES};

/// A built, bound auth service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
    producer: AuditProducer,
    reload_interval: Duration,
}

/// Opens the auth database (for the service and for `vigil auth` commands).
pub async fn open_store(url: &DatabaseUrl) -> Result<AuthStore, ServiceError> {
    vigil_store::identity::open(url.expose(), crate::events::SERVICE)
        .await
        .map_err(|source| ServiceError::Open {
            url: url.to_string(),
            source,
        })
}

/// The key policy `settings` describe.
pub fn key_policy(settings: &AuthSettings) -> Result<KeyPolicy, ServiceError> {
    Ok(KeyPolicy {
        algorithm: settings.key_algorithm,
        publish_after_rotation: settings.token_ttl + settings.rotation_grace,
        system_tenant: TenantId::parse(&settings.system_tenant)
            .map_err(|e| ServiceError::Settings(format!("--system-tenant: {e}")))?,
    })
}

impl Application {
    /// Opens the database, loads the keys and binds. `transport` replaces the audit
    /// destination (`vigil dev` passes the in-process audit service); without it events go to
    /// `settings.audit_url` (over HTTP, with tokens this service issues itself), or to the log.
    pub async fn build(
        settings: AuthSettings,
        transport: Option<Arc<dyn Transport>>,
    ) -> Result<Application, ServiceError> {
        let bind = |source| ServiceError::Http {
            what: format!("binding {}", settings.listen),
            source,
        };
        let listener = TcpListener::bind(settings.listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let issuer = settings
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let policy = match &settings.capability_policy {
            Some(path) => CapabilityPolicy::from_file(path)?,
            None => CapabilityPolicy::shipped(),
        };
        let store = open_store(&settings.database_url).await?;
        let registry = prometheus::Registry::new();
        let pool: vigil_security::runtime_metrics::PoolReading = {
            let store = store.clone();
            Arc::new(move || store.pool_stats().reading())
        };
        vigil_security::runtime_metrics::register(&registry, "auth", Some(pool));
        // An embedded store's directory fills up; a server's disk is the database's to watch.
        if let Some(file) = settings.database_url.expose().strip_prefix("sqlite://") {
            let dir = std::path::Path::new(file.split('?').next().unwrap_or(file))
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            vigil_security::runtime_metrics::register_disk(&registry, "auth", dir);
        }
        // The service's own tokens (management API) are verified against its own keys.
        let mut own = JwksConfig::new(String::new(), issuer.clone(), settings.audience.clone());
        own.leeway = Duration::from_secs(5);
        let verifier = JwksVerifier::offline(own, &registry);
        let keys = KeyRing::load(store.clone(), key_policy(&settings)?, verifier.clone()).await?;
        {
            let keys = keys.clone();
            vigil_security::runtime_metrics::register_gauge_fn(
                &registry,
                "auth_signing_key_activated_timestamp_seconds",
                "Unix time the current signing key started signing",
                Arc::new(move || keys.current_activated_at() as f64),
            );
        }
        let transport: Arc<dyn Transport> = match (transport, &settings.audit_url) {
            (Some(t), _) => t,
            (None, Some(url)) => {
                let tokens =
                    KeyRingTokens::new(keys.clone(), issuer.clone(), settings.audience.clone());
                Arc::new(HttpTransport::new(url, HttpAuth::Bearer(Arc::new(tokens))))
            }
            (None, None) => {
                tracing::warn!("no --audit-url: auth events are written to the log only");
                Arc::new(LogTransport)
            }
        };
        // The outbox is this service's spool: the producer keeps no other, and a row leaves
        // the outbox only once its event is delivered.
        let mut config = ProducerConfig::new(crate::events::SERVICE);
        config.mode = Mode::DropOnFull;
        let producer = AuditProducer::start(config, transport, &registry).await?;
        let guard = Guard::new(policy, &registry);
        let state = Arc::new(AppState::new(
            store,
            keys,
            issuer,
            settings.audience.clone(),
            settings.token_ttl,
            settings.jwks_max_age,
            PasswordPolicy::with_min_chars(settings.min_password_chars),
            ThrottlePolicy {
                pair_free: settings.lockout_threshold,
                ..settings.throttle
            },
            settings.trusted_proxies.clone(),
            registry,
        ));
        let source = IdentitySource {
            trusted_headers: settings.trust_headers.then(Vec::new),
            bearer: Some(Arc::new(verifier)),
        };
        let http_metrics = HttpMetrics::new("auth", &state.registry, MAX_ERROR_CODES);
        let app = router(Arc::clone(&state)).layer(Extension(SecurityConfig { source, guard }));
        let app = vigil_security::harden(app, http_metrics);
        tracing::info!(%addr, issuer = %state.issuer, store = %settings.database_url, "auth service listening");
        Ok(Application {
            listener,
            state,
            router: app,
            producer,
            reload_interval: settings.reload_interval,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The issuer (`iss`) of this service's tokens.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The key ring (for tests and `vigil dev`).
    pub fn keys(&self) -> &KeyRing {
        &self.state.keys
    }

    /// Serves until `shutdown` resolves, then delivers what is left in the audit outbox.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        self.state.keys.spawn_maintenance(self.reload_interval);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let drainer = tokio::spawn(crate::outbox::drain(
            self.state.store.clone(),
            self.producer.clone(),
            Duration::from_millis(200),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ServiceError::Http {
                what: "serving HTTP".into(),
                source,
            });
        let _ = stop_tx.send(());
        let _ = drainer.await;
        self.producer.shutdown().await;
        served
    }
}
