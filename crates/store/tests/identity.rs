//! The identity store contract: one suite against the `IdentityStore` trait, run on SQLite
//! and on a fresh Postgres database, as the audit store's contract is.

use serde_json::{json, Value};
use std::sync::Arc;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Outcome, Resource};
use vigil_core::ids::{EventId, TenantId};
use vigil_security::capability::{Role, RoleSet};
use vigil_store::identity::{
    ApiKeyRow, Attempt, ClientRow, IdentityStore, KeyState, NewKey, OutboxEvent, ThrottlePolicy,
    UserRow,
};
use vigil_store::StoreError;

struct Engine {
    store: Arc<dyn IdentityStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    Engine {
        store: vigil_store::identity::open(&url, "vigil-auth")
            .await
            .unwrap(),
        _dir: Some(dir),
    }
}

async fn postgres() -> Engine {
    let url = vigil_store::testing::fresh_postgres_url().await;
    Engine {
        store: vigil_store::identity::open(&url, "vigil-auth")
            .await
            .unwrap(),
        _dir: None,
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn ev(t: &str, action: &str) -> OutboxEvent {
    (
        tenant(t),
        EventBuilder::new(
            action,
            Actor::new(ActorType::System, "vigil-auth"),
            Resource::new("thing", "1"),
            Outcome::Success,
        )
        .event_id(EventId::from_uuid(uuid::Uuid::now_v7())),
    )
}

fn key(kid: &str) -> NewKey {
    NewKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_der: "cHJpdmF0ZQ".into(),
        public_jwk: json!({"kty": "OKP", "kid": kid}),
    }
}

/// (tenant, action, producer_seq) of what is waiting in the outbox, oldest first.
async fn outbox(s: &dyn IdentityStore) -> Vec<(String, String, i64)> {
    s.outbox(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, t, e): (i64, String, Value)| {
            (
                t,
                e["action"].as_str().unwrap().to_owned(),
                e["source"]["producer_seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn signing_keys_live_and_retire_with_their_events_in_the_outbox(e: Engine) {
    let s = &*e.store;
    s.ping().await.unwrap();
    assert!(s.keys().await.unwrap().is_empty());
    assert!(s
        .bootstrap_keys(
            &key("k1"),
            &key("k2"),
            100,
            vec![ev("system", "auth.key.created")]
        )
        .await
        .unwrap());
    // A second instance starting at once finds them made.
    assert!(!s
        .bootstrap_keys(
            &key("k8"),
            &key("k9"),
            100,
            vec![ev("system", "auth.key.created")]
        )
        .await
        .unwrap());
    let states = |keys: Vec<vigil_store::identity::StoredKey>| {
        let mut v: Vec<(String, KeyState)> = keys.into_iter().map(|k| (k.kid, k.state)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        states(s.keys().await.unwrap()),
        [
            ("k1".into(), KeyState::Current),
            ("k2".into(), KeyState::Next)
        ]
    );
    let signing = s
        .rotate(&key("k3"), 200, 500, &|signing, previous| {
            assert_eq!((signing, previous), ("k2", "k1"));
            vec![ev("system", "auth.key.rotated")]
        })
        .await
        .unwrap();
    assert_eq!(signing, "k2");
    let keys = s.keys().await.unwrap();
    let k1 = keys.iter().find(|k| k.kid == "k1").unwrap();
    assert_eq!((k1.state, k1.retire_after), (KeyState::Previous, Some(500)));
    assert_eq!(
        states(keys),
        [
            ("k1".into(), KeyState::Previous),
            ("k2".into(), KeyState::Current),
            ("k3".into(), KeyState::Next)
        ]
    );
    // The key that signs cannot be retired; a previous one can, once.
    assert!(!s.retire("k2", 300, vec![]).await.unwrap());
    assert!(s
        .retire("k1", 300, vec![ev("system", "auth.key.retired")])
        .await
        .unwrap());
    assert!(!s.retire("k1", 301, vec![]).await.unwrap());
    // Debug never shows a private key.
    let dbg = format!("{:?}", s.keys().await.unwrap());
    assert!(!dbg.contains("cHJpdmF0ZQ"), "{dbg}");
    // Every change's event, in order, numbered per tenant from 1.
    assert_eq!(
        outbox(s).await,
        [
            ("system".into(), "auth.key.created".into(), 1),
            ("system".into(), "auth.key.rotated".into(), 2),
            ("system".into(), "auth.key.retired".into(), 3),
        ]
    );
}

async fn users_and_clients_round_trip_typed_and_stay_in_their_tenant(e: Engine) {
    let s = &*e.store;
    let acme = tenant("acme");
    let user = UserRow {
        tenant_id: acme.clone(),
        username: "ana".into(),
        password_hash: "$argon2id$secret-hash".into(),
        roles: RoleSet::of(&[Role::Admin, Role::Support]),
        created_at: 10,
    };
    assert!(!s.tenant_known(&acme).await.unwrap());
    s.create_user(&user, vec![ev("acme", "auth.user.created")])
        .await
        .unwrap();
    assert!(s.tenant_known(&acme).await.unwrap());
    let again = s
        .create_user(&user, vec![ev("acme", "auth.user.created")])
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let got = s.user(&acme, "ana").await.unwrap().unwrap();
    assert_eq!((got.tenant_id, got.roles), (acme.clone(), user.roles));
    assert!(!format!("{:?}", s.user(&acme, "ana").await.unwrap()).contains("secret-hash"));
    assert!(s.user(&tenant("globex"), "ana").await.unwrap().is_none());
    assert_eq!(
        s.users(&acme).await.unwrap(),
        [("ana".to_owned(), user.roles, 10)]
    );
    assert!(!s
        .delete_user(&tenant("globex"), "ana", vec![])
        .await
        .unwrap());
    assert!(s
        .delete_user(&acme, "ana", vec![ev("acme", "auth.user.deleted")])
        .await
        .unwrap());
    assert!(s.user(&acme, "ana").await.unwrap().is_none());

    let client = ClientRow {
        client_id: "vc_1".into(),
        tenant_id: acme.clone(),
        name: "billing".into(),
        secret_hash: "$argon2id$client-hash".into(),
        roles: RoleSet::of(&[Role::Service]),
        created_at: 11,
    };
    s.create_client(&client, vec![ev("acme", "auth.client.created")])
        .await
        .unwrap();
    let got = s.client("vc_1").await.unwrap().unwrap();
    assert_eq!(
        (got.tenant_id, got.roles, got.name),
        (acme, client.roles, client.name)
    );
    assert!(s.client("vc_2").await.unwrap().is_none());
    // The failed duplicate wrote no event: the outbox holds exactly what changed.
    let actions: Vec<String> = outbox(s).await.into_iter().map(|o| o.1).collect();
    assert_eq!(
        actions,
        [
            "auth.user.created",
            "auth.user.deleted",
            "auth.client.created"
        ]
    );
}

fn api_key(id: &str, t: &str) -> ApiKeyRow {
    ApiKeyRow {
        id: id.into(),
        tenant_id: tenant(t),
        name: "ci".into(),
        key_hash: format!("hash-of-{id}"),
        roles: RoleSet::of(&[Role::Service]),
        created_at: 100,
        expires_at: None,
        revoked_at: None,
        replaced_by: None,
    }
}

async fn api_keys_are_revoked_and_rotated_only_in_their_tenant(e: Engine) {
    let s = &*e.store;
    let acme = tenant("acme");
    s.create_api_key(&api_key("ak1", "acme"), vec![])
        .await
        .unwrap();
    s.create_api_key(&api_key("ak2", "acme"), vec![])
        .await
        .unwrap();
    s.create_api_key(&api_key("gk1", "globex"), vec![])
        .await
        .unwrap();
    let listed: Vec<String> = s
        .api_keys(&acme)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(!listed.contains(&"gk1".to_owned()));
    let k = s.api_key("ak1").await.unwrap().unwrap();
    assert!(k.active(150));
    assert_eq!(k.roles, RoleSet::of(&[Role::Service]));
    // Another tenant's key is not this tenant's to revoke.
    assert!(!s.revoke_api_key(&acme, "gk1", 150, vec![]).await.unwrap());
    assert!(s
        .revoke_api_key(&acme, "ak1", 150, vec![ev("acme", "auth.api_key.revoked")])
        .await
        .unwrap());
    assert!(!s.revoke_api_key(&acme, "ak1", 151, vec![]).await.unwrap());
    assert!(!s.api_key("ak1").await.unwrap().unwrap().active(152));
    // Rotation: the new key exists, the old one works until the overlap ends.
    assert!(s
        .rotate_api_key(&acme, "ak2", &api_key("ak3", "acme"), 400, vec![])
        .await
        .unwrap());
    let old = s.api_key("ak2").await.unwrap().unwrap();
    assert_eq!(
        (old.expires_at, old.replaced_by.as_deref()),
        (Some(400), Some("ak3"))
    );
    assert!(old.active(399) && !old.active(400));
    assert!(s.api_key("ak3").await.unwrap().unwrap().active(1000));
    // A revoked or already rotated key is not rotated again.
    assert!(!s
        .rotate_api_key(&acme, "ak2", &api_key("ak4", "acme"), 500, vec![])
        .await
        .unwrap());
    assert!(!s
        .rotate_api_key(&acme, "ak1", &api_key("ak5", "acme"), 500, vec![])
        .await
        .unwrap());
    assert!(s.api_key("ak4").await.unwrap().is_none());
}

async fn the_throttle_counts_locks_and_forgets_on_success(e: Engine) {
    let s = &*e.store;
    let p = ThrottlePolicy::default();
    let a = Attempt {
        tenant: tenant("acme"),
        username: "ana".into(),
        address: "203.0.113.9".into(),
        device: None,
    };
    let now = 1_000_000;
    for i in 0..p.pair_free {
        let st = s.login_standing(&a, now + i, p.quiet_reset).await.unwrap();
        assert_eq!(st.pair_locked_until, 0, "attempt {i}");
        s.login_failed(&a, false, &p, now + i, vec![ev("acme", "auth.login")])
            .await
            .unwrap();
    }
    let st = s.login_standing(&a, now + 10, p.quiet_reset).await.unwrap();
    assert!(st.pair_locked_until > now + 10, "{st:?}");
    assert_eq!(st.account_failures, p.pair_free);
    assert!(!st.address_known);
    s.login_succeeded(&a, false, now + 5_000, vec![])
        .await
        .unwrap();
    let st = s
        .login_standing(&a, now + 5_001, p.quiet_reset)
        .await
        .unwrap();
    assert_eq!(
        (st.pair_locked_until, st.account_failures),
        (0, 0),
        "{st:?}"
    );
    assert!(st.address_known, "a success remembers the address");
    // Five failures are far below what an address may fail over all accounts.
    assert_eq!(st.address_locked_until, 0);
}

async fn the_outbox_keeps_events_until_delivered(e: Engine) {
    let s = &*e.store;
    s.record(vec![
        ev("acme", "a.one"),
        ev("globex", "a.two"),
        ev("acme", "a.three"),
    ])
    .await
    .unwrap();
    let waiting = s.outbox(10).await.unwrap();
    let seqs: Vec<(String, i64)> = waiting
        .iter()
        .map(|(_, t, e)| (t.clone(), e["source"]["producer_seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        seqs,
        [("acme".into(), 1), ("globex".into(), 1), ("acme".into(), 2)]
    );
    let producer = waiting[0].2["source"]["producer_id"].as_str().unwrap();
    assert!(producer.starts_with("vigil-auth."), "{producer}");
    assert_eq!(waiting[0].2["source"]["service"], "vigil-auth");
    s.outbox_delivered(&[waiting[0].0, waiting[2].0])
        .await
        .unwrap();
    let rest = s.outbox(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, "globex");
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod on_postgres { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

contract!(
    signing_keys_live_and_retire_with_their_events_in_the_outbox,
    users_and_clients_round_trip_typed_and_stay_in_their_tenant,
    api_keys_are_revoked_and_rotated_only_in_their_tenant,
    the_throttle_counts_locks_and_forgets_on_success,
    the_outbox_keeps_events_until_delivered,
);
