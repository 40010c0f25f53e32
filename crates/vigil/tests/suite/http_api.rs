//! The audit HTTP API, black-box, on SQLite and on Postgres.

use crate::common::*;
use serde_json::{json, Value};

async fn results(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn stored_events_read_back_with_their_hashes(engine: Engine) {
    let app = spawn_app(engine).await;
    let (status, body) = results(app.post_events("acme", &events(0, 3)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 3);
    let seqs: Vec<i64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let id = body["results"][1]["event_id"].as_str().unwrap();
    let rec = app.get_json("acme", &format!("/v1/events/{id}")).await;
    assert_eq!(rec["seq"], 2);
    assert_eq!(rec["tenant_id"], "acme");
    assert_eq!(rec["leaf_hash"].as_str().unwrap().len(), 64);
    assert!(rec["payload_commitments"]["card"].is_string());
    assert!(rec["payload_salts"]["card"].is_string());
    let head = app.get_json("acme", "/v1/chain/head").await;
    assert_eq!(head["seq"], 3);
    let page = app.get_json("acme", "/v1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    assert_eq!(page["events"][0]["seq"], 3, "newest first");
    assert_eq!(head["chain_hash"], page["events"][0]["chain_hash"]);
}

async fn a_batch_with_an_invalid_event_stores_nothing_and_names_each_field(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut bad_sev = event(1);
    bad_sev["severity"] = json!("loud");
    let mut no_actor = event(2);
    no_actor.as_object_mut().unwrap().remove("actor");
    let mut wrong_type = event(3);
    wrong_type["source"]["producer_seq"] = json!("12");
    let body = json!([event(0), bad_sev, no_actor, wrong_type, event(4)]);
    let r = app.post_events("acme", &body).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["x-error-code"], "invalid_event");
    let body: Value = r.json().await.unwrap();
    let d = &body["details"];
    assert_eq!(
        (d["stored"].as_i64(), d["rejected"].as_i64()),
        (Some(0), Some(3))
    );
    let r = &d["results"];
    assert_eq!(r[0]["status"], "not_stored");
    assert_eq!(r[1]["error"]["field"], "severity");
    assert_eq!(r[2]["error"]["field"], "actor");
    assert_eq!(r[3]["error"]["field"], "source.producer_seq");
    assert_eq!(r[3]["error"]["code"], "invalid_event");
    assert_eq!(r[4]["status"], "not_stored");
    assert_eq!(
        app.get_json("acme", "/v1/chain/head").await["seq"],
        0,
        "nothing half-written"
    );
    // The valid rest, sent again, is stored.
    let (status, body) = results(app.post_events("acme", &json!([event(0), event(4)])).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);
    assert_eq!(app.metric("audit_events_processed_total").await, 5.0);
}

async fn a_batch_with_no_valid_event_is_a_422_that_lists_why(engine: Engine) {
    let app = spawn_app(engine).await;
    let r = app.post_events("acme", &json!([{"action": "x"}])).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["x-error-code"], "invalid_event");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_event");
    assert!(body["trace_id"].as_str().unwrap().len() == 32);
    assert_eq!(body["details"]["results"][0]["status"], "rejected");
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 0);
}

async fn a_replayed_event_is_a_duplicate_with_its_original_seq(engine: Engine) {
    let app = spawn_app(engine).await;
    let e = event(7);
    app.post_events("acme", &json!([event(0), e.clone()])).await;
    // Same content, spelled differently (severity), is the same event.
    let mut again = e.clone();
    again["severity"] = json!("INFO");
    let (status, body) = results(app.post_events("acme", &json!([again, event(9)])).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["status"], "duplicate");
    assert_eq!(body["results"][0]["seq"], 2);
    assert_eq!(body["results"][1]["seq"], 3);
    // Twice in one request: the second is a duplicate of the first.
    let e2 = event(10);
    let (_, body) = results(app.post_events("acme", &json!([e2.clone(), e2])).await).await;
    assert_eq!(body["results"][0]["status"], "stored");
    assert_eq!(body["results"][1]["status"], "duplicate");
    assert_eq!(body["results"][1]["seq"], body["results"][0]["seq"]);
}

async fn an_event_id_reused_with_other_content_is_a_409_conflict(engine: Engine) {
    let app = spawn_app(engine).await;
    let e = event(1);
    app.post_events("acme", &json!([e.clone()])).await;
    let mut other = e.clone();
    other["outcome"] = json!("failure");
    let r = app.post_events("acme", &json!([other])).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["x-error-code"], "conflict");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["details"]["results"][0]["seq"], 1);
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 1);
    // Another tenant may use the same id: ids are unique per tenant.
    assert_eq!(app.post_events("other", &json!([e])).await.status(), 200);
}

async fn ndjson_bodies_are_accepted(engine: Engine) {
    let app = spawn_app(engine).await;
    // A line that is not JSON refuses the request, like any invalid event.
    let bad = format!("{}\n\n{}\n{}\n", event(1), event(2), "{not json");
    let (status, body) = results(app.post_raw("acme", "application/x-ndjson", bad).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["results"][2]["status"], "rejected");
    assert_eq!(body["details"]["results"][0]["status"], "not_stored");
    let good = format!("{}\n\n{}\n", event(1), event(2));
    let (status, body) = results(app.post_raw("acme", "application/x-ndjson", good).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);
}

async fn bodies_that_are_not_json_are_400s(engine: Engine) {
    let app = spawn_app(engine).await;
    for (ct, body) in [
        ("application/json", b"this is not json".to_vec()),
        ("application/json", b"".to_vec()),
        ("application/json", b"[{\"a\": 1}, ".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x5b, 0x7b, 0x7d, 0x5d]),
        ("application/json", b"[\"\xff\"]".to_vec()),
    ] {
        let r = app.post_raw("acme", ct, body.clone()).await;
        assert_eq!(r.status(), 400, "{:?}", String::from_utf8_lossy(&body));
        assert_eq!(r.headers()["x-error-code"], "bad_request");
    }
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 0);
}

async fn oversized_batches_and_events_are_413_and_store_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    let r = app.post_events("acme", &events(0, 1001)).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-error-code"], "payload_too_large");
    let mut big = event(1);
    big["payload"]["blob"] = json!("x".repeat(65 * 1024));
    let r = app.post_events("acme", &json!([event(0), big])).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("event 1"),
        "{body}"
    );
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 0);
    assert_eq!(
        app.post_events("acme", &events(0, 1000)).await.status(),
        200
    );
}

async fn deep_nesting_and_unsafe_integers_are_refused_by_field(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "d": deep });
    }
    let mut e = event(1);
    e["payload"]["deep"] = deep;
    let mut big_int = event(2);
    big_int["payload"]["n"] = json!(9007199254740993u64);
    let r = app.post_events("acme", &json!([e, big_int])).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    // The path to where it got too deep.
    assert!(body["details"]["results"][0]["error"]["field"]
        .as_str()
        .unwrap()
        .starts_with("payload.deep.d.d."));
    assert_eq!(body["details"]["results"][1]["error"]["field"], "payload.n");
    // Nesting beyond what the JSON parser itself takes is still a clean 4xx, never a crash.
    let absurd = format!("[{}1{}]", "[".repeat(5000), "]".repeat(5000));
    let r = app.post_raw("acme", "application/json", absurd).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["details"]["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{body}"
    );
}

async fn numbers_that_would_be_stored_altered_are_refused_by_field(engine: Engine) {
    let app = spawn_app(engine).await;
    // Written as text: serde_json (and so `json!`) would round these before they are sent.
    let base = event(1).to_string();
    let with =
        |payload: &str| base.replacen("\"payload\":{", &format!("\"payload\":{{{payload},"), 1);
    for n in [
        "18446744073709551616",
        "123456789012345678901234567890",
        "-9223372036854775809",
        "1.00000000000000001",
        // A float as big: one range whatever way a number is written (the schema's).
        "1e21",
        "-9.5e15",
    ] {
        let body = format!("[{}]", with(&format!("\"x\":{{\"n\":{n}}}")));
        let r = app.post_raw("acme", "application/json", body).await;
        assert_eq!(r.status(), 422, "{n}");
        let body: Value = r.json().await.unwrap();
        let err = &body["details"]["results"][0]["error"];
        assert_eq!(err["field"], "payload.x.n", "{n}: {body}");
        assert!(
            err["message"].as_str().unwrap().contains("exactly"),
            "{body}"
        );
    }
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 0);
    // Numbers that come back the same are stored, and read back as sent.
    let body = format!(
        "[{}]",
        with("\"ratio\":0.1,\"big\":9007199254740991,\"exp\":1e15,\"neg\":-2.5")
    );
    let (status, body) = results(app.post_raw("acme", "application/json", body).await).await;
    assert_eq!(status, 200, "{body}");
    let id = body["results"][0]["event_id"].as_str().unwrap();
    let rec = app.get_json("acme", &format!("/v1/events/{id}")).await;
    assert_eq!(rec["payload"]["ratio"], json!(0.1));
    assert_eq!(rec["payload"]["big"], json!(9007199254740991_i64));
    assert_eq!(rec["payload"]["exp"], json!(1e15));
    assert_eq!(rec["payload"]["neg"], json!(-2.5));
}

async fn an_empty_batch_is_a_400_and_a_wrong_content_type_a_415(engine: Engine) {
    let app = spawn_app(engine).await;
    let r = app.post_raw("acme", "application/json", "[]").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-error-code"], "bad_request");
    let r = app.post_raw("acme", "application/json", " [ ] ").await;
    assert_eq!(r.status(), 400);
    let body = json!([event(0)]).to_string();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "image/png",
    ] {
        let r = app.post_raw("acme", ct, body.clone()).await;
        assert_eq!(r.status(), 415, "{ct}");
        assert_eq!(r.headers()["x-error-code"], "unsupported_media_type");
    }
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 0);
    let line = event(1).to_string();
    for (ct, body) in [
        ("application/json; charset=utf-8", body),
        ("application/x-ndjson", line),
    ] {
        let (status, b) = results(app.post_raw("acme", ct, body).await).await;
        assert_eq!(status, 200, "{ct}: {b}");
    }
}

async fn a_producer_seq_going_backwards_refuses_the_request_and_gaps_are_counted(engine: Engine) {
    let app = spawn_app(engine).await;
    let with_seq = |i: u64, s: u64| {
        let mut e = event(i);
        e["source"] =
            json!({"service": "payments", "producer_id": "payments-7f3", "producer_seq": s});
        e
    };
    app.post_events("acme", &json!([with_seq(0, 10), with_seq(1, 11)]))
        .await;
    let (status, body) = results(
        app.post_events(
            "acme",
            &json!([with_seq(2, 15), with_seq(3, 9), with_seq(4, 15)]),
        )
        .await,
    )
    .await;
    // Going backwards conflicts with what is stored, and a request is all or nothing.
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
    let each = &body["details"]["results"];
    assert_eq!(each[0]["status"], "not_stored", "{body}");
    assert_eq!(each[1]["status"], "conflict");
    assert_eq!(each[1]["error"]["field"], "source.producer_seq");
    assert!(each[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("went backwards"));
    assert_eq!(each[2]["status"], "conflict");
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 2);
    assert_eq!(app.metric("audit_chain_gap_total").await, 0.0);
    // The rest again, without the conflicts: stored; 12..14 were lost on the way, a gap of 3.
    let (status, body) = results(app.post_events("acme", &json!([with_seq(2, 15)])).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "stored");
    // Alone, it is a 409.
    let r = app.post_events("acme", &json!([with_seq(6, 3)])).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["x-error-code"], "conflict");
    assert_eq!(app.metric("audit_chain_gap_total").await, 3.0);
    // Another producer has its own sequence.
    let mut other = with_seq(5, 1);
    other["source"]["producer_id"] = json!("payments-9aa");
    assert_eq!(app.post_events("acme", &json!([other])).await.status(), 200);
}

async fn the_tenant_comes_from_the_context_and_is_validated(engine: Engine) {
    let app = spawn_app(engine).await;
    // No identity at all: unauthenticated. Identity headers without a tenant: 400.
    let r = app
        .client
        .post(app.url("/v1/events"))
        .json(&events(0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-error-code"], "unauthenticated");
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("X-Roles", "admin")
        .json(&events(0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-error-code"], "missing_tenant_id");
    for bad in ["ACME", "-a", "a b", &"a".repeat(65), ""] {
        let r = app
            .client
            .get(app.url("/v1/events"))
            .header("X-Tenant-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    let r = app
        .client
        .get(app.url("/v1/events"))
        .header("X-Tenant-ID", "a")
        .header("X-Tenant-ID", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn every_filter_works_over_http(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut batch = vec![];
    for i in 0..20u64 {
        let mut e = event(i);
        e["occurred_at"] = json!(format!("2026-11-22T10:00:{:02}Z", i));
        e["severity"] = json!(["info", "warning", "critical", "security"][(i % 4) as usize]);
        e["outcome"] = json!(if i % 3 == 0 { "denied" } else { "success" });
        if i == 7 {
            e["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
            e["action"] = json!("payment.refund.partial");
        }
        batch.push(e);
    }
    app.post_events("acme", &Value::Array(batch)).await;
    app.post_events("other", &events(0, 5)).await;
    let count = |q: &'static str| {
        let app = &app;
        async move {
            let page = app.get_json("acme", &format!("/v1/events?{q}")).await;
            let evs = page["events"].as_array().unwrap().clone();
            assert!(evs.iter().all(|e| e["tenant_id"] == "acme"));
            evs.len()
        }
    };
    assert_eq!(count("actor_id=u-1").await, 4);
    assert_eq!(count("action=user.login").await, 9);
    assert_eq!(count("action=payment.*").await, 11);
    assert_eq!(count("action=payment.refund.*").await, 1);
    assert_eq!(count("resource_type=payment&resource_id=p-3").await, 1);
    assert_eq!(count("outcome=denied").await, 7);
    assert_eq!(count("min_severity=critical").await, 10);
    assert_eq!(count("min_severity=WARN").await, 15);
    assert_eq!(
        count("since=2026-11-22T10:00:05Z&until=2026-11-22T10:00:10Z").await,
        5
    );
    assert_eq!(count("since=2026-11-22T11:00:05%2B01:00").await, 15);
    assert_eq!(count("trace_id=4BF92F3577B34DA6A3CE929D0E0E4736").await, 1);
    assert_eq!(count("limit=3").await, 3);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "min_severity=loud",
        "since=yesterday",
        "outcome=maybe",
        "action=Bad Action",
        "trace_id=zz",
        "actor=u-1",
        "cursor=garbage",
    ] {
        let r = app.get("acme", &format!("/v1/events?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["x-error-code"], "bad_request", "{bad}");
    }
}

async fn a_cursor_stays_exact_while_new_events_arrive(engine: Engine) {
    let app = spawn_app(engine).await;
    app.post_events("acme", &events(0, 25)).await;
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/events?limit=10&cursor={c}"),
            None => "/v1/events?limit=10".into(),
        };
        let page = app.get_json("acme", &q).await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        pages += 1;
        // New events arrive between pages: they must not shift or repeat what follows.
        app.post_events("acme", &events(100 + pages, 3)).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<_>>());
}

async fn a_cursor_is_bound_to_its_tenant_and_filters(engine: Engine) {
    let app = spawn_app(engine).await;
    app.post_events("acme", &events(0, 5)).await;
    app.post_events("evil", &events(0, 5)).await;
    let page = app.get_json("acme", "/v1/events?limit=2").await;
    let c = page["next_cursor"].as_str().unwrap();
    let r = app
        .get("evil", &format!("/v1/events?limit=2&cursor={c}"))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("another tenant"),
        "{body}"
    );
    let r = app
        .get(
            "acme",
            &format!("/v1/events?limit=2&cursor={c}&actor_id=u-1"),
        )
        .await;
    assert_eq!(r.status(), 400);
}

async fn one_tenant_never_reads_another_tenants_event(engine: Engine) {
    let app = spawn_app(engine).await;
    let (_, body) = results(app.post_events("acme", &events(0, 1)).await).await;
    let id = body["results"][0]["event_id"].as_str().unwrap();
    let r = app.get("evil", &format!("/v1/events/{id}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-error-code"], "not_found");
    assert_eq!(
        app.get_json("evil", "/v1/events").await["events"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(app.get_json("evil", "/v1/chain/head").await["seq"], 0);
}

async fn checkpoints_are_signed_every_n_events_and_verify_with_the_published_key(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 10).await;
    assert_eq!(
        app.get("acme", "/v1/checkpoints/latest").await.status(),
        404
    );
    for i in 0..3 {
        app.post_events("acme", &events(i * 10, 10)).await;
    }
    let mut cp = Value::Null;
    for _ in 0..100 {
        cp = app.get_json("acme", "/v1/checkpoints/latest").await;
        if cp["size"] == 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(cp["size"], 30, "{cp}");
    let head = app.get_json("acme", "/v1/chain/head").await;
    assert_eq!(cp["chain_hash"], head["chain_hash"]);
    let keys = app.get_json("acme", "/v1/keys").await;
    let vkey = keys["keys"][0]["verifier_key"].as_str().unwrap();
    let v = vigil_core::checkpoint::NoteVerifier::parse(vkey).unwrap();
    let opened = v.open(cp["note"].as_str().unwrap()).unwrap();
    assert_eq!(opened.size, 30);
    assert_eq!(opened.tenant, "acme");
    let key_file = app
        .dir
        .path()
        .join("data")
        .join(vigil_audit::keys::KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

async fn a_time_based_checkpoint_covers_a_quiet_tenant(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.checkpoint_interval = std::time::Duration::from_millis(200)
    })
    .await;
    app.post_events("acme", &events(0, 3)).await;
    for _ in 0..100 {
        let r = app.get("acme", "/v1/checkpoints/latest").await;
        if r.status() == 200 {
            let cp: Value = r.json().await.unwrap();
            assert_eq!(cp["size"], 3);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no checkpoint within 5 s at a 200 ms interval");
}

async fn concurrent_requests_share_commits_and_the_chain_verifies(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let mut tasks = vec![];
    for c in 0..16u64 {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![];
            for b in 0..5u64 {
                let body = events(c * 1000 + b * 20, 20);
                let r = client
                    .post(&url)
                    .header("X-Tenant-ID", "acme")
                    .header("X-Roles", "service")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap();
                ids.extend(
                    body["results"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["seq"].as_i64().unwrap()),
                );
            }
            ids
        }));
    }
    let mut seqs: Vec<i64> = vec![];
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>(), "gapless and unique");
    let commits = app.metric("audit_group_commit_size_count").await;
    assert!(
        commits < 80.0,
        "80 requests took {commits} commits: no grouping"
    );
    app.stop().await;
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acme: intact, 1600 records"), "{out}");
}

async fn ops_endpoints_answer(engine: Engine) {
    let app = spawn_app(engine).await;
    let c = &app.client;
    assert_eq!(app.public("/healthz").await.0, 200);
    let ready: Value = serde_json::from_str(&app.public("/readyz").await.1).unwrap();
    assert_eq!(ready["status"], "ready");
    let metrics = app.public("/metrics").await.1;
    for name in [
        "audit_events_processed_total",
        "audit_chain_gap_total",
        "audit_ingest_batch_size",
        "audit_ingest_duration_seconds",
        "audit_store_errors_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    let api: Value = serde_json::from_str(&app.public("/openapi.json").await.1).unwrap();
    for path in [
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/chain/head",
        "/v1/checkpoints/latest",
        "/v1/keys",
        "/readyz",
    ] {
        assert!(
            api["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
    let r = c.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-error-code"], "not_found");
    assert_eq!(r.headers()["x-trace-id"].len(), 32);
    let r = c
        .delete(app.url("/v1/events"))
        .header("X-Tenant-ID", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c
        .get(app.url("/nope"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

on_both_engines!(
    stored_events_read_back_with_their_hashes,
    a_batch_with_an_invalid_event_stores_nothing_and_names_each_field,
    a_batch_with_no_valid_event_is_a_422_that_lists_why,
    a_replayed_event_is_a_duplicate_with_its_original_seq,
    an_event_id_reused_with_other_content_is_a_409_conflict,
    ndjson_bodies_are_accepted,
    bodies_that_are_not_json_are_400s,
    oversized_batches_and_events_are_413_and_store_nothing,
    deep_nesting_and_unsafe_integers_are_refused_by_field,
    numbers_that_would_be_stored_altered_are_refused_by_field,
    an_empty_batch_is_a_400_and_a_wrong_content_type_a_415,
    a_producer_seq_going_backwards_refuses_the_request_and_gaps_are_counted,
    the_tenant_comes_from_the_context_and_is_validated,
    every_filter_works_over_http,
    a_cursor_stays_exact_while_new_events_arrive,
    a_cursor_is_bound_to_its_tenant_and_filters,
    one_tenant_never_reads_another_tenants_event,
    checkpoints_are_signed_every_n_events_and_verify_with_the_published_key,
    a_time_based_checkpoint_covers_a_quiet_tenant,
    concurrent_requests_share_commits_and_the_chain_verifies,
    ops_endpoints_answer,
);
