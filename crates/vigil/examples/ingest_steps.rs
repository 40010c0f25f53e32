//! CPU per event of each step chained ingest adds to a raw insert, one at a time on one core,
//! best of 7 passes over 20,000 events shaped like `vigil bench ingest`'s (~600 bytes of JSON,
//! five payload members): parsing the request's JSON, validation, the content hash, sealing
//! (five salted commitments, the canonical record, leaf and chain hashes) and the JSON columns
//! the store writes. Where `vigil bench ingest`'s CPU per event goes (BENCHMARKS.md, issue 15).
//!
//! `cargo run --release -p vigil --example ingest_steps`
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::Instant;

// The allocator the `vigil` binary runs with, so the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use vigil_core::chain::ChainHead;
use vigil_core::event::{Event, EventInput};
use vigil_core::ids::{EventId, TenantId};
use vigil_core::record::Sealer;
use vigil_core::time::Timestamp;

fn ev(rng: &mut impl Rng, i: u64) -> serde_json::Value {
    json!({
        "event_id": uuid::Uuid::from_u64_pair(rng.gen(), i).to_string(),
        "occurred_at": Timestamp::from_micros(1_790_000_000_000_000 + (i as i64) * 2_500_000).unwrap().to_rfc3339(),
        "actor": {"type": "user", "id": format!("u-{}", rng.gen_range(0..50))},
        "action": "payment.refund",
        "resource": {"type": "payment", "id": format!("r-{}", rng.gen_range(0..2000))},
        "outcome": "success", "severity": "info",
        "source": {"service": "payments", "producer_id": "p-1", "producer_seq": i},
        "trace_id": hex::encode(rng.gen::<[u8; 16]>()),
        "payload": {"amount": 12.5, "currency": "EUR", "ip": "10.1.2.3",
          "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
          "reason": {"code": 7, "text": "customer request"}}
    })
}

fn main() {
    let n = 20_000u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let vals: Vec<_> = (0..n).map(|i| ev(&mut rng, i + 1)).collect();
    let bytes: Vec<Vec<u8>> = vals
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    let t = TenantId::parse("acme").unwrap();
    let mut best = [f64::MAX; 5];
    for _ in 0..7 {
        let s = Instant::now();
        let parsed: Vec<serde_json::Value> = bytes
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        let p = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let evs: Vec<Event> = parsed
            .into_iter()
            .map(|v| {
                EventInput::new(v)
                    .validate(|| EventId::from_uuid(uuid::Uuid::now_v7()))
                    .unwrap()
            })
            .collect();
        let b = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let mut w = vigil_core::jcs::Writer::with_capacity(1024);
        let hs: Vec<_> = evs.iter().map(|e| e.content_hash_with(&mut w)).collect();
        let c = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let mut head = ChainHead::genesis();
        let mut r2 = rand::thread_rng();
        let mut sealer = Sealer::new(&t);
        let recs: Vec<_> = evs
            .iter()
            .map(|e| {
                let r = sealer.seal(e, head.seq + 1, Timestamp::now(), &head.hash, &mut r2);
                head = head.advance(&r);
                r
            })
            .collect();
        let d = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let js: usize = recs
            .iter()
            .map(|r| {
                serde_json::to_string(&r.payload_commitments).unwrap().len()
                    + serde_json::to_string(&r.payload).unwrap().len()
                    + serde_json::to_string(&r.payload_salts).unwrap().len()
                    + serde_json::to_string(&r.sealed).unwrap().len()
            })
            .sum();
        let e = s.elapsed().as_secs_f64();
        std::hint::black_box((hs, js));
        for (i, x) in [p, b, c, d, e].into_iter().enumerate() {
            best[i] = best[i].min(x * 1e6 / n as f64);
        }
    }
    println!(
        "µs per event (best of 7): parse JSON {:.2}, validate {:.2}, content hash {:.2}, seal {:.2}, store's JSON columns {:.2}",
        best[0], best[1], best[2], best[3], best[4]
    );
}
