//! The store contract: one suite, written once against the `Store` trait and run on every
//! engine (SQLite in a temp directory, Postgres in a fresh database on a real server).

use serde_json::json;
use std::sync::Arc;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::{Checkpoint, NoteSigner};
use vigil_core::event::{EventInput, Severity};
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::record::Sealer;
use vigil_core::time::Timestamp;
use vigil_store::{ActionFilter, NewRecord, PublicKey, Query, Store, StoreError, StoredCheckpoint};

struct Engine {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let store = vigil_store::open(&vigil_store::testing::sqlite_url(dir.path()))
        .await
        .unwrap();
    Engine {
        store,
        _dir: Some(dir),
    }
}

async fn postgres() -> Engine {
    let url = vigil_store::testing::fresh_postgres_url().await;
    Engine {
        store: vigil_store::open(&url).await.unwrap(),
        _dir: None,
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

/// Seals `n` events for `t` after `head`; event `i` has actor `u-{i%3}`, action
/// `payment.void`/`user.login` alternating, and severity rising with `i`.
fn seal(t: &TenantId, head: &mut ChainHead, from: u64, n: u64) -> Vec<NewRecord> {
    let actions = ["payment.void", "user.login", "payment.refund"];
    (from..from + n)
        .map(|i| {
            let e = EventInput::new(json!({
                "event_id": uuid::Uuid::from_u128((t.as_str().bytes().fold(0u128, |a, b| a * 257 + b as u128) << 64) + i as u128 + 1).to_string(),
                "occurred_at": format!("2026-11-22T10:00:{:02}Z", i % 60),
                "actor": {"type": "user", "id": format!("u-{}", i % 3)},
                "action": actions[(i % 3) as usize],
                "resource": {"type": "payment", "id": format!("p-{i}")},
                "outcome": if i % 2 == 0 { "success" } else { "denied" },
                "severity": Severity::ALL[(i % 6) as usize].as_str(),
                "source": {"service": "payments", "producer_id": "p1", "producer_seq": i},
                "trace_id": format!("{:032x}", i + 1),
                "payload": {"amount": i, "note": "x"},
            }))
            .validate(|| unreachable!())
            .unwrap();
            let r = Sealer::new(t).seal(&e, head.seq + 1, Timestamp::parse("2026-11-22T11:00:00Z").unwrap(), &head.hash, &mut rand::thread_rng());
            *head = head.advance(&r);
            NewRecord { content_hash: e.content_hash(), record: r }
        })
        .collect()
}

async fn fill(s: &dyn Store, t: &TenantId, n: u64) -> Vec<NewRecord> {
    let mut head = s.head(t).await.unwrap();
    let from = head.seq as u64;
    let recs = seal(t, &mut head, from, n);
    s.append(t, &recs, &[("p1".into(), n as i64)])
        .await
        .unwrap();
    recs
}

async fn appended_records_read_back_unchanged_and_move_the_head(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    assert_eq!(s.head(&t).await.unwrap(), ChainHead::genesis());
    let recs = fill(s, &t, 5).await;
    let head = s.head(&t).await.unwrap();
    assert_eq!(head.seq, 5);
    assert_eq!(head.hash.to_hex(), recs[4].record.chain_hash);
    let got = s.get(&t, &recs[2].record.event_id).await.unwrap().unwrap();
    assert_eq!(got, recs[2].record);
    assert_eq!(
        s.scan(&tenant("acme"), 0, 100).await.unwrap(),
        recs.iter().map(|r| r.record.clone()).collect::<Vec<_>>()
    );
    assert_eq!(s.scan(&tenant("acme"), 3, 1).await.unwrap()[0].seq, 4);
    assert_eq!(s.tenants().await.unwrap(), vec![tenant("acme")]);
}

async fn a_taken_seq_is_a_conflict_and_nothing_of_the_batch_is_written(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    fill(s, &t, 3).await;
    // A second writer that sealed on a stale head (genesis) collides on seq 1..
    let mut stale = ChainHead::genesis();
    let mut forked = seal(&t, &mut stale, 100, 4);
    forked.rotate_left(3); // the colliding record last, so earlier rows were already inserted
    let err = s
        .append(&t, &forked, &[("p1".into(), 999)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(s.head(&t).await.unwrap().seq, 3);
    assert_eq!(s.scan(&tenant("acme"), 0, 100).await.unwrap().len(), 3);
    assert_eq!(s.producer_seqs(&t, &["p1".into()]).await.unwrap()["p1"], 3);
}

async fn a_taken_event_id_is_a_conflict(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    let recs = fill(s, &t, 2).await;
    let mut head = s.head(&t).await.unwrap();
    let mut again = seal(&t, &mut head, 0, 1); // same event id as seq 1, at seq 3
    again[0].record.event_id = recs[0].record.event_id.clone();
    let err = s.append(&t, &again, &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

async fn existing_event_ids_come_back_with_seq_and_content_hash(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    let recs = fill(s, &t, 3).await;
    let ids = vec![
        recs[1].record.event_id.clone(),
        "01936a6e-0000-7000-8000-000000000000".into(),
    ];
    let found = s.existing(&t, &ids).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&ids[0]].seq, 2);
    assert_eq!(found[&ids[0]].content_hash, recs[1].content_hash);
    assert!(s.existing(&tenant("other"), &ids).await.unwrap().is_empty());
}

async fn every_filter_narrows_and_pages_come_newest_first(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    fill(s, &t, 30).await;
    fill(s, &tenant("other"), 30).await;
    let q = |f: fn(&mut Query)| {
        let mut q = Query {
            limit: 100,
            ..Query::default()
        };
        f(&mut q);
        q
    };
    let seqs = |rs: Vec<vigil_core::record::Record>| rs.iter().map(|r| r.seq).collect::<Vec<_>>();
    let all = seqs(s.query(&t, &q(|_| {})).await.unwrap());
    assert_eq!(all, (1..=30).rev().collect::<Vec<_>>());
    let check = |rs: &[vigil_core::record::Record],
                 pred: &dyn Fn(&vigil_core::record::Record) -> bool,
                 want: usize| {
        assert_eq!(rs.len(), want);
        assert!(rs.iter().all(|r| pred(r) && r.tenant_id == "acme"));
    };
    check(
        &s.query(&t, &q(|q| q.actor_id = Some("u-1".into())))
            .await
            .unwrap(),
        &|r| r.actor.id == "u-1",
        10,
    );
    check(
        &s.query(
            &t,
            &q(|q| q.action = Some(ActionFilter::Exact("payment.void".into()))),
        )
        .await
        .unwrap(),
        &|r| r.action == "payment.void",
        10,
    );
    check(
        &s.query(
            &t,
            &q(|q| q.action = Some(ActionFilter::Prefix("payment".into()))),
        )
        .await
        .unwrap(),
        &|r| r.action.starts_with("payment."),
        20,
    );
    check(
        &s.query(
            &t,
            &q(|q| q.action = Some(ActionFilter::Prefix("pay".into()))),
        )
        .await
        .unwrap(),
        &|_| true,
        0,
    );
    check(
        &s.query(&t, &q(|q| q.resource_type = Some("payment".into())))
            .await
            .unwrap(),
        &|_| true,
        30,
    );
    check(
        &s.query(&t, &q(|q| q.resource_id = Some("p-7".into())))
            .await
            .unwrap(),
        &|r| r.resource.id == "p-7",
        1,
    );
    check(
        &s.query(&t, &q(|q| q.outcome = Some("denied".into())))
            .await
            .unwrap(),
        &|r| r.outcome == "denied",
        15,
    );
    check(
        &s.query(&t, &q(|q| q.min_severity = Some(Severity::Critical)))
            .await
            .unwrap(),
        &|r| r.severity == "critical" || r.severity == "security",
        10,
    );
    check(
        &s.query(&t, &q(|q| q.trace_id = Some(format!("{:032x}", 5))))
            .await
            .unwrap(),
        &|r| r.seq == 5,
        1,
    );
    let since = Timestamp::parse("2026-11-22T10:00:10Z").unwrap();
    let until = Timestamp::parse("2026-11-22T10:00:20Z").unwrap();
    let mut window = Query {
        limit: 100,
        since: Some(since),
        until: Some(until),
        ..Query::default()
    };
    check(
        &s.query(&t, &window).await.unwrap(),
        &|r| {
            r.occurred_at.as_str() >= "2026-11-22T10:00:10"
                && r.occurred_at.as_str() < "2026-11-22T10:00:20"
        },
        10,
    );
    window.before_seq = Some(15);
    window.limit = 3;
    assert_eq!(seqs(s.query(&t, &window).await.unwrap()), vec![14, 13, 12]);
}

async fn checkpoints_and_keys_round_trip(e: Engine) {
    let (s, t) = (&*e.store, tenant("acme"));
    assert!(s.latest_checkpoint(&t).await.unwrap().is_none());
    let signer = NoteSigner::new("vigil-audit", &[3; 32]).unwrap();
    for size in [10, 20] {
        let cp = Checkpoint {
            root: None,
            tenant: "acme".into(),
            size,
            chain_hash: Hash32([size as u8; 32]),
            time: "2026-11-22T10:00:00.000000Z".into(),
        };
        let stored = StoredCheckpoint {
            note: signer.sign(&cp),
            checkpoint: cp,
            key_name: "vigil-audit".into(),
        };
        s.put_checkpoint(&t, &stored).await.unwrap();
        s.put_checkpoint(&t, &stored).await.unwrap();
    }
    let latest = s.latest_checkpoint(&t).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.size, 20);
    assert_eq!(
        signer.verifier().open(&latest.note).unwrap(),
        latest.checkpoint
    );
    assert_eq!(s.checkpoints(&tenant("acme")).await.unwrap().len(), 2);
    assert!(s.checkpoints(&tenant("other")).await.unwrap().is_empty());
    let v = signer.verifier();
    let key = PublicKey {
        key_id: v.key_id_hex(),
        name: v.name().into(),
        verifier_key: v.to_vkey(),
        created_at: "2026-11-22T10:00:00.000000Z".into(),
    };
    s.put_public_key(&key).await.unwrap();
    s.put_public_key(&key).await.unwrap();
    assert_eq!(s.public_keys().await.unwrap(), vec![key]);
}

async fn one_tenant_never_sees_another(e: Engine) {
    let s = &*e.store;
    let a = fill(s, &tenant("a"), 3).await;
    fill(s, &tenant("b"), 3).await;
    assert!(s
        .get(&tenant("b"), &a[0].record.event_id)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .query(
            &tenant("b"),
            &Query {
                limit: 10,
                ..Query::default()
            }
        )
        .await
        .unwrap()
        .iter()
        .all(|r| r.tenant_id == "b"));
    assert_eq!(s.head(&tenant("c")).await.unwrap(), ChainHead::genesis());
}

async fn redaction_policies_are_kept_per_tenant(e: Engine) {
    use vigil_core::redaction::Policy;
    let s = &e.store;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let at = Timestamp::parse("2026-11-30T10:00:00Z").unwrap();
    assert_eq!(s.redaction_policy(&acme).await.unwrap(), None);
    let p = Policy::from_json(
        &json!({"mode": "enforce", "rules": [{"path": "payload.card.number", "action": "mask"}]})
            .to_string(),
    )
    .unwrap();
    s.set_redaction_policy(&acme, Some(&p), at).await.unwrap();
    assert_eq!(s.redaction_policy(&acme).await.unwrap(), Some(p.clone()));
    assert_eq!(s.redaction_policy(&globex).await.unwrap(), None);
    // Set again: replaced, not added.
    let log = Policy::from_json(&json!({"mode": "log", "rules": []}).to_string()).unwrap();
    s.set_redaction_policy(&acme, Some(&log), at).await.unwrap();
    assert_eq!(s.redaction_policy(&acme).await.unwrap(), Some(log));
    s.set_redaction_policy(&acme, None, at).await.unwrap();
    assert_eq!(s.redaction_policy(&acme).await.unwrap(), None);
    // Removing what is not there is not an error.
    s.set_redaction_policy(&globex, None, at).await.unwrap();
}

async fn a_purge_removes_values_and_keeps_what_the_chain_needs(e: Engine) {
    let s = &e.store;
    let t = tenant("acme");
    let recs = fill(&**s, &t, 5).await;
    // Every record here was received at 11:00:00.
    let at = |ts: &str| Timestamp::parse(ts).unwrap();
    assert_eq!(
        s.last_seq_received_before(&t, at("2026-11-22T11:00:01Z"), "none")
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        s.last_seq_received_before(&t, at("2026-11-22T11:00:00Z"), "none")
            .await
            .unwrap(),
        0
    );
    // Seq 2 is a user.login: kept, as a manifest would be.
    // A purge never ends on a record of the kept action (seq 5 is a user.login).
    assert_eq!(
        s.last_seq_received_before(&t, at("2026-11-22T11:00:01Z"), "user.login")
            .await
            .unwrap(),
        4
    );
    let purged = s.purge_payloads(&t, 1, 3, "user.login").await.unwrap();
    assert_eq!(purged.records, 2);
    // {"amount":N,"note":"x"} and two salts of 32 hex digits each, per record.
    assert!(purged.bytes > 2 * 70, "{purged:?}");
    // Again: nothing left to purge there.
    assert_eq!(
        s.purge_payloads(&t, 1, 3, "user.login").await.unwrap(),
        vigil_store::Purged::default()
    );
    let all = s.scan(&t, 0, 100).await.unwrap();
    for (r, orig) in all.iter().zip(&recs) {
        assert_eq!(r.leaf_hash, orig.record.leaf_hash);
        assert_eq!(r.payload_commitments, orig.record.payload_commitments);
        if r.seq <= 3 && r.action != "user.login" {
            assert!(r.payload.is_empty() && r.payload_salts.is_empty(), "{r:?}");
        } else {
            assert_eq!(r.payload, orig.record.payload);
        }
    }
    // Another tenant's records are not touched.
    assert_eq!(
        s.purge_payloads(&tenant("other"), 1, 3, "none.kept")
            .await
            .unwrap()
            .records,
        0
    );
}

async fn retention_periods_are_kept_per_tenant(e: Engine) {
    let s = &e.store;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let at = Timestamp::parse("2026-11-30T00:00:00Z").unwrap();
    assert_eq!(s.retention_days(&acme).await.unwrap(), None);
    s.set_retention_days(&acme, Some(7), at).await.unwrap();
    s.set_retention_days(&acme, Some(90), at).await.unwrap();
    assert_eq!(s.retention_days(&acme).await.unwrap(), Some(90));
    assert_eq!(s.retention_days(&globex).await.unwrap(), None);
    s.set_retention_days(&acme, None, at).await.unwrap();
    assert_eq!(s.retention_days(&acme).await.unwrap(), None);
    s.set_retention_days(&globex, None, at).await.unwrap();
}

async fn sealed_members_and_subject_keys_round_trip(e: Engine) {
    let s = &e.store;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let at = Timestamp::parse("2026-11-30T00:00:00Z").unwrap();
    let mut head = s.head(&acme).await.unwrap();
    let mut recs = seal(&acme, &mut head, 0, 3);
    // Records 1 and 3 are subject "aa"'s, with their note sealed.
    for i in [0, 2] {
        let r = &mut recs[i].record;
        let (v, salt) = (
            r.payload.remove("note").unwrap(),
            r.payload_salts.remove("note").unwrap(),
        );
        r.sealed.insert("note".into(), format!("v1.{v}{salt}"));
        r.subject_ref = Some("aa".into());
    }
    s.append(&acme, &recs, &[]).await.unwrap();
    let back = s.scan(&acme, 0, 10).await.unwrap();
    for (r, orig) in back.iter().zip(&recs) {
        assert_eq!(r.sealed, orig.record.sealed);
        assert_eq!(r.subject_ref, orig.record.subject_ref);
        assert_eq!(r.payload, orig.record.payload);
    }
    let q = Query {
        subject_ref: Some("aa".into()),
        limit: 10,
        ..Query::default()
    };
    let mine: Vec<i64> = s
        .query(&acme, &q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(mine, vec![3, 1]);
    assert!(s.query(&globex, &q).await.unwrap().is_empty());
    // Keys: the first candidate wins, later ones get the stored key.
    let first = s
        .ensure_subject_keys(&acme, &[("aa".into(), vec![1; 72])], at)
        .await
        .unwrap();
    assert_eq!(first["aa"], vec![1; 72]);
    let again = s
        .ensure_subject_keys(
            &acme,
            &[("aa".into(), vec![2; 72]), ("bb".into(), vec![3; 72])],
            at,
        )
        .await
        .unwrap();
    assert_eq!(
        (again["aa"].clone(), again["bb"].clone()),
        (vec![1; 72], vec![3; 72])
    );
    assert!(s
        .subject_keys(&globex, &["aa".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(s.destroy_subject_key(&acme, "aa").await.unwrap());
    assert!(!s.destroy_subject_key(&acme, "aa").await.unwrap());
    let left = s
        .subject_keys(&acme, &["aa".into(), "bb".into()])
        .await
        .unwrap();
    assert_eq!(left.keys().collect::<Vec<_>>(), vec!["bb"]);
    // A purge takes sealed members too.
    assert_eq!(
        s.purge_payloads(&acme, 1, 3, "none").await.unwrap().records,
        3
    );
    assert!(s
        .scan(&acme, 0, 10)
        .await
        .unwrap()
        .iter()
        .all(|r| r.sealed.is_empty() && r.payload.is_empty()));
}

async fn reclaiming_space_after_a_purge_shrinks_the_database(e: Engine) {
    let s = &e.store;
    let t = tenant("acme");
    // Records with big payloads, purged: the space comes back.
    let mut head = s.head(&t).await.unwrap();
    let mut recs = seal(&t, &mut head, 0, 0);
    for i in 0..400u64 {
        let e = EventInput::new(json!({
            "occurred_at": "2026-11-22T10:00:00Z",
            "actor": {"type": "user", "id": "u"},
            "action": "blob.put",
            "resource": {"type": "blob", "id": format!("b-{i}")},
            "outcome": "success",
            "source": {"service": "blobs"},
            // Incompressible, so Postgres keeps it out of line (TOAST), as large payloads are.
            "payload": {"text": (0..250).map(|_| format!("{:032x}", rand::random::<u128>())).collect::<String>(), "n": i},
        }))
        .validate(|| vigil_core::ids::EventId::from_uuid(uuid::Uuid::now_v7()))
        .unwrap();
        let r = Sealer::new(&t).seal(
            &e,
            head.seq + 1,
            Timestamp::parse("2026-11-22T11:00:00Z").unwrap(),
            &head.hash,
            &mut rand::thread_rng(),
        );
        head = head.advance(&r);
        recs.push(NewRecord {
            content_hash: e.content_hash(),
            record: r,
        });
    }
    s.append(&t, &recs, &[]).await.unwrap();
    let purged = s.purge_payloads(&t, 1, 400, "none").await.unwrap();
    assert!(purged.bytes > 400 * 8_000, "{purged:?}");
    let space = s.reclaim_space(false).await.unwrap();
    // SQLite gives the free pages back; Postgres truncates the emptied out-of-line storage.
    assert!(space.freed() > 1_000_000, "{space:?}");
    // The records still read, hashes intact.
    let back = s.scan(&t, 0, 1000).await.unwrap();
    assert_eq!(back.len(), 400);
    assert_eq!(back[399].chain_hash, recs[399].record.chain_hash);
    // A full rewrite on top: never larger, records intact.
    let full = s.reclaim_space(true).await.unwrap();
    assert!(full.after <= full.before + 65_536, "{full:?}");
    assert_eq!(s.scan(&t, 0, 1000).await.unwrap().len(), 400);
}

fn subscription(t: &str, id: &str, cursor: i64) -> vigil_store::WebhookSubscription {
    vigil_store::WebhookSubscription {
        id: id.into(),
        tenant_id: t.into(),
        url: "http://127.0.0.1:9/hook".into(),
        kinds: vec!["events".into(), "alerts".into()],
        filter: "{}".into(),
        secrets: "[]".into(),
        cursor,
        created_at: "2026-11-30T10:00:00Z".into(),
    }
}

fn delivery(n: u32) -> vigil_store::NewDelivery {
    vigil_store::NewDelivery {
        id: format!("dlv_{n}"),
        message_id: format!("msg_{n}"),
        event_type: "audit.event".into(),
        body: format!("{{\"n\":{n}}}"),
    }
}

async fn webhook_deliveries_queue_retry_and_dead_letter_per_tenant(e: Engine) {
    use vigil_store::Attempt;
    let s = &*e.store;
    let (acme, other) = (tenant("acme"), tenant("other"));
    s.create_webhook(&subscription("acme", "wh_a", 0))
        .await
        .unwrap();
    s.create_webhook(&subscription("other", "wh_o", 0))
        .await
        .unwrap();
    assert_eq!(
        s.webhooks(Some(&acme)).await.unwrap(),
        vec![subscription("acme", "wh_a", 0)]
    );
    assert_eq!(s.webhooks(None).await.unwrap().len(), 2);
    assert!(s.set_webhook_secrets(&acme, "wh_a", "[1]").await.unwrap());
    assert!(
        !s.set_webhook_secrets(&other, "wh_a", "[2]").await.unwrap(),
        "another tenant's"
    );

    // Enqueueing moves the cursor with the deliveries; a message already queued is not
    // queued twice; the cursor never goes back.
    let at = Timestamp::parse("2026-11-30T10:00:00Z").unwrap();
    let now = at.micros() / 1000;
    s.enqueue_deliveries(&acme, "wh_a", &[delivery(1), delivery(2)], Some(7), at)
        .await
        .unwrap();
    let mut again = delivery(2);
    again.id = "dlv_2b".into();
    s.enqueue_deliveries(&acme, "wh_a", &[again], Some(5), at)
        .await
        .unwrap();
    let sub = s.webhooks(Some(&acme)).await.unwrap().remove(0);
    assert_eq!((sub.cursor, sub.secrets.as_str()), (7, "[1]"));
    let due = s.due_deliveries(now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["dlv_1", "dlv_2"]
    );
    assert!(
        s.due_deliveries(now - 1, 10).await.unwrap().is_empty(),
        "not due yet"
    );

    // Delivered, retried later, dead.
    s.record_attempt("dlv_1", &Attempt::Delivered { status: 204 }, at)
        .await
        .unwrap();
    s.record_attempt(
        "dlv_2",
        &Attempt::Retry {
            next_at: now + 1000,
            status: Some(503),
            error: "busy".into(),
        },
        at,
    )
    .await
    .unwrap();
    assert!(s.due_deliveries(now, 10).await.unwrap().is_empty());
    let later = s.due_deliveries(now + 1000, 10).await.unwrap();
    assert_eq!((later[0].attempts, later[0].last_status), (1, Some(503)));
    s.record_attempt(
        "dlv_2",
        &Attempt::Dead {
            status: None,
            error: "refused".into(),
        },
        at,
    )
    .await
    .unwrap();
    let dead = s.deliveries(&acme, "wh_a", Some("dead"), 10).await.unwrap();
    assert_eq!(
        (dead.len(), dead[0].attempts, dead[0].last_error.as_deref()),
        (1, 2, Some("refused"))
    );
    assert_eq!(
        s.deliveries(&acme, "wh_a", Some("delivered"), 10)
            .await
            .unwrap()[0]
            .last_status,
        Some(204)
    );
    assert_eq!(
        s.deliveries(&acme, "wh_a", None, 10).await.unwrap().len(),
        2
    );
    assert!(
        s.deliveries(&other, "wh_a", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "another tenant's log"
    );

    // From the dead-letter queue back to the queue; a delivered one stays delivered.
    assert!(!s
        .retry_delivery(&other, "wh_a", "dlv_2", now)
        .await
        .unwrap());
    assert!(!s.retry_delivery(&acme, "wh_a", "dlv_1", now).await.unwrap());
    assert!(s.retry_delivery(&acme, "wh_a", "dlv_2", now).await.unwrap());
    let due = s.due_deliveries(now, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));

    // Deleting the subscription takes its log with it.
    assert!(!s.delete_webhook(&other, "wh_a").await.unwrap());
    assert!(s.delete_webhook(&acme, "wh_a").await.unwrap());
    assert!(s.webhooks(Some(&acme)).await.unwrap().is_empty());
    assert!(s.due_deliveries(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(s.webhooks(None).await.unwrap().len(), 1);
}

async fn leaf_hashes_and_merkle_nodes_round_trip_per_tenant(e: Engine) {
    let (s, a, b) = (&*e.store, tenant("acme"), tenant("globex"));
    let recs = fill(s, &a, 5).await;
    let leaves = s.leaf_hashes(&a, 2, 4).await.unwrap();
    let want: Vec<Hash32> = recs[1..4]
        .iter()
        .map(|r| Hash32::from_hex(&r.record.leaf_hash).unwrap())
        .collect();
    assert_eq!(leaves, want);
    assert_eq!(s.leaf_hashes(&a, 5, 99).await.unwrap().len(), 1);
    assert!(s.leaf_hashes(&b, 1, 5).await.unwrap().is_empty());
    let h = |i: u8| Hash32([i; 32]);
    s.put_merkle_nodes(
        &a,
        &[(8, 0, h(1)), (8, 1, h(2)), (8, 3, h(4)), (16, 0, h(9))],
    )
    .await
    .unwrap();
    // In order, up to the first gap; another tenant sees none; a node once stored is kept.
    assert_eq!(
        s.merkle_nodes(&a, 8, 0, 10).await.unwrap(),
        vec![h(1), h(2)]
    );
    assert_eq!(s.merkle_nodes(&a, 8, 3, 4).await.unwrap(), vec![h(4)]);
    assert_eq!(s.merkle_nodes(&a, 16, 0, 1).await.unwrap(), vec![h(9)]);
    assert!(s.merkle_nodes(&b, 8, 0, 10).await.unwrap().is_empty());
    s.put_merkle_nodes(&a, &[(8, 0, h(7))]).await.unwrap();
    assert_eq!(s.merkle_nodes(&a, 8, 0, 1).await.unwrap(), vec![h(1)]);
}

/// Tiles as blobs: a stored tile serves any request no wider than it, the wider of two writes
/// is kept whichever comes first, and tenants and levels are apart.
async fn merkle_tiles_keep_the_widest_and_serve_narrower_requests(e: Engine) {
    let (s, a, b) = (&*e.store, tenant("acme"), tenant("globex"));
    let hs = |n: u8| (0..n).map(|i| Hash32([i; 32])).collect::<Vec<_>>();
    let tile = |t: &TenantId, level: u32, index: u64, width: u64| {
        let t = t.clone();
        async move {
            s.merkle_tiles(&t, &[(level, index, width)])
                .await
                .unwrap()
                .remove(0)
        }
    };
    assert_eq!(tile(&a, 0, 3, 1).await, None);
    s.put_merkle_tiles(&a, &[(0, 3, hs(40)), (1, 0, hs(2))])
        .await
        .unwrap();
    assert_eq!(tile(&a, 0, 3, 40).await, Some(hs(40)));
    assert_eq!(tile(&a, 0, 3, 7).await, Some(hs(7)));
    assert_eq!(tile(&a, 0, 3, 41).await, None);
    assert_eq!(tile(&a, 1, 0, 2).await, Some(hs(2)));
    assert_eq!(tile(&a, 1, 3, 2).await, None);
    assert_eq!(tile(&b, 0, 3, 1).await, None);
    // Wider replaces narrower; narrower never replaces wider.
    s.put_merkle_tiles(&a, &[(0, 3, hs(255))]).await.unwrap();
    s.put_merkle_tiles(&a, &[(0, 3, hs(12))]).await.unwrap();
    assert_eq!(tile(&a, 0, 3, 255).await, Some(hs(255)));
    s.put_merkle_tiles(&a, &[]).await.unwrap();
    // Several at once, in the order asked, missing ones as None.
    assert_eq!(
        s.merkle_tiles(&a, &[(1, 0, 1), (5, 5, 1), (0, 3, 3)])
            .await
            .unwrap(),
        vec![Some(hs(1)), None, Some(hs(3))]
    );
    assert!(s.merkle_tiles(&a, &[]).await.unwrap().is_empty());
}

/// Seals one event per `(occurred_at, action)` after `head`.
fn seal_at(t: &TenantId, head: &mut ChainHead, events: &[(Timestamp, String)]) -> Vec<NewRecord> {
    events
        .iter()
        .map(|(at, action)| {
            let i = head.seq + 1;
            let e = EventInput::new(json!({
                "event_id": uuid::Uuid::from_u128(0x5eed_0000_0000_0000 + i as u128).to_string(),
                "occurred_at": at.to_rfc3339(),
                "actor": {"type": "user", "id": format!("u-{}", i % 4)},
                "action": action,
                "resource": {"type": "payment", "id": format!("p-{i}")},
                "outcome": if i % 3 == 0 { "denied" } else { "success" },
                "severity": "info",
                "source": {"service": "payments"},
                "payload": {},
            }))
            .validate(|| unreachable!())
            .unwrap();
            let r = Sealer::new(t).seal(&e, i, *at, &head.hash, &mut rand::thread_rng());
            *head = head.advance(&r);
            NewRecord {
                content_hash: e.content_hash(),
                record: r,
            }
        })
        .collect()
}

/// Time windows and action prefixes are planned (the time index bounds a window's seqs; a
/// prefix becomes its actions): whatever the plan, a page is exactly the newest matches — for
/// records appended in mixed batches, mostly in time order but with late and backfilled ones,
/// over minutes, hours and days, paged by cursor.
async fn planned_filters_return_exactly_the_newest_matches(e: Engine) {
    use rand::{Rng, SeedableRng};
    let (s, t) = (&*e.store, tenant("plan"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let start = Timestamp::parse("2026-11-20T22:50:00Z").unwrap().micros();
    let mut actions: Vec<String> = [
        "payment.void",
        "payment.refund",
        "payment.refund.partial",
        "paymentx.void",
        "user.login",
        "payment",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    // More actions under one prefix than the plan walks one by one.
    actions.extend((0..40).map(|i| format!("bulk.a{i:02}")));
    let mut head = ChainHead::genesis();
    let mut all = vec![];
    let mut clock = start;
    for batch in 0..12 {
        let events: Vec<(Timestamp, String)> = (0..rng.gen_range(1..120))
            .map(|_| {
                clock += rng.gen_range(0..90_000_000);
                let at = match rng.gen_range(0..20) {
                    // Late by up to two hours, or backfilled days earlier.
                    0 => clock - rng.gen_range(0..7_200_000_000),
                    1 if batch > 6 => start - rng.gen_range(0..3 * 86_400_000_000),
                    _ => clock,
                };
                let action = actions[rng.gen_range(0..actions.len())].clone();
                (Timestamp::from_micros(at).unwrap(), action)
            })
            .collect();
        let recs = seal_at(&t, &mut head, &events);
        s.append(&t, &recs, &[]).await.unwrap();
        all.extend(recs.into_iter().map(|n| n.record));
    }
    let end = clock;
    let seqs = |rs: &[vigil_core::record::Record]| rs.iter().map(|r| r.seq).collect::<Vec<_>>();
    for round in 0..150 {
        let mut q = Query {
            limit: [1, 7, 100][round % 3],
            ..Query::default()
        };
        let t0 = rng.gen_range(start - 4 * 86_400_000_000..end);
        let t1 = t0 + rng.gen_range(0..[60_000_000, 7_200_000_000, 3 * 86_400_000_000][round % 3]);
        match round % 5 {
            0 => q.since = Some(Timestamp::from_micros(t0).unwrap()),
            1 => q.until = Some(Timestamp::from_micros(t1).unwrap()),
            2 | 3 => {
                q.since = Some(Timestamp::from_micros(t0).unwrap());
                q.until = Some(Timestamp::from_micros(t1).unwrap());
            }
            _ => {}
        }
        if round % 5 >= 3 {
            q.action = Some(ActionFilter::Prefix(
                ["payment", "bulk", "user", "none", "payment.refund"][rng.gen_range(0..5)].into(),
            ));
        }
        if round % 4 == 0 {
            q.outcome = Some("denied".into());
        }
        if round % 7 == 0 {
            q.before_seq = Some(rng.gen_range(1..head.seq + 2));
        }
        let matches = |r: &vigil_core::record::Record| {
            let at = Timestamp::parse(&r.occurred_at).unwrap();
            q.since.is_none_or(|s| at >= s)
                && q.until.is_none_or(|u| at < u)
                && q.before_seq.is_none_or(|b| r.seq < b)
                && q.outcome.as_ref().is_none_or(|o| &r.outcome == o)
                && match &q.action {
                    Some(ActionFilter::Prefix(p)) => r.action.starts_with(&format!("{p}.")),
                    _ => true,
                }
        };
        let want: Vec<i64> = all
            .iter()
            .rev()
            .filter(|r| matches(r))
            .take(q.limit as usize)
            .map(|r| r.seq)
            .collect();
        let got = s.query(&t, &q).await.unwrap();
        assert_eq!(seqs(&got), want, "{q:?}");
        // Paging on from the last record reaches the same matches.
        if let Some(last) = got.last() {
            let next = Query {
                before_seq: Some(last.seq),
                ..q.clone()
            };
            let want: Vec<i64> = all
                .iter()
                .rev()
                .filter(|r| r.seq < last.seq && matches(r))
                .take(q.limit as usize)
                .map(|r| r.seq)
                .collect();
            assert_eq!(seqs(&s.query(&t, &next).await.unwrap()), want, "{next:?}");
        }
    }
}

async fn whole_chain_scans_read_rows_as_stored(e: Engine) {
    let s = &e.store;
    let t = tenant("acme");
    let mut head = s.head(&t).await.unwrap();
    let mut recs = seal(&t, &mut head, 0, 30);
    // Rows with what a row can lack or carry: no trace or producer, a sealed member.
    {
        let r = &mut recs[4].record;
        let (v, salt) = (
            r.payload.remove("note").unwrap(),
            r.payload_salts.remove("note").unwrap(),
        );
        r.sealed.insert("note".into(), format!("v1.{v}{salt}"));
        r.subject_ref = Some("aa".into());
    }
    let mut head = ChainHead::genesis();
    for n in &mut recs {
        if n.record.seq % 7 == 0 {
            n.record.trace_id = None;
            n.record.source.producer_id = None;
            n.record.source.producer_seq = None;
        }
        // Rehash: the rows stay a valid chain.
        n.record.leaf_hash = n.record.compute_leaf_hash().to_hex();
        n.record.chain_hash =
            vigil_core::chain::link(&head.hash, &n.record.compute_leaf_hash()).to_hex();
        head = head.advance(&n.record);
    }
    s.append(&t, &recs, &[]).await.unwrap();
    let want = s.scan(&t, 0, 100).await.unwrap();
    assert_eq!(want.len(), 30);
    // In batches smaller than the chain, and all in one.
    let t = &t;
    let read = |after: i64, batch: i64| async move {
        let mut rx = s.scan_stored(t, after, batch);
        let mut batches = vec![];
        while let Some(b) = rx.recv().await {
            batches.push(b.unwrap());
        }
        batches
    };
    let paged = read(0, 8).await;
    assert_eq!(
        paged.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [8, 8, 8, 6]
    );
    let got: Vec<_> = paged
        .iter()
        .flat_map(|b| b.rows().map(|r| r.to_record()))
        .collect();
    assert_eq!(got, want);
    let from_ten = read(10, 100).await;
    assert_eq!(from_ten.len(), 1);
    assert_eq!(from_ten[0].rows().next().unwrap().seq, 11);
    let all = read(0, 100).await.pop().unwrap();
    assert_eq!(all.rows().map(|r| r.to_record()).collect::<Vec<_>>(), want);
    assert!(
        read(0, 10).await.len() == 3,
        "a full last batch ends the stream with nothing more"
    );
    let mut none = s.scan_stored(&tenant("nobody"), 0, 100);
    assert!(none.recv().await.is_none());
    // What the store wrote verifies from its text: only the sealed row is decoded.
    let mut v = vigil_core::verify::ChainVerifier::new(vec![]);
    for r in all.rows() {
        v.push_stored(&r).unwrap();
    }
    assert_eq!(v.decoded_rows(), 1);
    assert!(v.finish().is_intact());
}

/// SQLite's one write lock is timed (a failed append's hold counts too); Postgres has none.
async fn the_write_lock_is_timed_where_there_is_one(e: Engine) {
    let s = &e.store;
    let t = tenant("acme");
    let before = s.write_lock_held();
    let mut head = s.head(&t).await.unwrap();
    let recs = seal(&t, &mut head, 0, 20);
    s.append(&t, &recs, &[]).await.unwrap();
    // The same rows again: refused, and the lock was held while they were.
    assert!(s.append(&t, &recs, &[]).await.is_err());
    let after = s.write_lock_held();
    match s.engine() {
        "sqlite" => assert!(after.unwrap() > before.unwrap(), "{before:?} -> {after:?}"),
        _ => assert_eq!((before, after), (None, None)),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod on_postgres { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

contract!(
    appended_records_read_back_unchanged_and_move_the_head,
    a_taken_seq_is_a_conflict_and_nothing_of_the_batch_is_written,
    a_taken_event_id_is_a_conflict,
    existing_event_ids_come_back_with_seq_and_content_hash,
    every_filter_narrows_and_pages_come_newest_first,
    checkpoints_and_keys_round_trip,
    one_tenant_never_sees_another,
    redaction_policies_are_kept_per_tenant,
    a_purge_removes_values_and_keeps_what_the_chain_needs,
    retention_periods_are_kept_per_tenant,
    sealed_members_and_subject_keys_round_trip,
    reclaiming_space_after_a_purge_shrinks_the_database,
    webhook_deliveries_queue_retry_and_dead_letter_per_tenant,
    leaf_hashes_and_merkle_nodes_round_trip_per_tenant,
    merkle_tiles_keep_the_widest_and_serve_narrower_requests,
    planned_filters_return_exactly_the_newest_matches,
    whole_chain_scans_read_rows_as_stored,
    the_write_lock_is_timed_where_there_is_one,
);

/// An in-memory SQLite store has no file to read directly: its whole-chain scans go through
/// the pool, with the same rows.
#[tokio::test]
async fn whole_chain_scans_read_rows_as_stored_in_memory() {
    whole_chain_scans_read_rows_as_stored(Engine {
        store: vigil_store::open("sqlite::memory:").await.unwrap(),
        _dir: None,
    })
    .await
}

#[tokio::test]
async fn opening_a_migrated_store_again_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = vigil_store::testing::sqlite_url(dir.path());
    drop(vigil_store::open(&url).await.unwrap());
    vigil_store::open(&url).await.unwrap();
    let pg = vigil_store::testing::fresh_postgres_url().await;
    drop(vigil_store::open(&pg).await.unwrap());
    vigil_store::open(&pg).await.unwrap();
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_clearly() {
    let err = vigil_store::open("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("expected sqlite://"), "{err}");
}

/// A Postgres backup written before the time index existed carries none: the restore rebuilds
/// it from the records, and the rebuilt index is the one ingest maintains.
#[tokio::test]
async fn a_rebuilt_time_index_equals_the_maintained_one() {
    let url = vigil_store::testing::fresh_postgres_url().await;
    let s = vigil_store::open(&url).await.unwrap();
    let t = tenant("rebuild");
    let mut head = ChainHead::genesis();
    let start = Timestamp::parse("2026-11-20T23:58:30Z").unwrap().micros();
    for batch in 0..4i64 {
        let events: Vec<(Timestamp, String)> = (0..50i64)
            .map(|i| {
                // Every third record late by hours; the rest 20 s apart across midnight.
                let at =
                    start + (batch * 50 + i) * 20_000_000 - (i % 3 == 0) as i64 * 3 * 3_600_000_000;
                (
                    Timestamp::from_micros(at).unwrap(),
                    "user.login".to_string(),
                )
            })
            .collect();
        s.append(&t, &seal_at(&t, &mut head, &events), &[])
            .await
            .unwrap();
    }
    let rows = |url: String| async move {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let rows: Vec<(String, i32, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT tenant_id, level, bucket, min_seq, max_seq, n FROM event_time_index ORDER BY 1, 2, 3",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        (pool, rows)
    };
    let (pool, maintained) = rows(url.clone()).await;
    assert!(maintained.len() > 3 * 10, "{maintained:?}");
    sqlx::query("DELETE FROM event_time_index")
        .execute(&pool)
        .await
        .unwrap();
    let mut load = vigil_store::snapshot::PgLoad::begin(&url).await.unwrap();
    load.rebuild_time_index().await.unwrap();
    load.commit().await.unwrap();
    assert_eq!(rows(url).await.1, maintained);
}
