//! `vigil auth …` and `vigil dev`: the auth service, its key, user and client commands, the
//! JWKS options every token-verifying service shares, and the in-process wiring of dev.

use crate::duration_arg;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vigil_audit::in_process::InProcess;
use vigil_auth::password::PasswordPolicy;
use vigil_auth::{JwksConfig, KeyAlgorithm};
use vigil_authsvc::events::Actor;
use vigil_authsvc::AuthSettings;
use vigil_core::ids::TenantId;
use vigil_core::DatabaseUrl;
use vigil_producer::{Delivery, TenantEvent, Transport, TransportError};
use vigil_security::capability::{Role, RoleSet};

#[derive(Subcommand, Debug)]
pub(crate) enum AuthCommand {
    /// Serve the auth API.
    Serve(Box<AuthServeArgs>),
    /// Signing keys, in the auth database (a running service picks changes up within its
    /// reload interval).
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Users (bootstrapping the first admin; afterwards use the API).
    Users {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Service clients (client-credentials grant).
    Clients {
        #[command(subcommand)]
        command: ClientCommand,
    },
}

#[derive(Args, Debug)]
pub(crate) struct DbArgs {
    /// The auth database: sqlite://PATH or postgres://…
    #[arg(long, env = "VIGIL_AUTH_DATABASE_URL")]
    database_url: DatabaseUrl,
}

#[derive(Args, Debug)]
pub(crate) struct KeyPolicyArgs {
    /// Algorithm of new keys: eddsa or es256.
    #[arg(long, env = "VIGIL_AUTH_KEY_ALG", default_value = "eddsa", value_parser = parse_alg)]
    key_alg: KeyAlgorithm,
    /// Lifetime of issued tokens (a bare number: seconds).
    #[arg(long, alias = "token-ttl-secs", env = "VIGIL_AUTH_TOKEN_TTL", default_value = "15m", value_parser = duration_arg::secs)]
    token_ttl: Duration,
    /// How long a rotated-out key stays published beyond the token lifetime (a bare number:
    /// seconds).
    #[arg(long, alias = "rotation-grace-secs", env = "VIGIL_AUTH_ROTATION_GRACE", default_value = "5m", value_parser = duration_arg::secs)]
    rotation_grace: Duration,
    /// Tenant whose audit chain records key events.
    #[arg(long, env = "VIGIL_AUTH_SYSTEM_TENANT", default_value = "system")]
    system_tenant: String,
}

fn parse_alg(s: &str) -> Result<KeyAlgorithm, String> {
    KeyAlgorithm::parse(s).ok_or_else(|| format!("{s:?}: expected eddsa or es256"))
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// The next key starts signing; the current one stays published until its tokens expire.
    Rotate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        policy: KeyPolicyArgs,
    },
    /// Every key with its state.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Stop publishing a rotated-out key now (e.g. after a compromise).
    Retire {
        /// The key id.
        kid: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        policy: KeyPolicyArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Create a user; the password is read from stdin.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Minimum password length.
        #[arg(long, default_value_t = 8)]
        min_password_chars: usize,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClientCommand {
    /// Create a service client; prints its id and secret (shown once).
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct AuthServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VIGIL_AUTH_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// sqlite://PATH or postgres://… (default: SQLite auth.db in the data directory).
    #[arg(long, env = "VIGIL_AUTH_DATABASE_URL")]
    database_url: Option<DatabaseUrl>,
    /// Holds the default SQLite file.
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = ".vigil")]
    data_dir: PathBuf,
    /// The `iss` of issued tokens (default http://<listen address>).
    #[arg(long, env = "VIGIL_AUTH_ISSUER")]
    issuer: Option<String>,
    /// The `aud` of issued tokens.
    #[arg(long, env = "VIGIL_AUTH_AUDIENCE", default_value = "vigil")]
    audience: String,
    #[command(flatten)]
    policy: KeyPolicyArgs,
    /// JWKS Cache-Control max-age (a bare number: seconds).
    #[arg(long, alias = "jwks-max-age-secs", env = "VIGIL_AUTH_JWKS_MAX_AGE", default_value = "5m", value_parser = duration_arg::secs)]
    jwks_max_age: Duration,
    /// How often keys are re-read from the database and due keys retired (a bare number:
    /// milliseconds).
    #[arg(long = "reload-interval", alias = "reload-ms", env = "VIGIL_AUTH_RELOAD_INTERVAL", default_value = "1s", value_parser = duration_arg::millis)]
    reload_interval: Duration,
    /// Minimum password length (NIST: at least 8).
    #[arg(long, env = "VIGIL_AUTH_MIN_PASSWORD_CHARS", default_value_t = 8)]
    min_password_chars: usize,
    /// Failed logins of one account from one address (or device) before that source is
    /// slowed down, 1 s doubling to 15 min; other sources are not.
    #[arg(long, env = "VIGIL_AUTH_LOCKOUT_THRESHOLD", default_value_t = 5)]
    lockout_threshold: i64,
    /// Failed logins from one address, over all accounts, before it is slowed down.
    #[arg(long, env = "VIGIL_AUTH_ADDRESS_THRESHOLD", default_value_t = 50)]
    address_threshold: i64,
    /// Failed logins of one account from anywhere before only sources that have logged in to it
    /// before (a known device, a known address) may try.
    #[arg(long, env = "VIGIL_AUTH_ACCOUNT_CEILING", default_value_t = 100)]
    account_ceiling: i64,
    /// A proxy (the gateway) whose X-Forwarded-For names the caller for login throttling.
    /// Repeatable; without it the peer's address counts.
    #[arg(
        long = "trusted-proxy",
        env = "VIGIL_AUTH_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// The audit service's base URL; auth events are sent there.
    #[arg(long, env = "VIGIL_AUDIT_URL")]
    audit_url: Option<String>,
    /// A Cedar capability policy replacing the shipped one.
    #[arg(long, env = "VIGIL_CAPABILITY_POLICY")]
    capability_policy: Option<PathBuf>,
}

/// How a service verifies bearer tokens through a JWKS.
#[derive(Args, Debug)]
pub(crate) struct JwksArgs {
    /// Longest a JWKS fetch may take (a bare number: milliseconds).
    #[arg(long, alias = "jwks-fetch-timeout-ms", env = "VIGIL_JWKS_FETCH_TIMEOUT", default_value = "5s", value_parser = duration_arg::millis)]
    jwks_fetch_timeout: Duration,
    /// Shortest interval between background JWKS refreshes (a bare number: milliseconds).
    #[arg(long, alias = "jwks-min-refresh-ms", env = "VIGIL_JWKS_MIN_REFRESH", default_value = "30s", value_parser = duration_arg::millis)]
    jwks_min_refresh: Duration,
    /// At most one JWKS fetch for unknown key ids per this long (a bare number:
    /// milliseconds).
    #[arg(long, alias = "jwks-unknown-kid-cooldown-ms", env = "VIGIL_JWKS_UNKNOWN_KID_COOLDOWN", default_value = "10s", value_parser = duration_arg::millis)]
    jwks_unknown_kid_cooldown: Duration,
    /// How long cached keys stay in use while the issuer is unreachable (a bare number:
    /// seconds).
    #[arg(long, alias = "jwks-max-stale-secs", env = "VIGIL_JWKS_MAX_STALE", default_value = "24h", value_parser = duration_arg::secs)]
    jwks_max_stale: Duration,
}

impl JwksArgs {
    pub(crate) fn config(
        &self,
        url: &str,
        issuer: &str,
        audience: &str,
        leeway: Duration,
    ) -> JwksConfig {
        let mut c = JwksConfig::new(url, issuer, audience);
        c.leeway = leeway;
        c.fetch_timeout = self.jwks_fetch_timeout.max(Duration::from_millis(1));
        c.min_refresh = self.jwks_min_refresh;
        c.unknown_kid_cooldown = self.jwks_unknown_kid_cooldown;
        c.max_stale = self.jwks_max_stale;
        c
    }
}

impl KeyPolicyArgs {
    fn apply(&self, s: &mut AuthSettings) {
        s.key_algorithm = self.key_alg;
        s.token_ttl = self.token_ttl.max(Duration::from_secs(1));
        s.rotation_grace = self.rotation_grace;
        s.system_tenant = self.system_tenant.clone();
    }

    fn policy(&self, url: &DatabaseUrl) -> anyhow::Result<vigil_authsvc::keyring::KeyPolicy> {
        let mut s = AuthSettings::new(url.clone());
        self.apply(&mut s);
        Ok(vigil_authsvc::app::key_policy(&s)?)
    }
}

impl AuthServeArgs {
    fn settings(self) -> AuthSettings {
        let url = self.database_url.unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("auth.db").display()).into()
        });
        let mut s = AuthSettings::new(url);
        self.policy.apply(&mut s);
        s.listen = self.listen;
        s.issuer = self.issuer;
        s.audience = self.audience;
        s.jwks_max_age = self.jwks_max_age;
        s.reload_interval = self.reload_interval.max(Duration::from_millis(10));
        s.min_password_chars = self.min_password_chars;
        s.lockout_threshold = self.lockout_threshold.max(1);
        s.throttle.address_free = self.address_threshold.max(1);
        s.throttle.account_ceiling = self.account_ceiling.max(1);
        s.trusted_proxies = self.trusted_proxies;
        s.audit_url = self.audit_url;
        s.capability_policy = self.capability_policy;
        s
    }
}

fn roles(names: &[String]) -> anyhow::Result<RoleSet> {
    if let Some(bad) = names.iter().find(|n| Role::parse(n).is_none()) {
        anyhow::bail!("{bad:?} is not a role (roles: super_admin, admin, manager, inventory, cashier, support, service)");
    }
    Ok(RoleSet::from_names(names.iter().map(String::as_str)))
}

fn tenant(t: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))
}

pub(crate) async fn run(
    cmd: AuthCommand,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    use vigil_authsvc::app::open_store;
    match cmd {
        AuthCommand::Serve(args) => {
            let settings = args.settings();
            if let Some(dir) = settings
                .database_url
                .expose()
                .strip_prefix("sqlite://")
                .and_then(|p| std::path::Path::new(p).parent())
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let app = vigil_authsvc::Application::build(settings, None).await?;
            app.run_until_stopped(shutdown).await?;
        }
        AuthCommand::Keys {
            command: KeyCommand::List { db },
        } => {
            let store = open_store(&db.database_url).await?;
            println!("kid\talg\tstate\tcreated_at\tretire_after");
            for k in store.keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.kid,
                    k.alg,
                    k.state.as_str(),
                    k.created_at,
                    k.retire_after
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        AuthCommand::Keys {
            command: KeyCommand::Rotate { db, policy },
        } => {
            let store = open_store(&db.database_url).await?;
            let kid = vigil_authsvc::keyring::rotate(
                &store,
                &policy.policy(&db.database_url)?,
                Actor::System,
            )
            .await?;
            println!("{kid}");
        }
        AuthCommand::Keys {
            command: KeyCommand::Retire { kid, db, policy },
        } => {
            let store = open_store(&db.database_url).await?;
            let p = policy.policy(&db.database_url)?;
            if !vigil_authsvc::keyring::retire(
                &store,
                &p,
                &kid,
                Actor::System,
                "retired by an operator",
            )
            .await?
            {
                eprintln!("vigil: {kid} is not a rotated-out key (rotate first to retire the signing key)");
                return Ok(ExitCode::from(1));
            }
            println!("retired {kid}");
        }
        AuthCommand::Users {
            command:
                UserCommand::Add {
                    db,
                    tenant: t,
                    username,
                    roles: r,
                    min_password_chars,
                },
        } => {
            let store = open_store(&db.database_url).await?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\n', '\r']);
            vigil_authsvc::service::add_user(
                &store,
                &PasswordPolicy::with_min_chars(min_password_chars),
                &tenant(&t)?,
                &username,
                password,
                roles(&r)?,
                Actor::System,
            )
            .await?;
            println!("created {t}/{username}");
        }
        AuthCommand::Clients {
            command:
                ClientCommand::Add {
                    db,
                    tenant: t,
                    name,
                    roles: r,
                },
        } => {
            let store = open_store(&db.database_url).await?;
            let (id, secret) = vigil_authsvc::service::add_client(
                &store,
                &tenant(&t)?,
                &name,
                roles(&r)?,
                Actor::System,
            )
            .await?;
            println!("client_id={id}\nclient_secret={}", secret.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil dev`: the auth service and the audit service in one process on loopback; the audit
/// service takes the auth service's tokens (through its JWKS) and, from loopback, the trusted
/// identity headers.
pub(crate) async fn dev(
    data_dir: PathBuf,
    [listen, auth_listen, gateway_listen]: [SocketAddr; 3],
    verify_every: Option<Duration>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let issuer = format!("http://{auth_listen}");
    let mut audit = vigil_audit::AuditSettings::embedded(data_dir.clone());
    audit.listen = listen;
    audit.verify_every = verify_every;
    let mut jwks = JwksConfig::new(
        format!("{issuer}/.well-known/jwks.json"),
        issuer.clone(),
        "vigil",
    );
    jwks.min_refresh = Duration::from_secs(5);
    jwks.unknown_kid_cooldown = Duration::from_secs(1);
    audit.jwks = Some(jwks);
    audit.console.auth_url = Some(issuer.clone());
    let mut auth = AuthSettings::new(format!("sqlite://{}", data_dir.join("auth.db").display()));
    auth.listen = auth_listen;
    auth.issuer = Some(issuer.clone());
    auth.trust_headers = true;
    // The auth service first, so the audit service finds its JWKS at start.
    let store = vigil_authsvc::app::open_store(&auth.database_url).await?;
    let tenant_id = TenantId::parse("acme").expect("valid");
    let mut banner_password = None;
    if store.user(&tenant_id, "admin").await?.is_none() {
        let password = format!("dev-{}", hex::encode(rand::random::<[u8; 8]>()));
        vigil_authsvc::service::add_user(
            &store,
            &PasswordPolicy::default(),
            &tenant_id,
            "admin",
            &password,
            RoleSet::of(&[Role::Admin]),
            Actor::System,
        )
        .await?;
        // Kept in a file only its owner can read; shown on a terminal, never sent to a log.
        let path = data_dir.join("dev-admin-password");
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        std::io::Write::write_all(
            &mut o
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?,
            password.as_bytes(),
        )?;
        banner_password = Some(password);
    }
    let late = Arc::new(LateTransport::default());
    let auth_app =
        vigil_authsvc::Application::build(auth, Some(Arc::clone(&late) as Arc<dyn Transport>))
            .await?;
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx1 = stop_tx.subscribe();
    let auth_task = tokio::spawn(auth_app.run_until_stopped(async move {
        let _ = rx1.recv().await;
    }));
    let audit_app = vigil_audit::Application::build(audit).await?;
    let _ = late.0.set(InProcess(audit_app.sequencer()));
    let audit_addr = audit_app.local_addr();
    let mut gw = vigil_gateway::GatewayConfig::from_toml(&format!(
        r#"
        [auth]
        jwks_url = "{issuer}/.well-known/jwks.json"
        issuer = "{issuer}"
        [rate_limit]
        default_rpm = 6000
        [[routes]]
        prefix = "/"
        upstreams = ["http://{audit_addr}"]
        access = "authenticated"
        "#
    ))?;
    gw.listen = gateway_listen;
    gw.audit_url = Some(format!("http://{audit_addr}"));
    let gateway = vigil_gateway::Gateway::build(gw).await?;
    let addr = gateway.local_addr();
    let mut rx2 = stop_tx.subscribe();
    let gateway_task = tokio::spawn(gateway.run_until_stopped(async move {
        let _ = rx2.recv().await;
    }));
    let password_file = data_dir.join("dev-admin-password");
    let password_line = match &banner_password {
        Some(p) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => format!(
            "The first admin: tenant acme, user admin, password {p} (also in {}, mode 0600).",
            password_file.display()
        ),
        _ => format!(
            "The first admin: tenant acme, user admin; the password is in {} (mode 0600).",
            password_file.display()
        ),
    };
    let banner = format!(
        "\nvigil dev: the gateway on http://{addr} in front of the audit API (http://{audit_addr}), auth on {issuer} (SQLite in {dir})\n{password_line}\n\n  \
         TOKEN=$(curl -s {issuer}/v1/login -H 'Content-Type: application/json' \\\n    \
         -d '{{\"tenant_id\":\"acme\",\"username\":\"admin\",\"password\":\"'$(cat {pw})'\"}}' | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
         curl -s http://{addr}/v1/events -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n    \
         -d '[{{\"occurred_at\":\"2026-11-22T10:00:00Z\",\"actor\":{{\"type\":\"user\",\"id\":\"u-42\"}},\"action\":\"payment.void\",\"resource\":{{\"type\":\"payment\",\"id\":\"p-9\"}},\"outcome\":\"success\",\"source\":{{\"service\":\"payments\"}}}}]'\n  \
         curl -s 'http://{addr}/v1/events?limit=10' -H \"Authorization: Bearer $TOKEN\"\n  \
         open http://{audit_addr}/console  (the web console: sign in as above, pin the key from `vigil keys list`)\n  \
         cargo run -q -p vigil -- verify --database-url sqlite://{dir}/audit.db\n\n\
         The gateway verifies the token, applies the tenant's rate limit and passes the identity on;\n\
         from loopback the audit API also takes the identity headers X-Tenant-ID, X-User-ID and X-Roles directly.\n",
        dir = data_dir.display(),
        pw = password_file.display()
    );
    // One write, and a closed stderr (a supervisor that stopped reading) is not a reason to
    // stop serving: eprintln! would panic on it.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
    let result = audit_app.run_until_stopped(shutdown).await;
    let _ = stop_tx.send(());
    let _ = auth_task.await;
    let _ = gateway_task.await;
    Ok(result?)
}

/// The in-process audit service as a transport, connected once the audit service is built (it
/// starts after the auth service, whose JWKS it reads at start). Until then sends fail and the
/// producer keeps the events to send again.
#[derive(Debug, Default)]
struct LateTransport(tokio::sync::OnceCell<InProcess>);

#[async_trait::async_trait]
impl Transport for LateTransport {
    fn name(&self) -> &'static str {
        "in_process"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        match self.0.get() {
            Some(t) => t.send(batch).await,
            None => Err(TransportError::Unavailable(
                "the audit service has not started yet".into(),
            )),
        }
    }
}
