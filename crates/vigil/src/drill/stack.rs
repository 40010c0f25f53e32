//! The local stack a drill starts in its own process: the audit service, the auth service and
//! the gateway, each on a free loopback port, each stopped as SIGTERM would stop it; and
//! service clients that get their tokens from the auth service as a real caller does.

use anyhow::Context;
use futures::future::BoxFuture;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use vigil_authsvc::AuthSettings;
use vigil_core::ids::TenantId;
use vigil_security::capability::{Role, RoleSet};

/// A free loopback port, picked when binding.
pub(crate) const ANY_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A service running in this process.
pub(crate) struct Service {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// Spawns `run(shutdown)`: the service serves until `shutdown` resolves.
    fn spawn<F, E>(run: impl FnOnce(BoxFuture<'static, ()>) -> F) -> Service
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = run(Box::pin(async move {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move { served.await.map_err(Into::into) });
        Service { stop, task }
    }

    /// Stops it as SIGTERM would (requests in flight finished, what it owes written).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Starts the audit service on `url` with `data_dir`, on a free loopback port, trusting the
/// load's identity headers and checkpointing often; returns its base URL.
pub(crate) async fn start_audit(url: &str, data_dir: &Path) -> anyhow::Result<(String, Service)> {
    start_audit_with(url, data_dir, |_| {}).await
}

/// [`start_audit`], with the settings changed by `tweak` first.
pub(crate) async fn start_audit_with(
    url: &str,
    data_dir: &Path,
    tweak: impl FnOnce(&mut vigil_audit::AuditSettings),
) -> anyhow::Result<(String, Service)> {
    let mut s = vigil_audit::AuditSettings::embedded(data_dir.to_path_buf());
    s.listen = "127.0.0.1:0".parse().expect("an address");
    s.database_url = url.to_string().into();
    s.trust_headers = true;
    s.checkpoint_every = 500;
    s.checkpoint_interval = Duration::from_millis(500);
    tweak(&mut s);
    let app = vigil_audit::Application::build(s)
        .await
        .context("starting the audit service")?;
    let base = format!("http://{}", app.local_addr());
    Ok((base, Service::spawn(|stop| app.run_until_stopped(stop))))
}

/// The auth service of a drill.
pub(crate) struct Auth {
    /// Its base URL, which is also the tokens' issuer.
    pub(crate) issuer: String,
    pub(crate) store: vigil_authsvc::store::AuthStore,
    pub(crate) service: Service,
}

impl Auth {
    /// The JWKS URL.
    pub(crate) fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.issuer)
    }

    /// A service client of `tenant` with `roles`, created in the auth database.
    pub(crate) async fn client(&self, tenant: &str, roles: &[Role]) -> anyhow::Result<Client> {
        let tenant = TenantId::parse(tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (id, secret) = vigil_authsvc::service::add_client(
            &self.store,
            &tenant,
            "drill-load",
            RoleSet::of(roles),
            vigil_authsvc::events::Actor::System,
        )
        .await?;
        Ok(Client {
            token_url: format!("{}/oauth/token", self.issuer),
            id,
            secret: secret.expose().to_owned(),
            http: reqwest::Client::new(),
        })
    }
}

/// Starts the auth service with its SQLite database in `dir`, sending its audit events to
/// `audit_url` (tokens it issues itself); `tweak` changes the settings first.
pub(crate) async fn start_auth(
    dir: &Path,
    audit_url: Option<String>,
    tweak: impl FnOnce(&mut AuthSettings),
) -> anyhow::Result<Auth> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut s = AuthSettings::new(format!("sqlite://{}", dir.join("auth.db").display()));
    s.listen = "127.0.0.1:0".parse().expect("an address");
    s.audit_url = audit_url;
    tweak(&mut s);
    let store = vigil_authsvc::app::open_store(&s.database_url).await?;
    let app = vigil_authsvc::Application::build(s, None)
        .await
        .context("starting the auth service")?;
    let issuer = app.issuer().to_string();
    Ok(Auth {
        issuer,
        store,
        service: Service::spawn(|stop| app.run_until_stopped(stop)),
    })
}

/// Starts a gateway from its TOML configuration on `listen` (port 0: a free one); returns
/// its base URL.
pub(crate) async fn start_gateway(
    listen: std::net::SocketAddr,
    toml: &str,
) -> anyhow::Result<(String, Service)> {
    let mut c = vigil_gateway::GatewayConfig::from_toml(toml)?;
    c.listen = listen;
    let gw = vigil_gateway::Gateway::build(c)
        .await
        .context("starting the gateway")?;
    let base = format!("http://{}", gw.local_addr());
    Ok((base, Service::spawn(|stop| gw.run_until_stopped(stop))))
}

/// A service client (client-credentials grant). `Debug` leaves the secret out.
#[derive(Clone)]
pub(crate) struct Client {
    token_url: String,
    id: String,
    secret: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A new access token from the auth service.
    pub(crate) async fn token(&self) -> anyhow::Result<String> {
        let r = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.id, Some(&self.secret))
            .form(&[("grant_type", "client_credentials")])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("asking the auth service for a token")?;
        anyhow::ensure!(
            r.status().is_success(),
            "the auth service refused a token: {}",
            r.status()
        );
        let body: serde_json::Value = r.json().await?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .context("no access_token in the token answer")
    }
}

/// The `kid` in a JWT's header (empty when it has none).
pub(crate) fn kid_of(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h["kid"].as_str().map(str::to_string))
        .unwrap_or_default()
}
