//! The auth service over HTTP, in-process on a random port, on SQLite and on Postgres:
//! logins and their throttling, the client-credentials grant, users, clients and API keys
//! behind capabilities, key rotation and retirement, and the audit events all of it records.

use reqwest::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_auth::{JwksConfig, JwksVerifier};
use vigil_authsvc::events::Actor;
use vigil_authsvc::{Application, AuthSettings};
use vigil_core::ids::TenantId;
use vigil_producer::{Delivery, TenantEvent, Transport, TransportError};
use vigil_security::capability::{Role, RoleSet};
use vigil_security::token::TokenVerifier;

/// Collects what the service would send to the audit service.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(String, Value)>>);

#[async_trait::async_trait]
impl Transport for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        let mut v = self.0.lock().unwrap();
        v.extend(batch.iter().map(|e| {
            (
                e.tenant().as_str().to_owned(),
                serde_json::from_slice(e.json()).unwrap(),
            )
        }));
        Ok(Delivery::default())
    }
}

impl Recorder {
    fn actions(&self, tenant: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, e)| e["action"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn wait_for(&self, tenant: &str, action: &str, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let found: Vec<Value> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, e)| t == tenant && e["action"] == action)
                .map(|(_, e)| e.clone())
                .collect();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} × {action} in {tenant} never arrived; have {:?}",
            self.actions(tenant)
        );
    }
}

struct Svc {
    base: String,
    http: Client,
    audit: Arc<Recorder>,
    issuer: String,
    db: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: String) -> Svc {
    start_with(db, |_| {}).await
}

async fn start_with(db: String, tweak: impl FnOnce(&mut AuthSettings)) -> Svc {
    let mut s = AuthSettings::new(db.clone());
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.reload_interval = Duration::from_millis(100);
    s.token_ttl = Duration::from_secs(60);
    s.rotation_grace = Duration::from_secs(1);
    s.lockout_threshold = 3;
    tweak(&mut s);
    let audit = Arc::new(Recorder::default());
    let app = Application::build(s, Some(audit.clone() as Arc<dyn Transport>))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let issuer = app.issuer().to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    Svc {
        base,
        http: Client::new(),
        audit,
        issuer,
        db,
        _stop: tx,
    }
}

impl Svc {
    /// A login from `address` (through the trusted proxy's X-Forwarded-For), with `cookie`.
    async fn login_from(
        &self,
        address: &str,
        cookie: Option<&str>,
        tenant: &str,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}/v1/login", self.base))
            .header("X-Forwarded-For", address)
            .json(&json!({"tenant_id": tenant, "username": user, "password": password}));
        if let Some(c) = cookie {
            r = r.header("Cookie", c);
        }
        r.send().await.unwrap()
    }

    async fn login(&self, tenant: &str, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/login", self.base))
            .json(&json!({"tenant_id": tenant, "username": user, "password": password}))
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, tenant: &str, user: &str, password: &str) -> String {
        let r = self.login(tenant, user, password).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn store(&self) -> vigil_authsvc::store::AuthStore {
        vigil_authsvc::app::open_store(&self.db.as_str().into())
            .await
            .unwrap()
    }
}

async fn bootstrap(svc: &Svc, tenant: &str, user: &str, password: &str, roles: &[Role]) {
    vigil_authsvc::service::add_user(
        &svc.store().await,
        &vigil_auth::password::PasswordPolicy::default(),
        &TenantId::parse(tenant).unwrap(),
        user,
        password,
        RoleSet::of(roles),
        Actor::System,
    )
    .await
    .unwrap();
}

async fn sqlite() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        format!("sqlite://{}", dir.path().join("auth.db").display()),
        dir,
    )
}

async fn logins_issue_verifiable_tokens_and_failures_are_throttled(db: String) {
    let svc = start(db).await;
    bootstrap(&svc, "acme", "alice", "velvet morning tide", &[Role::Admin]).await;
    let token = svc.token("acme", "alice", "velvet morning tide").await;
    // The token verifies through the published JWKS, as any service would.
    let registry = prometheus::Registry::new();
    let v = JwksVerifier::start(
        JwksConfig::new(
            format!("{}/.well-known/jwks.json", svc.base),
            svc.issuer.clone(),
            "vigil",
        ),
        &registry,
    );
    v.refresh().await.unwrap();
    let id = v.verify(&token).await.unwrap();
    assert_eq!(
        (id.tenant_id.as_str(), id.subject.as_str()),
        ("acme", "user:alice")
    );
    assert!(id.roles.contains(Role::Admin));
    // Wrong tenant, unknown user, wrong password: one answer for all, no enumeration.
    for (t, u, p) in [
        ("other", "alice", "velvet morning tide"),
        ("acme", "bob", "whatever it is"),
        ("acme", "alice", "wrong password!"),
    ] {
        let r = svc.login(t, u, p).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap()["message"],
            "invalid credentials"
        );
    }
    // Two more failures reach the threshold (3): the account is throttled, even for the
    // right password, with Retry-After.
    for _ in 0..2 {
        assert_eq!(
            svc.login("acme", "alice", "wrong password!").await.status(),
            401
        );
    }
    let r = svc.login("acme", "alice", "velvet morning tide").await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    svc.token("acme", "alice", "velvet morning tide").await;
    // Every attempt is an audit event in the user's tenant; no event carries the password.
    let logins = svc.audit.wait_for("acme", "auth.login", 6).await;
    assert!(logins.iter().any(|e| e["outcome"] == "success"));
    // The outbox stamped each event with this database's producer id and the tenant's next
    // producer_seq, in the transaction that recorded it: gapless and in order.
    let acme: Vec<Value> = svc
        .audit
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == "acme")
        .map(|(_, e)| e["source"].clone())
        .collect();
    assert!(acme.iter().all(|s| s["service"] == "vigil-auth"
        && s["producer_id"]
            .as_str()
            .unwrap()
            .starts_with("vigil-auth.")
        && s["producer_id"] == acme[0]["producer_id"]));
    let seqs: Vec<i64> = acme
        .iter()
        .map(|s| s["producer_seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(logins.iter().any(|e| e["payload"]["reason"] == "throttled"));
    assert!(logins
        .iter()
        .any(|e| e["payload"]["reason"] == "unknown_user"));
    // A stranger naming a tenant nobody has created makes no chain for it: that attempt is
    // the system tenant's event.
    let system = svc.audit.wait_for("system", "auth.login", 1).await;
    assert!(system.iter().any(
        |e| e["payload"]["reason"] == "unknown_tenant" && e["payload"]["tenant_id"] == "other"
    ));
    assert!(!svc
        .audit
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(t, _)| t == "other"));
    let all = serde_json::to_string(&*svc.audit.0.lock().unwrap()).unwrap();
    assert!(!all.contains("velvet morning tide") && !all.contains("wrong password!"));
    // A tenant id that cannot be one is refused where the body is read, naming the field.
    for bad in ["ACME", "-a", "a b", ""] {
        let r = svc.login(bad, "alice", "whatever it is").await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["message"].as_str().unwrap().contains("tenant_id"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn logins_sqlite() {
    let (db, _dir) = sqlite().await;
    logins_issue_verifiable_tokens_and_failures_are_throttled(db).await;
}

#[tokio::test]
async fn logins_postgres() {
    logins_issue_verifiable_tokens_and_failures_are_throttled(
        vigil_store::testing::fresh_postgres_url().await,
    )
    .await;
}

async fn management_needs_capabilities_and_stays_in_the_tenant(db: String) {
    let svc = start(db).await;
    bootstrap(
        &svc,
        "acme",
        "root",
        "velvet morning tide",
        &[Role::SuperAdmin],
    )
    .await;
    bootstrap(&svc, "acme", "ada", "quiet harbour lights", &[Role::Admin]).await;
    bootstrap(
        &svc,
        "acme",
        "cass",
        "amber field sparrow",
        &[Role::Cashier],
    )
    .await;
    let admin = svc.token("acme", "ada", "quiet harbour lights").await;
    let cashier = svc.token("acme", "cass", "amber field sparrow").await;
    let root = svc.token("acme", "root", "velvet morning tide").await;
    use reqwest::Method as M;
    // Users.
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/users",
            &cashier,
            Some(json!({"username": "x", "password": "long enough pass", "roles": []})),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("missing_role")));
    assert_eq!(b["missing_role"], "identity_manage");
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/users",
            &admin,
            Some(json!({"username": "dan", "password": "password1", "roles": ["cashier"]})),
        )
        .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (
            400,
            Some("this password is on a list of common or breached passwords")
        )
    );
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/users",
            &admin,
            Some(json!({"username": "dan", "password": "dan's secret dan", "roles": ["cashier"]})),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (201, None), "{b}");
    let (s, b) = svc.call(M::POST, "/v1/users", &admin, Some(json!({"username": "eve", "password": "long enough pass", "roles": ["super_admin"]}))).await;
    assert_eq!(
        (s, b["missing_role"].as_str()),
        (403, Some("keys_manage")),
        "an admin cannot grant super_admin: {b}"
    );
    let (s, _) = svc
        .call(
            M::POST,
            "/v1/users",
            &admin,
            Some(json!({"username": "dan", "password": "another long one", "roles": []})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/users",
            &admin,
            Some(json!({"username": "fay", "password": "long enough pass", "roles": ["wizard"]})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (_, b) = svc.call(M::GET, "/v1/users", &admin, None).await;
    let names: Vec<&str> = b["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "cass", "dan", "root"]);
    assert!(!b.to_string().contains("argon2"), "hashes are never listed");
    svc.token("acme", "dan", "dan's secret dan").await;
    assert_eq!(
        svc.call(M::DELETE, "/v1/users/dan", &admin, None).await.0,
        204
    );
    assert_eq!(
        svc.login("acme", "dan", "dan's secret dan").await.status(),
        401
    );

    // Service clients and the client-credentials grant.
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/clients",
            &cashier,
            Some(json!({"name": "payments", "roles": ["service"]})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/clients",
            &admin,
            Some(json!({"name": "keys", "roles": ["super_admin"]})),
        )
        .await;
    assert_eq!(s, 403, "an admin cannot make a super_admin client: {b}");
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/clients",
            &admin,
            Some(json!({"name": "payments", "roles": ["service"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (id, secret) = (
        b["client_id"].as_str().unwrap().to_owned(),
        b["client_secret"].as_str().unwrap().to_owned(),
    );
    let grant = |form: Vec<(&'static str, String)>, basic: Option<(String, String)>| {
        let mut r = svc
            .http
            .post(format!("{}/oauth/token", svc.base))
            .form(&form);
        if let Some((u, p)) = basic {
            r = r.basic_auth(u, Some(p));
        }
        r.send()
    };
    let r = grant(
        vec![("grant_type", "client_credentials".into())],
        Some((id.clone(), secret.clone())),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let r = grant(
        vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = grant(
        vec![("grant_type", "client_credentials".into())],
        Some((id.clone(), "vcs_wrong".into())),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = grant(
        vec![("grant_type", "password".into())],
        Some((id.clone(), secret.clone())),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    svc.audit.wait_for("acme", "auth.token.issued", 2).await;

    // API keys: shown once, listed without the secret, rotated with overlap, revoked.
    let (s, b) = svc
        .call(
            M::POST,
            "/v1/api-keys",
            &admin,
            Some(json!({"name": "pos-terminal", "roles": ["cashier"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (key_id, key) = (
        b["id"].as_str().unwrap().to_owned(),
        b["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(vigil_auth::secret::api_key_id(&key), Some(key_id.as_str()));
    let (_, listed) = svc.call(M::GET, "/v1/api-keys", &admin, None).await;
    assert!(
        !listed.to_string().contains(&key),
        "a key is never shown again"
    );
    assert_eq!(listed["api_keys"][0]["active"], true);
    let (s, b) = svc
        .call(
            M::POST,
            &format!("/v1/api-keys/{key_id}/rotate"),
            &admin,
            Some(json!({"overlap_secs": 3600})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let new_id = b["id"].as_str().unwrap().to_owned();
    let stored = svc.store().await.api_key(&key_id).await.unwrap().unwrap();
    assert_eq!(stored.replaced_by.as_deref(), Some(new_id.as_str()));
    assert!(
        stored.active(vigil_authsvc::keyring::unix_now()),
        "the old key works through the overlap"
    );
    assert!(!stored.active(vigil_authsvc::keyring::unix_now() + 3601));
    assert_eq!(
        svc.call(
            M::POST,
            &format!("/v1/api-keys/{key_id}/rotate"),
            &admin,
            None
        )
        .await
        .0,
        409,
        "rotated once only"
    );
    assert_eq!(
        svc.call(M::DELETE, &format!("/v1/api-keys/{new_id}"), &admin, None)
            .await
            .0,
        204
    );
    assert_eq!(
        svc.call(M::DELETE, &format!("/v1/api-keys/{new_id}"), &admin, None)
            .await
            .0,
        404
    );
    // Another tenant's admin sees none of it.
    bootstrap(&svc, "globex", "gina", "violet canyon echo", &[Role::Admin]).await;
    let other = svc.token("globex", "gina", "violet canyon echo").await;
    assert_eq!(
        svc.call(M::GET, "/v1/api-keys", &other, None).await.1["api_keys"],
        json!([])
    );
    assert_eq!(
        svc.call(M::DELETE, &format!("/v1/api-keys/{key_id}"), &other, None)
            .await
            .0,
        404
    );
    for a in [
        "auth.user.created",
        "auth.user.deleted",
        "auth.client.created",
        "auth.api_key.created",
        "auth.api_key.rotated",
        "auth.api_key.revoked",
    ] {
        svc.audit.wait_for("acme", a, 1).await;
    }
    let all = serde_json::to_string(&*svc.audit.0.lock().unwrap()).unwrap();
    assert!(
        !all.contains(&key) && !all.contains(&secret),
        "no audit event carries a secret"
    );

    // Signing keys: keys_manage (super_admin) only, and only in the system tenant.
    assert_eq!(
        svc.call(M::POST, "/v1/keys/rotate", &admin, None).await.0,
        403
    );
    assert_eq!(
        svc.call(M::POST, "/v1/keys/rotate", &root, None).await.0,
        403,
        "a tenant's super_admin does not own the platform's keys"
    );
    bootstrap(
        &svc,
        "system",
        "platform",
        "velvet morning tide",
        &[Role::SuperAdmin],
    )
    .await;
    let root = svc.token("system", "platform", "velvet morning tide").await;
    let (_, before) = svc.call(M::GET, "/v1/keys", &root, None).await;
    let state = |b: &Value, st: &str| {
        b["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["state"] == st)
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (old_current, old_next) = (
        state(&before, "current")[0].clone(),
        state(&before, "next")[0].clone(),
    );
    let (s, b) = svc.call(M::POST, "/v1/keys/rotate", &root, None).await;
    assert_eq!(
        (s, b["signing_kid"].as_str()),
        (200, Some(old_next.as_str())),
        "the pre-published key signs next"
    );
    let jwks: Value = svc
        .http
        .get(format!("{}/.well-known/jwks.json", svc.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        published.contains(&old_current.as_str())
            && published.contains(&old_next.as_str())
            && published.len() == 3
    );
    assert!(
        !jwks.to_string().contains("\"d\""),
        "no private part is published"
    );
    assert_eq!(
        svc.call(M::POST, &format!("/v1/keys/{old_next}/retire"), &root, None)
            .await
            .0,
        409,
        "the signing key cannot be retired"
    );
    assert_eq!(
        svc.call(
            M::POST,
            &format!("/v1/keys/{old_current}/retire"),
            &root,
            None
        )
        .await
        .0,
        204
    );
    let jwks: Value = svc
        .http
        .get(format!("{}/.well-known/jwks.json", svc.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!jwks.to_string().contains(&old_current));
    svc.audit.wait_for("system", "auth.key.rotated", 1).await;
    svc.audit.wait_for("system", "auth.key.retired", 1).await;
}

#[tokio::test]
async fn management_sqlite() {
    let (db, _dir) = sqlite().await;
    management_needs_capabilities_and_stays_in_the_tenant(db).await;
}

#[tokio::test]
async fn management_postgres() {
    management_needs_capabilities_and_stays_in_the_tenant(
        vigil_store::testing::fresh_postgres_url().await,
    )
    .await;
}

#[tokio::test]
async fn rotated_out_keys_retire_by_themselves_after_the_token_lifetime() {
    let (db, _dir) = sqlite().await;
    let mut s = AuthSettings::new(db.clone());
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.reload_interval = Duration::from_millis(100);
    s.token_ttl = Duration::from_secs(1);
    s.rotation_grace = Duration::from_secs(1);
    let audit = Arc::new(Recorder::default());
    let app = Application::build(s, Some(audit.clone() as Arc<dyn Transport>))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let ring = app.keys().clone();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let first = ring.signer().kid().to_owned();
    ring.rotate(Actor::System).await.unwrap();
    let jwks = || async {
        reqwest::get(format!("{base}/.well-known/jwks.json"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        jwks().await.contains(&first),
        "still published right after rotation"
    );
    let retired = audit.wait_for("system", "auth.key.retired", 1).await;
    assert_eq!(retired[0]["resource"]["id"], first.as_str());
    assert!(!jwks().await.contains(&first));
}

/// The known-device cookie a successful login sets (`name=value`).
fn device_cookie(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

async fn throttling_holds_back_the_attacker_and_never_the_owner(db: String) {
    let svc = start_with(db, |s| {
        s.lockout_threshold = 5;
        s.throttle.address_free = 50;
        s.throttle.account_ceiling = 100;
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let pw = "velvet morning tide";
    bootstrap(&svc, "acme", "alice", pw, &[Role::Admin]).await;
    // The owner logs in once from home, and keeps the device cookie.
    let r = svc
        .login_from("198.51.100.7", None, "acme", "alice", pw)
        .await;
    assert_eq!(r.status(), 200);
    let device = device_cookie(&r);

    // 100 wrong passwords from one address: a handful are checked, then the address waits.
    let attacker = "203.0.113.66";
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let r = svc
            .login_from(attacker, None, "acme", "alice", "guess guess guess")
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 95);
    // The right password from the attacker's address is held back too (it is not tried).
    let r = svc.login_from(attacker, None, "acme", "alice", pw).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The owner, from another address and from the known device, is not.
    assert_eq!(
        svc.login_from("192.0.2.10", None, "acme", "alice", pw)
            .await
            .status(),
        200
    );
    assert_eq!(
        svc.login_from(attacker, Some(&device), "acme", "alice", pw)
            .await
            .status(),
        200
    );

    // A distributed guess: 20 addresses, 5 tries each, never slowed one by one, reach the
    // account's ceiling of 100; then a stranger's address waits while the owner's known
    // address and device still get in.
    for i in 0..20 {
        for _ in 0..5 {
            let r = svc
                .login_from(
                    &format!("10.9.{i}.1"),
                    None,
                    "acme",
                    "alice",
                    "spray spray spray",
                )
                .await;
            assert_eq!(r.status(), 401);
        }
    }
    let r = svc
        .login_from("10.9.99.1", None, "acme", "alice", "spray spray spray")
        .await;
    assert_eq!(
        r.status(),
        429,
        "the account's ceiling holds strangers back"
    );
    let r = svc.login_from("10.9.99.2", None, "acme", "alice", pw).await;
    assert_eq!(r.status(), 429, "even with the right password");
    assert_eq!(
        svc.login_from("198.51.100.7", None, "acme", "alice", pw)
            .await
            .status(),
        200
    );
    // That success reset the account's counter: the ceiling is not a lock the attacker keeps.
    assert_eq!(
        svc.login_from("10.9.99.3", None, "acme", "alice", pw)
            .await
            .status(),
        200
    );

    // Throttling says nothing about which accounts exist: a made-up account answers the same.
    let mut ghost = Vec::new();
    for _ in 0..7 {
        ghost.push(
            svc.login_from("203.0.113.99", None, "acme", "nobody", "guess guess guess")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(ghost, [401, 401, 401, 401, 401, 429, 429]);

    // Every throttle decision is counted and audited.
    let metrics = svc
        .http
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"auth_login_throttled_total{scope="source"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auth_login_throttled_total{scope="account"}"#),
        "{metrics}"
    );
    // One event per attempt: 1 + 100 + 1 + 2 + 100 + 2 + 2 + 7.
    let events = svc.audit.wait_for("acme", "auth.login", 215).await;
    let throttled: Vec<&Value> = events
        .iter()
        .filter(|e| e["payload"]["reason"] == "throttled")
        .collect();
    assert!(throttled
        .iter()
        .any(|e| e["payload"]["scope"] == "source" && e["payload"]["address"] == attacker));
    assert!(throttled.iter().any(|e| e["payload"]["scope"] == "account"));
}

#[tokio::test]
async fn throttling_sqlite() {
    let (db, _dir) = sqlite().await;
    throttling_holds_back_the_attacker_and_never_the_owner(db).await;
}

#[tokio::test]
async fn throttling_postgres() {
    throttling_holds_back_the_attacker_and_never_the_owner(
        vigil_store::testing::fresh_postgres_url().await,
    )
    .await;
}

/// A key state no version wrote (a damaged or newer database) is an error naming the key,
/// never read as retired (which would quietly drop a signing key from the JWKS).
async fn an_unknown_key_state_is_an_error_not_a_retired_key(db: String) {
    let svc = start(db.clone()).await;
    let store = svc.store().await;
    let current = store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == vigil_authsvc::store::KeyState::Current)
        .unwrap();
    // The schema's CHECK keeps such a state out; a newer version's schema (or damage) would
    // not, so the test steps around it as those would.
    let sql = "UPDATE signing_keys SET state = 'compromised' WHERE kid = $1";
    if db.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(sql)
            .bind(&current.kid)
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&db).await.unwrap();
        sqlx::query("ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_state_check")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(sql)
            .bind(&current.kid)
            .execute(&pool)
            .await
            .unwrap();
    }
    let err = store.keys().await.unwrap_err().to_string();
    assert!(err.contains(&current.kid), "{err}");
    assert!(err.contains("unknown state \"compromised\""), "{err}");
}

#[tokio::test]
async fn unknown_key_state_sqlite() {
    let (db, _dir) = sqlite().await;
    an_unknown_key_state_is_an_error_not_a_retired_key(db).await;
}

#[tokio::test]
async fn unknown_key_state_postgres() {
    an_unknown_key_state_is_an_error_not_a_retired_key(
        vigil_store::testing::fresh_postgres_url().await,
    )
    .await;
}
