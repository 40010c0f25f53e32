//! The identity store: what the auth service keeps, on SQLite or Postgres — signing keys,
//! users, service clients, API keys, login throttle counters and the audit outbox — behind
//! one trait, [`IdentityStore`], checked on both engines by one contract suite
//! (`tests/identity.rs`), as the audit [`Store`](crate::Store) is.
//!
//! Every change that is an audit event writes that event into the outbox in the same
//! transaction, so an event is never lost and never recorded for a change that did not
//! happen.

use crate::db::Database;
use crate::{with_db, StoreError};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use std::sync::Arc;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Event, Source};
use vigil_core::ids::{EventId, TenantId};
use vigil_core::time::Timestamp;
use vigil_security::capability::RoleSet;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/identity/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/identity/postgres");

// ----- login throttling (the policy and decisions: the auth service's `throttle`) -----

/// The limits.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures of one (account, source) before delays start.
    pub pair_free: i64,
    /// Failures from one address (all accounts) before delays start.
    pub address_free: i64,
    /// Failures on one account (all sources) before strangers are held back.
    pub account_ceiling: i64,
    /// Longest delay, in seconds.
    pub max_delay: i64,
    /// Seconds without a failure after which a counter starts over.
    pub quiet_reset: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            pair_free: 5,
            address_free: 50,
            account_ceiling: 100,
            max_delay: 900,
            quiet_reset: 24 * 3600,
        }
    }
}

impl ThrottlePolicy {
    /// Seconds a counter at `failures` is locked for, past `free`.
    pub fn delay(&self, failures: i64, free: i64) -> i64 {
        if failures < free {
            0
        } else {
            (1i64 << (failures - free).min(20)).min(self.max_delay)
        }
    }
}

/// Who is trying, as far as throttling is concerned.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The account's tenant.
    pub tenant: TenantId,
    /// The account's name (as sent: the account may not exist).
    pub username: String,
    /// The caller's address.
    pub address: String,
    /// The hash of the caller's known-device cookie, if it sent one.
    pub device: Option<String>,
}

impl Attempt {
    fn account(&self) -> String {
        format!("{}/{}", self.tenant.as_str(), self.username)
    }

    /// The account's counter.
    pub fn account_key(&self) -> String {
        format!("acct:{}", self.account())
    }

    /// The address's counter.
    pub fn address_key(&self) -> String {
        format!("addr:{}", self.address)
    }

    /// This source's counter on this account: by device when it is known for the account.
    pub fn pair_key(&self, device_known: bool) -> String {
        match (&self.device, device_known) {
            (Some(d), true) => format!("pair:{}:dev:{d}", self.account()),
            _ => format!("pair:{}:addr:{}", self.account(), self.address),
        }
    }

    /// The sources a success remembers.
    pub fn sources(&self) -> Vec<String> {
        let mut s = vec![format!("addr:{}", self.address)];
        if let Some(d) = &self.device {
            s.push(format!("dev:{d}"));
        }
        s
    }
}

/// What the counters say before the password is checked. Times are unix milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standing {
    /// Locked-until of the pair, the address and the account (0 when none).
    pub pair_locked_until: i64,
    /// The address's lock.
    pub address_locked_until: i64,
    /// Failures on the account.
    pub account_failures: i64,
    /// The account's lock, once past the ceiling.
    pub account_locked_until: i64,
    /// The device cookie is one this account has seen succeed.
    pub device_known: bool,
    /// The address has logged in to this account before.
    pub address_known: bool,
}

/// An audit event for the outbox: the tenant whose chain it joins, and the event (stamped with
/// its producer position when it is written).
pub type OutboxEvent = (TenantId, EventBuilder);

/// Where a signing key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing: verifiers learn it before the first token it signs.
    Next,
    /// Signs new tokens.
    Current,
    /// Published until its tokens have expired.
    Previous,
    /// Neither published nor used.
    Retired,
}

impl KeyState {
    /// The state a stored name stands for; `None` for a name no version wrote (a damaged or
    /// newer database), which must never read as any state (least of all retired).
    pub fn parse(s: &str) -> Option<KeyState> {
        match s {
            "next" => Some(KeyState::Next),
            "current" => Some(KeyState::Current),
            "previous" => Some(KeyState::Previous),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Previous => "previous",
            KeyState::Retired => "retired",
        }
    }
}

/// A signing key as stored. `Debug` leaves the private key out.
#[derive(Clone)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Base64 PKCS#8.
    pub private_der: String,
    /// The public JWK.
    pub public_jwk: Value,
    /// Its state.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: i64,
    /// When it started signing.
    pub activated_at: Option<i64>,
    /// When it will be retired by itself.
    pub retire_after: Option<i64>,
    /// When it was retired.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("retire_after", &self.retire_after)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A new signing key to store. `Debug` leaves the private key out.
#[derive(Clone)]
pub struct NewKey {
    /// Key id.
    pub kid: String,
    /// Algorithm name.
    pub alg: String,
    /// Base64 PKCS#8.
    pub private_der: String,
    /// The public JWK.
    pub public_jwk: Value,
}

/// A user account. `Debug` leaves the password hash out.
#[derive(Clone)]
pub struct UserRow {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Name, unique in the tenant.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Its roles.
    pub roles: RoleSet,
    /// Unix seconds.
    pub created_at: i64,
}

/// A service client. `Debug` leaves the secret hash out.
#[derive(Clone)]
pub struct ClientRow {
    /// Public id.
    pub client_id: String,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Display name.
    pub name: String,
    /// Argon2id PHC string of the secret.
    pub secret_hash: String,
    /// Its roles.
    pub roles: RoleSet,
    /// Unix seconds.
    pub created_at: i64,
}

/// An API key (its hash; the key itself is never stored).
#[derive(Clone, Debug)]
pub struct ApiKeyRow {
    /// The visible id.
    pub id: String,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Display name.
    pub name: String,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// Its roles.
    pub roles: RoleSet,
    /// Unix seconds.
    pub created_at: i64,
    /// Stops working at (rotation overlap, or a set lifetime).
    pub expires_at: Option<i64>,
    /// Revoked at.
    pub revoked_at: Option<i64>,
    /// The key that replaced it.
    pub replaced_by: Option<String>,
}

impl ApiKeyRow {
    /// Usable at `now`?
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRow")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// The identity store on SQLite or Postgres.
#[derive(Debug, Clone)]
pub struct SqlIdentityStore {
    db: Database,
    /// `source.service` of this database's audit events.
    service: Arc<str>,
    /// `source.producer_id` of this database's audit events.
    producer_id: Arc<str>,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn conflict(op: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        op,
        message: message.into(),
    }
}

fn err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(what, e)
}

/// Inserts outbox events inside transaction `$tx` of store `$store`, each stamped with its
/// tenant's next `producer_seq`.
macro_rules! outbox {
    ($store:expr, $tx:expr, $events:expr) => {
        for (tenant, draft) in $events {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO audit_outbox_producer (tenant_id, last_seq) VALUES ($1, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE SET last_seq = audit_outbox_producer.last_seq + 1 \
                 RETURNING last_seq",
            )
            .bind(tenant.as_str())
            .fetch_one(&mut *$tx)
            .await
            .map_err(err("writing the audit outbox"))?;
            let event = $store.stamp(draft, seq).map_err(|e| {
                StoreError::Database {
                    op: "writing the audit outbox",
                    message: format!("an audit event does not validate: {e}"),
                }
            })?;
            sqlx::query("INSERT INTO audit_outbox (tenant_id, event) VALUES ($1, $2)")
                .bind(tenant.as_str())
                .bind(event.to_json().to_string())
                .execute(&mut *$tx)
                .await
                .map_err(err("writing the audit outbox"))?;
        }
    };
}

/// A signing key from its row; a state or public key that does not parse is an error naming
/// the key, never a guess.
macro_rules! key_from_row {
    ($r:expr) => {{
        let r = $r;
        let kid: String = r.get("kid");
        let state: String = r.get("state");
        let broken = |what: String| StoreError::Database {
            op: "reading signing keys",
            message: format!("signing key {kid}: {what}"),
        };
        let public_jwk = serde_json::from_str(&r.get::<String, _>("public_jwk"))
            .map_err(|e| broken(format!("its public key is not JSON: {e}")))?;
        let state =
            KeyState::parse(&state).ok_or_else(|| broken(format!("unknown state {state:?}")))?;
        Ok::<_, StoreError>(StoredKey {
            public_jwk,
            state,
            alg: r.get("alg"),
            private_der: r.get("private_der"),
            created_at: r.get("created_at"),
            activated_at: r.get("activated_at"),
            retire_after: r.get("retire_after"),
            retired_at: r.get("retired_at"),
            kid,
        })
    }};
}

/// Roles as stored: comma-separated names.
fn roles_text(roles: RoleSet) -> String {
    roles.names().join(",")
}

/// Roles from their stored form (a name this version does not know grants nothing).
fn roles_of(text: String) -> RoleSet {
    RoleSet::from_names(text.split(',').filter(|n| !n.is_empty()))
}

/// A stored tenant id; one that is not an id is damage, reported as such.
fn tenant_of(text: String, op: &'static str) -> Result<TenantId, StoreError> {
    TenantId::parse(&text).map_err(|_| StoreError::Database {
        op,
        message: format!("the database holds tenant id {text:?}, which is not one"),
    })
}

macro_rules! api_key_from_row {
    ($r:expr) => {{
        let r = $r;
        ApiKeyRow {
            id: r.get("id"),
            tenant_id: tenant_of(r.get("tenant_id"), "reading API keys")?,
            name: r.get("name"),
            key_hash: r.get("key_hash"),
            roles: roles_of(r.get("roles")),
            created_at: r.get("created_at"),
            expires_at: r.get("expires_at"),
            revoked_at: r.get("revoked_at"),
            replaced_by: r.get("replaced_by"),
        }
    }};
}

/// Inserts an API key row inside transaction `$tx`.
macro_rules! insert_api_key {
    ($tx:expr, $k:expr) => {{
        let k = $k;
        sqlx::query("INSERT INTO api_keys (id, tenant_id, name, key_hash, roles, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&k.id).bind(k.tenant_id.as_str()).bind(&k.name).bind(&k.key_hash).bind(roles_text(k.roles)).bind(k.created_at).bind(k.expires_at)
            .execute(&mut *$tx).await.map_err(err("storing an API key"))?;
    }};
}

const INSERT_KEY: &str = "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, state, created_at, activated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

impl SqlIdentityStore {
    /// Opens and migrates the database at `url`.
    pub async fn open(url: &str, service: &str) -> Result<SqlIdentityStore, StoreError> {
        let db = Database::open(url, &SQLITE, &POSTGRES).await?;
        // Made once per database: every instance on it shares the outbox and its counters.
        let fresh = format!(
            "{}.{}",
            service,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let producer_id: String = with_db!(&db, p => {
            sqlx::query("INSERT INTO audit_outbox_meta (key, value) VALUES ('producer_id', $1) ON CONFLICT (key) DO NOTHING")
                .bind(&fresh).execute(p).await.map_err(err("naming the audit producer"))?;
            sqlx::query_scalar("SELECT value FROM audit_outbox_meta WHERE key = 'producer_id'")
                .fetch_one(p).await.map_err(err("naming the audit producer"))?
        });
        Ok(SqlIdentityStore {
            db,
            service: service.into(),
            producer_id: producer_id.into(),
        })
    }

    /// The complete outbox event: `draft` as the `seq`th event of this database's producer
    /// for its tenant.
    fn stamp(&self, draft: EventBuilder, seq: i64) -> Result<Event, vigil_core::Error> {
        let source = Source {
            service: self.service.to_string(),
            producer_id: Some(self.producer_id.to_string()),
            producer_seq: Some(seq),
        };
        draft.build(
            source,
            EventId::from_uuid(uuid::Uuid::now_v7()),
            Timestamp::now(),
        )
    }
}

/// Everything the auth service keeps. One implementation per engine family
/// ([`SqlIdentityStore`]: SQLite and Postgres), one contract suite (`tests/identity.rs`).
/// Every method that changes something and takes `events` writes them to the audit outbox in
/// the same transaction.
#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug {
    /// Is the database reachable?
    async fn ping(&self) -> Result<(), StoreError>;

    /// The connection pool's state now (for metrics).
    fn pool_stats(&self) -> crate::PoolStats;

    // ----- signing keys -----
    /// Every key, newest first.
    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Creates a current and a next key when there is no current one (first start). Returns
    /// false when another instance did it first or keys exist.
    async fn bootstrap_keys(
        &self,
        current: &NewKey,
        next: &NewKey,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError>;

    /// Rotation: the next key starts signing, the current one becomes previous (published
    /// until `retire_after`), and `new_next` is published to sign after the following
    /// rotation. Returns the kid that now signs.
    async fn rotate(
        &self,
        new_next: &NewKey,
        now: i64,
        retire_after: i64,
        events: &(dyn for<'s> Fn(&'s str, &'s str) -> Vec<OutboxEvent> + Send + Sync),
    ) -> Result<String, StoreError>;

    /// Retires a previous (or next) key now. False when there is no such key in a state that
    /// can be retired; the current key cannot be (rotate first).
    async fn retire(
        &self,
        kid: &str,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError>;

    // ----- users -----
    /// Creates a user; a taken name is a conflict.
    async fn create_user(&self, u: &UserRow, events: Vec<OutboxEvent>) -> Result<(), StoreError>;

    /// Whether the auth service knows `tenant`: it has a user, a service client or an API key.
    async fn tenant_known(&self, tenant: &TenantId) -> Result<bool, StoreError>;

    /// A user.
    async fn user(&self, tenant: &TenantId, username: &str) -> Result<Option<UserRow>, StoreError>;

    /// A tenant's users: (name, roles, created_at).
    async fn users(&self, tenant: &TenantId) -> Result<Vec<(String, RoleSet, i64)>, StoreError>;

    /// Deletes a user; false when there was none.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &str,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError>;

    // ----- login throttling -----
    /// What the throttle counters say of `a` at `now` (unix milliseconds, like every time
    /// of the throttle tables) ([`crate::throttle`]).
    async fn login_standing(
        &self,
        a: &Attempt,
        now: i64,
        quiet_reset: i64,
    ) -> Result<Standing, StoreError>;

    /// Counts a failed login of `a` on its pair, address and account counters (locking each
    /// past its free attempts), with its audit events, in one transaction.
    async fn login_failed(
        &self,
        a: &Attempt,
        device_known: bool,
        policy: &ThrottlePolicy,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError>;

    /// Records a successful login of `a`: its pair and the account's counter start over, and
    /// its address and device are remembered as sources that have logged in to the account.
    async fn login_succeeded(
        &self,
        a: &Attempt,
        device_known: bool,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError>;

    // ----- service clients -----
    /// Creates a service client.
    async fn create_client(
        &self,
        c: &ClientRow,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError>;

    /// A service client.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError>;

    /// Appends events to the outbox on their own (token issuance, refused attempts).
    async fn record(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError>;

    // ----- API keys -----
    /// Stores a new API key.
    async fn create_api_key(
        &self,
        k: &ApiKeyRow,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError>;

    /// An API key by id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError>;

    /// A tenant's API keys, newest first.
    async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRow>, StoreError>;

    /// Revokes a tenant's key; false when it has no such unrevoked key.
    async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError>;

    /// Replaces key `old` with `new`: the old one keeps working until `old_expires_at`.
    /// False when `old` is not an active key of the tenant.
    async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        old: &str,
        new: &ApiKeyRow,
        old_expires_at: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError>;

    // ----- audit outbox -----
    /// The oldest `limit` outbox entries: (id, tenant, event).
    async fn outbox(&self, limit: i64) -> Result<Vec<(i64, String, Value)>, StoreError>;

    /// Removes delivered outbox entries.
    async fn outbox_delivered(&self, ids: &[i64]) -> Result<(), StoreError>;
}

/// Opens (and migrates) the identity store a URL names, for `service` (the `source.service`
/// of its outbox events).
pub async fn open(url: &str, service: &str) -> Result<Arc<dyn IdentityStore>, StoreError> {
    Ok(Arc::new(SqlIdentityStore::open(url, service).await?))
}

#[async_trait]
impl IdentityStore for SqlIdentityStore {
    fn pool_stats(&self) -> crate::PoolStats {
        self.db.pool_stats()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        with_db!(&self.db, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()).map_err(err("checking the database")))
    }

    // ----- signing keys -----

    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        with_db!(&self.db, p => {
            let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                .fetch_all(p).await.map_err(err("reading signing keys"))?;
            rows.iter().map(|r| key_from_row!(r)).collect()
        })
    }

    async fn bootstrap_keys(
        &self,
        current: &NewKey,
        next: &NewKey,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE state = 'current'")
                .fetch_one(&mut *tx).await.map_err(err("reading signing keys"))?;
            if n > 0 {
                return Ok(false);
            }
            for (k, state, activated) in [(current, "current", Some(now)), (next, "next", None)] {
                let r = sqlx::query(INSERT_KEY)
                    .bind(&k.kid).bind(&k.alg).bind(&k.private_der).bind(k.public_jwk.to_string())
                    .bind(state).bind(now).bind(activated)
                    .execute(&mut *tx).await;
                match r {
                    Ok(_) => {}
                    Err(e) if unique_violation(&e) => return Ok(false),
                    Err(e) => return Err(err("storing a signing key")(e)),
                }
            }
            outbox!(self, tx, events);
            match tx.commit().await {
                Ok(()) => Ok(true),
                Err(e) if unique_violation(&e) => Ok(false),
                Err(e) => Err(err("committing signing keys")(e)),
            }
        })
    }

    async fn rotate(
        &self,
        new_next: &NewKey,
        now: i64,
        retire_after: i64,
        events: &(dyn for<'s> Fn(&'s str, &'s str) -> Vec<OutboxEvent> + Send + Sync),
    ) -> Result<String, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let current: Option<String> = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE state = 'current'")
                .fetch_optional(&mut *tx).await.map_err(err("reading signing keys"))?;
            let next: Option<String> = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE state = 'next'")
                .fetch_optional(&mut *tx).await.map_err(err("reading signing keys"))?;
            let (Some(current), Some(next)) = (current, next) else {
                return Err(conflict("rotating signing keys", "no current and next key to rotate: start the service once first"));
            };
            sqlx::query("UPDATE signing_keys SET state = 'previous', retire_after = $1 WHERE kid = $2 AND state = 'current'")
                .bind(retire_after).bind(&current)
                .execute(&mut *tx).await.map_err(err("rotating signing keys"))?;
            sqlx::query("UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE kid = $2 AND state = 'next'")
                .bind(now).bind(&next)
                .execute(&mut *tx).await.map_err(err("rotating signing keys"))?;
            sqlx::query(INSERT_KEY)
                .bind(&new_next.kid).bind(&new_next.alg).bind(&new_next.private_der).bind(new_next.public_jwk.to_string())
                .bind("next").bind(now).bind(None::<i64>)
                .execute(&mut *tx).await
                .map_err(|e| if unique_violation(&e) { conflict("rotating signing keys", "another rotation ran at the same time; try again") } else { err("storing a signing key")(e) })?;
            outbox!(self, tx, events(&next, &current));
            tx.commit().await.map_err(|e| if unique_violation(&e) { conflict("rotating signing keys", "another rotation ran at the same time; try again") } else { err("committing a rotation")(e) })?;
            Ok(next)
        })
    }

    async fn retire(
        &self,
        kid: &str,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let n = sqlx::query("UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE kid = $2 AND state = 'previous'")
                .bind(now).bind(kid)
                .execute(&mut *tx).await.map_err(err("retiring a signing key"))?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("retiring a signing key"))?;
            Ok(true)
        })
    }

    // ----- users -----

    async fn create_user(&self, u: &UserRow, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            sqlx::query("INSERT INTO users (tenant_id, username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(u.tenant_id.as_str()).bind(&u.username).bind(&u.password_hash).bind(roles_text(u.roles)).bind(u.created_at)
                .execute(&mut *tx).await
                .map_err(|e| if unique_violation(&e) { conflict("creating a user", format!("user {} exists", u.username)) } else { err("creating a user")(e) })?;
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("creating a user"))
        })
    }

    async fn tenant_known(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let n: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM users WHERE tenant_id = $1)
                      + (SELECT COUNT(*) FROM clients WHERE tenant_id = $1)
                      + (SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1)",
            )
            .bind(tenant.as_str())
            .fetch_one(p)
            .await
            .map_err(err("looking up a tenant"))?;
            Ok(n > 0)
        })
    }

    async fn user(&self, tenant: &TenantId, username: &str) -> Result<Option<UserRow>, StoreError> {
        with_db!(&self.db, p => {
            let row = sqlx::query("SELECT * FROM users WHERE tenant_id = $1 AND username = $2")
                .bind(tenant.as_str()).bind(username)
                .fetch_optional(p).await.map_err(err("reading a user"))?;
            row.map(|r| Ok(UserRow {
                tenant_id: tenant_of(r.get("tenant_id"), "reading a user")?,
                username: r.get("username"),
                password_hash: r.get("password_hash"),
                roles: roles_of(r.get("roles")),
                created_at: r.get("created_at"),
            })).transpose()
        })
    }

    async fn users(&self, tenant: &TenantId) -> Result<Vec<(String, RoleSet, i64)>, StoreError> {
        with_db!(&self.db, p => {
            let rows = sqlx::query("SELECT username, roles, created_at FROM users WHERE tenant_id = $1 ORDER BY username")
                .bind(tenant.as_str())
                .fetch_all(p).await.map_err(err("listing users"))?;
            Ok(rows.iter().map(|r| (r.get("username"), roles_of(r.get("roles")), r.get("created_at"))).collect())
        })
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &str,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let n = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND username = $2")
                .bind(tenant.as_str()).bind(username)
                .execute(&mut *tx).await.map_err(err("deleting a user"))?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("deleting a user"))?;
            Ok(true)
        })
    }

    // ----- login throttling -----

    async fn login_standing(
        &self,
        a: &Attempt,
        now: i64,
        quiet_reset: i64,
    ) -> Result<Standing, StoreError> {
        let tenant = a.tenant.as_str();
        let sources = a.sources();
        let known: Vec<String> = with_db!(&self.db, p => {
            let mut known = Vec::new();
            for src in &sources {
                let hit: Option<i64> = sqlx::query_scalar(
                    "SELECT last_success FROM login_known_sources WHERE tenant_id = $1 AND username = $2 AND source = $3",
                )
                .bind(tenant).bind(&a.username).bind(src)
                .fetch_optional(p).await.map_err(err("reading login sources"))?;
                if hit.is_some() {
                    known.push(src.clone());
                }
            }
            Ok::<_, StoreError>(known)
        })?;
        let device_known = known.iter().any(|s| s.starts_with("dev:"));
        let address_known = known.iter().any(|s| s.starts_with("addr:"));
        let counter = |key: String| async move {
            let row: Option<(i64, i64, i64)> = with_db!(&self.db, p => {
                sqlx::query_as("SELECT failures, locked_until, last_failure FROM login_throttle WHERE key = $1")
                    .bind(&key).fetch_optional(p).await.map_err(err("reading login counters"))
            })?;
            Ok::<_, StoreError>(match row {
                Some((f, l, last)) if last >= now - quiet_reset * 1000 => (f, l),
                _ => (0, 0),
            })
        };
        let (_, pair_locked_until) = counter(a.pair_key(device_known)).await?;
        let (_, address_locked_until) = counter(a.address_key()).await?;
        let (account_failures, account_locked_until) = counter(a.account_key()).await?;
        Ok(Standing {
            pair_locked_until,
            address_locked_until,
            account_failures,
            account_locked_until,
            device_known,
            address_known,
        })
    }

    async fn login_failed(
        &self,
        a: &Attempt,
        device_known: bool,
        policy: &ThrottlePolicy,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError> {
        let counters = [
            (a.pair_key(device_known), policy.pair_free),
            (a.address_key(), policy.address_free),
            (a.account_key(), policy.account_ceiling),
        ];
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            for (key, free) in &counters {
                let failures: i64 = sqlx::query_scalar(
                    "INSERT INTO login_throttle (key, failures, locked_until, last_failure) VALUES ($1, 1, 0, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                       failures = CASE WHEN login_throttle.last_failure < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
                       last_failure = $2 \
                     RETURNING failures",
                )
                .bind(key).bind(now).bind(now - policy.quiet_reset * 1000)
                .fetch_one(&mut *tx).await.map_err(err("counting a failed login"))?;
                let delay = policy.delay(failures, *free);
                sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1")
                    .bind(key).bind(if delay > 0 { now + delay * 1000 } else { 0 })
                    .execute(&mut *tx).await.map_err(err("counting a failed login"))?;
            }
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("counting a failed login"))
        })
    }

    async fn login_succeeded(
        &self,
        a: &Attempt,
        device_known: bool,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError> {
        let cleared = [a.pair_key(device_known), a.pair_key(false), a.account_key()];
        let sources = a.sources();
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            for key in &cleared {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(key).execute(&mut *tx).await.map_err(err("recording a login"))?;
            }
            for src in &sources {
                sqlx::query(
                    "INSERT INTO login_known_sources (tenant_id, username, source, last_success) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, username, source) DO UPDATE SET last_success = $4",
                )
                .bind(a.tenant.as_str()).bind(&a.username).bind(src).bind(now)
                .execute(&mut *tx).await.map_err(err("recording a login"))?;
            }
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("recording a login"))
        })
    }

    // ----- service clients -----

    async fn create_client(
        &self,
        c: &ClientRow,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            sqlx::query("INSERT INTO clients (client_id, tenant_id, name, secret_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&c.client_id).bind(c.tenant_id.as_str()).bind(&c.name).bind(&c.secret_hash).bind(roles_text(c.roles)).bind(c.created_at)
                .execute(&mut *tx).await.map_err(err("creating a client"))?;
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("creating a client"))
        })
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        with_db!(&self.db, p => {
            let row = sqlx::query("SELECT * FROM clients WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(p).await.map_err(err("reading a client"))?;
            row.map(|r| Ok(ClientRow {
                client_id: r.get("client_id"),
                tenant_id: tenant_of(r.get("tenant_id"), "reading a client")?,
                name: r.get("name"),
                secret_hash: r.get("secret_hash"),
                roles: roles_of(r.get("roles")),
                created_at: r.get("created_at"),
            })).transpose()
        })
    }

    async fn record(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("writing the audit outbox"))
        })
    }

    // ----- API keys -----

    async fn create_api_key(
        &self,
        k: &ApiKeyRow,
        events: Vec<OutboxEvent>,
    ) -> Result<(), StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            insert_api_key!(tx, k);
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("creating an API key"))
        })
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        with_db!(&self.db, p => {
            let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(p).await.map_err(err("reading an API key"))?;
            row.map(|r| Ok(api_key_from_row!(r))).transpose()
        })
    }

    async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRow>, StoreError> {
        with_db!(&self.db, p => {
            let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id")
                .bind(tenant.as_str())
                .fetch_all(p).await.map_err(err("listing API keys"))?;
            rows.iter().map(|r| Ok(api_key_from_row!(r))).collect()
        })
    }

    async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(now).bind(tenant.as_str()).bind(id)
                .execute(&mut *tx).await.map_err(err("revoking an API key"))?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("revoking an API key"))?;
            Ok(true)
        })
    }

    async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        old: &str,
        new: &ApiKeyRow,
        old_expires_at: i64,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        with_db!(&self.db, p => {
            let mut tx = p.begin_with(self.db.begin_write()).await.map_err(err("starting a transaction"))?;
            let n = sqlx::query("UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END, replaced_by = $2 \
                                 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > $5)")
                .bind(old_expires_at).bind(&new.id).bind(tenant.as_str()).bind(old).bind(new.created_at)
                .execute(&mut *tx).await.map_err(err("rotating an API key"))?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            insert_api_key!(tx, new);
            outbox!(self, tx, events);
            tx.commit().await.map_err(err("rotating an API key"))?;
            Ok(true)
        })
    }

    // ----- audit outbox -----

    async fn outbox(&self, limit: i64) -> Result<Vec<(i64, String, Value)>, StoreError> {
        with_db!(&self.db, p => {
            let rows = sqlx::query("SELECT id, tenant_id, event FROM audit_outbox ORDER BY id LIMIT $1")
                .bind(limit)
                .fetch_all(p).await.map_err(err("reading the audit outbox"))?;
            Ok(rows.iter().map(|r| {
                let event: String = r.get("event");
                (r.get("id"), r.get("tenant_id"), serde_json::from_str(&event).unwrap_or(Value::Null))
            }).collect())
        })
    }

    async fn outbox_delivered(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        with_db!(&self.db, p => {
            sqlx::query(&format!("DELETE FROM audit_outbox WHERE id IN ({list})"))
                .execute(p).await.map_err(err("clearing the audit outbox")).map(|_| ())
        })
    }
}
