//! Tenant isolation as a property: random interleavings of writes and reads by several
//! tenants through the HTTP API never return another tenant's event — by id, by filter or by
//! cursor — and a cursor minted for one tenant is refused to another.

use crate::common::*;
use proptest::prelude::*;
use serde_json::Value;

const TENANTS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Clone, Debug)]
enum Op {
    Write { tenant: usize, n: u64 },
    ById { tenant: usize, pick: usize },
    Filter { tenant: usize, actor: u64 },
    Page { tenant: usize, cursor_of: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..6u64).prop_map(|(tenant, n)| Op::Write { tenant, n }),
        (0..3usize, any::<usize>()).prop_map(|(tenant, pick)| Op::ById { tenant, pick }),
        (0..3usize, 0..5u64).prop_map(|(tenant, actor)| Op::Filter { tenant, actor }),
        (0..3usize, 0..3usize).prop_map(|(tenant, cursor_of)| Op::Page { tenant, cursor_of }),
    ]
}

async fn run(ops: Vec<Op>) {
    let app = spawn_app(Engine::Sqlite).await;
    let mut written: Vec<(usize, String)> = vec![];
    let mut cursors: Vec<Option<String>> = vec![None; TENANTS.len()];
    for op in ops {
        match op {
            Op::Write { tenant, n } => {
                let r = app
                    .post_events(TENANTS[tenant], &events(written.len() as u64, n))
                    .await;
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap();
                for res in body["results"].as_array().unwrap() {
                    written.push((tenant, res["event_id"].as_str().unwrap().to_owned()));
                }
            }
            Op::ById { tenant, pick } if !written.is_empty() => {
                let (owner, id) = &written[pick % written.len()];
                let r = app.get(TENANTS[tenant], &format!("/v1/events/{id}")).await;
                if *owner == tenant {
                    assert_eq!(r.status(), 200);
                    let e: Value = r.json().await.unwrap();
                    assert_eq!(e["tenant_id"], TENANTS[tenant]);
                } else {
                    assert_eq!(
                        r.status(),
                        404,
                        "{} read {}'s event",
                        TENANTS[tenant],
                        TENANTS[*owner]
                    );
                }
            }
            Op::ById { .. } => {}
            Op::Filter { tenant, actor } => {
                let page = app
                    .get_json(
                        TENANTS[tenant],
                        &format!("/v1/events?actor_id=u-{actor}&limit=2"),
                    )
                    .await;
                assert!(page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["tenant_id"] == TENANTS[tenant]));
                if let Some(c) = page["next_cursor"].as_str() {
                    cursors[tenant] = Some(format!("actor_id=u-{actor}&limit=2&cursor={c}"));
                }
            }
            Op::Page { tenant, cursor_of } => {
                let Some(q) = cursors[cursor_of].clone() else {
                    continue;
                };
                let r = app.get(TENANTS[tenant], &format!("/v1/events?{q}")).await;
                if tenant == cursor_of {
                    assert_eq!(r.status(), 200);
                    let page: Value = r.json().await.unwrap();
                    assert!(page["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|e| e["tenant_id"] == TENANTS[tenant]));
                } else {
                    assert_eq!(
                        r.status(),
                        400,
                        "a cursor of {} was accepted for {}",
                        TENANTS[cursor_of],
                        TENANTS[tenant]
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn no_interleaving_of_tenants_ever_crosses_a_tenant_boundary(ops in proptest::collection::vec(op(), 5..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
