//! The metrics every service exposes besides its own: build info, the process (CPU, memory,
//! open fds, from /proc) and, for services with a database, its connection pool:
//!
//! - `vigil_build_info{service,version}`: always 1;
//! - `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, … (the
//!   Prometheus client's process collector);
//! - `vigil_db_pool_connections{service,state="idle|in_use"}`,
//!   `vigil_db_pool_max_connections{service}` and `vigil_db_pool_timeouts_total{service}`
//!   (waits for a connection that ran out of time), read from the pool at each scrape;
//! - for services that keep files, `vigil_disk_free_bytes{service,path}` and
//!   `vigil_disk_size_bytes{service,path}` of the file system holding their data directory.

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

/// Registers the disk-space gauges of the file system holding `dir` (read at each scrape).
pub fn register_disk(registry: &Registry, service: &str, dir: &std::path::Path) {
    let _ = registry.register(Box::new(DiskCollector::new(service, dir)));
}

struct DiskCollector {
    dir: std::path::PathBuf,
    free: IntGauge,
    size: IntGauge,
}

impl DiskCollector {
    fn new(service: &str, dir: &std::path::Path) -> DiskCollector {
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(
                Opts::new(name, help)
                    .const_label("service", service)
                    .const_label("path", dir.display().to_string()),
            )
            .expect("valid metric")
        };
        DiskCollector {
            dir: dir.to_owned(),
            free: gauge(
                "vigil_disk_free_bytes",
                "Bytes available to the service on the file system of its data directory",
            ),
            size: gauge(
                "vigil_disk_size_bytes",
                "Size of the file system of the service's data directory",
            ),
        }
    }
}

impl Collector for DiskCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.free.desc();
        d.extend(self.size.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Unreadable (the directory went away): no sample rather than a false zero.
        let Ok(st) = rustix::fs::statvfs(&self.dir) else {
            return Vec::new();
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.free
            .set(clamp(st.f_bavail.saturating_mul(st.f_frsize)));
        self.size
            .set(clamp(st.f_blocks.saturating_mul(st.f_frsize)));
        let mut out = self.free.collect();
        out.extend(self.size.collect());
        out
    }
}

/// Registers a gauge read from `read` at each scrape (a value the service keeps elsewhere).
pub fn register_gauge_fn(
    registry: &Registry,
    name: &str,
    help: &str,
    read: Arc<dyn Fn() -> f64 + Send + Sync>,
) {
    let gauge = prometheus::Gauge::new(name, help).expect("valid metric");
    let _ = registry.register(Box::new(GaugeFn { gauge, read }));
}

struct GaugeFn {
    gauge: prometheus::Gauge,
    read: Arc<dyn Fn() -> f64 + Send + Sync>,
}

impl Collector for GaugeFn {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.set((self.read)());
        self.gauge.collect()
    }
}

#[cfg(test)]
mod disk_tests {
    use super::*;

    #[test]
    fn the_data_directory_file_system_is_measured() {
        let registry = Registry::new();
        let dir = tempfile::tempdir().unwrap();
        register_disk(&registry, "audit", dir.path());
        let families = registry.gather();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.get_name() == name)
                .map(|f| f.get_metric()[0].get_gauge().get_value())
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let (free, size) = (
            value("vigil_disk_free_bytes"),
            value("vigil_disk_size_bytes"),
        );
        assert!(size > 0.0 && free > 0.0 && free <= size, "{free} of {size}");
    }
}
