//! The metrics every service exposes besides its own: build info, the process (CPU, memory,
//! open fds, from /proc) and, for services with a database, its connection pool:
//!
//! - `vigil_build_info{service,version}`: always 1;
//! - `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, … (the
//!   Prometheus client's process collector);
//! - `vigil_db_pool_connections{service,state="idle|in_use"}`,
//!   `vigil_db_pool_max_connections{service}` and `vigil_db_pool_timeouts_total{service}`
//!   (waits for a connection that ran out of time), read from the pool at each scrape.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;

/// A pool's state now: (open connections, idle ones, the most it opens, timed-out waits so far).
pub type PoolReading = Arc<dyn Fn() -> (u64, u64, u64, u64) + Send + Sync>;

/// Registers build info and the process metrics of `service`, and its pool's when it has one.
pub fn register(registry: &Registry, service: &str, pool: Option<PoolReading>) {
    let info = IntGaugeVec::new(
        Opts::new(
            "vigil_build_info",
            "1, labelled with the service and its version",
        ),
        &["service", "version"],
    )
    .expect("valid metric");
    info.with_label_values(&[service, env!("CARGO_PKG_VERSION")])
        .set(1);
    // A second registration (a second service in one process, e.g. `vigil dev`, shares
    // nothing: each has its own registry) cannot fail; ignore it if it ever does.
    let _ = registry.register(Box::new(info));
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    if let Some(read) = pool {
        let _ = registry.register(Box::new(PoolCollector::new(service, read)));
    }
}

struct PoolCollector {
    read: PoolReading,
    connections: IntGaugeVec,
    max: IntGauge,
    timeouts: IntCounter,
}

impl PoolCollector {
    fn new(service: &str, read: PoolReading) -> PoolCollector {
        let connections = IntGaugeVec::new(
            Opts::new(
                "vigil_db_pool_connections",
                "Open database connections of the service's pool, by state",
            )
            .const_label("service", service),
            &["state"],
        )
        .expect("valid metric");
        let max = IntGauge::with_opts(
            Opts::new(
                "vigil_db_pool_max_connections",
                "The most connections the service's pool opens",
            )
            .const_label("service", service),
        )
        .expect("valid metric");
        let timeouts = IntCounter::with_opts(
            Opts::new(
                "vigil_db_pool_timeouts_total",
                "Waits for a database connection that ran out of time",
            )
            .const_label("service", service),
        )
        .expect("valid metric");
        PoolCollector {
            read,
            connections,
            max,
            timeouts,
        }
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.connections.desc();
        d.extend(self.max.desc());
        d.extend(self.timeouts.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (size, idle, max, timeouts) = (self.read)();
        self.connections
            .with_label_values(&["idle"])
            .set(idle as i64);
        self.connections
            .with_label_values(&["in_use"])
            .set(size.saturating_sub(idle) as i64);
        self.max.set(max as i64);
        let seen = self.timeouts.get();
        if timeouts > seen {
            self.timeouts.inc_by(timeouts - seen);
        }
        let mut out = self.connections.collect();
        out.extend(self.max.collect());
        out.extend(self.timeouts.collect());
        out
    }
}
