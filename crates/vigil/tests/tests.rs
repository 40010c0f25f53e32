//! Black-box tests of Vigil: the audit service on a random port (in-process or as the real
//! binary), real SQLite files and a real Postgres server. One test binary, a module per area.

// First: its macros are in scope for the modules below.
#[macro_use]
#[path = "suite/common.rs"]
mod common;

#[path = "suite/alerts.rs"]
mod alerts;
#[path = "suite/auth.rs"]
mod auth;
#[path = "suite/backup.rs"]
mod backup;
#[path = "suite/chaos.rs"]
mod chaos;
#[path = "suite/console.rs"]
mod console;
#[path = "suite/contract.rs"]
mod contract;
#[path = "suite/crash.rs"]
mod crash;
#[path = "suite/dashboards.rs"]
mod dashboards;
#[path = "suite/deploy.rs"]
mod deploy;
#[path = "suite/drills.rs"]
mod drills;
#[path = "suite/erasure.rs"]
mod erasure;
#[path = "suite/gateway.rs"]
mod gateway;
#[path = "suite/http_api.rs"]
mod http_api;
#[path = "suite/independent.rs"]
mod independent;
#[path = "suite/isolation.rs"]
mod isolation;
#[path = "suite/multiprocess.rs"]
mod multiprocess;
#[path = "suite/pipeline.rs"]
mod pipeline;
#[path = "suite/proofs.rs"]
mod proofs;
#[path = "suite/redaction.rs"]
mod redaction;
#[path = "suite/regress.rs"]
mod regress;
#[path = "suite/retention.rs"]
mod retention;
#[path = "suite/retries.rs"]
mod retries;
#[path = "suite/security.rs"]
mod security;
#[path = "suite/settings.rs"]
mod settings;
#[path = "suite/store_outage.rs"]
mod store_outage;
#[path = "suite/tamper.rs"]
mod tamper;
#[path = "suite/telemetry.rs"]
mod telemetry;
#[path = "suite/tokens.rs"]
mod tokens;
#[path = "suite/webhooks.rs"]
mod webhooks;
