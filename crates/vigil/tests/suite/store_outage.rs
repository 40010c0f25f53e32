//! The store goes away and comes back: 503 meanwhile (ingest and readiness), nothing
//! half-written, and recovery without a restart.

use crate::common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_a_503_and_the_service_recovers_by_itself() {
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(pg).await;
    let db = vigil_store::testing::fresh_postgres_url().await;
    let via_proxy = db.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        db, via_proxy,
        "the test database URL must name 127.0.0.1:5432"
    );
    let app = spawn_app_with(Engine::Postgres, |s| {
        s.database_url = via_proxy.clone().into()
    })
    .await;
    assert_eq!(app.post_events("acme", &events(0, 5)).await.status(), 200);

    proxy.cut().await;
    let r = app.post_events("acme", &events(5, 5)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-error-code"], "unavailable");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(app.metric("audit_store_errors_total").await >= 1.0);

    proxy.resume().await;
    let mut recovered = false;
    for _ in 0..60 {
        if app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "readyz did not recover after the store came back"
    );
    let r = app.post_events("acme", &events(10, 5)).await;
    assert_eq!(r.status(), 200);
    let page = app.get_json("acme", "/v1/events?limit=100").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        10,
        "the refused batch left nothing behind"
    );
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
}
