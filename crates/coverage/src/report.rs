//! The scan's result: per service and route, and the terminal table, JSON and Prometheus
//! textfile made from it.

use serde::Serialize;

/// How a mutating route stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStatus {
    /// Its handler (or a function it calls) emits, or an audit layer wraps it.
    Audited,
    /// Marked `// audit:ignore REASON`.
    Ignored,
    /// Marked `// audit:ignore` without a reason: refused, and counted as not audited.
    InvalidIgnore,
    /// Nothing found that audits it.
    Missing,
}

/// One mutating route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    /// POST, PUT, PATCH, DELETE or ANY.
    pub method: String,
    /// The full path, nest prefixes included.
    pub path: String,
    /// The handler as the router names it.
    pub handler: String,
    /// The handler's file (relative to the scanned root).
    pub file: String,
    /// The handler's line.
    pub line: usize,
    /// The verdict.
    pub status: RouteStatus,
    /// What audits it (the call path to the emitter, or the layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// An ignored route's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One crate's routes.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// The crate's package name.
    pub service: String,
    /// Mutating routes.
    pub mutating: usize,
    /// Of those, audited.
    pub audited: usize,
    /// Of those, ignored with a reason (left out of the ratio).
    pub ignored: usize,
    /// audited / (mutating − ignored); 1 when nothing is left to audit.
    pub ratio: f64,
    /// Every mutating route.
    pub routes: Vec<RouteReport>,
}

fn ratio(audited: usize, mutating: usize, ignored: usize) -> f64 {
    let counted = mutating - ignored;
    if counted == 0 {
        1.0
    } else {
        audited as f64 / counted as f64
    }
}

impl ServiceReport {
    pub(crate) fn new(service: String, routes: Vec<RouteReport>) -> ServiceReport {
        let count = |s| routes.iter().filter(|r| r.status == s).count();
        let (audited, ignored) = (count(RouteStatus::Audited), count(RouteStatus::Ignored));
        ServiceReport {
            service,
            mutating: routes.len(),
            audited,
            ignored,
            ratio: ratio(audited, routes.len(), ignored),
            routes,
        }
    }
}

/// The whole scan.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per crate with routes.
    pub services: Vec<ServiceReport>,
    /// Over all of them.
    pub ratio: f64,
    /// The threshold.
    pub min: f64,
    /// True when the ratio reaches `min` and no `audit:ignore` lacks its reason.
    pub passed: bool,
}

impl Report {
    pub(crate) fn new(services: Vec<ServiceReport>, min: f64) -> Report {
        let sum = |f: fn(&ServiceReport) -> usize| services.iter().map(f).sum::<usize>();
        let r = ratio(sum(|s| s.audited), sum(|s| s.mutating), sum(|s| s.ignored));
        let invalid = services
            .iter()
            .flat_map(|s| &s.routes)
            .any(|r| r.status == RouteStatus::InvalidIgnore);
        Report {
            passed: r >= min && !invalid,
            ratio: r,
            min,
            services,
        }
    }

    /// With another threshold.
    pub fn with_min(self, min: f64) -> Report {
        let services = self.services;
        Report::new(services, min)
    }

    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for s in &self.services {
            out.push_str(&format!(
                "{}: {}/{} mutating routes audited ({:.0}%), {} ignored\n",
                s.service,
                s.audited,
                s.mutating - s.ignored,
                s.ratio * 100.0,
                s.ignored
            ));
            for r in &s.routes {
                let what = match r.status {
                    RouteStatus::Audited => {
                        format!("audited  via {}", r.via.as_deref().unwrap_or(""))
                    }
                    RouteStatus::Ignored => {
                        format!("ignored  {}", r.reason.as_deref().unwrap_or(""))
                    }
                    RouteStatus::InvalidIgnore => {
                        "REFUSED  audit:ignore needs a reason".to_string()
                    }
                    RouteStatus::Missing => "MISSING  no audit event found".to_string(),
                };
                out.push_str(&format!(
                    "  {:<7}{:<44}{:<28}{}:{}  {}\n",
                    r.method, r.path, r.handler, r.file, r.line, what
                ));
            }
        }
        out.push_str(&format!(
            "total: {:.1}% of mutating routes audited (minimum {:.1}%): {}\n",
            self.ratio * 100.0,
            self.min * 100.0,
            if self.passed { "pass" } else { "FAIL" }
        ));
        out
    }

    /// A Prometheus textfile (for node_exporter's textfile collector).
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP audit_coverage_ratio Share of mutating routes that emit an audit event (ignored routes left out).\n\
             # TYPE audit_coverage_ratio gauge\n",
        );
        for s in &self.services {
            out.push_str(&format!(
                "audit_coverage_ratio{{service=\"{}\"}} {}\n",
                s.service, s.ratio
            ));
        }
        out.push_str(
            "# HELP audit_coverage_routes Mutating routes by audit status.\n\
             # TYPE audit_coverage_routes gauge\n",
        );
        for s in &self.services {
            for (status, n) in [
                ("audited", s.audited),
                ("ignored", s.ignored),
                ("missing", s.mutating - s.audited - s.ignored),
            ] {
                out.push_str(&format!(
                    "audit_coverage_routes{{service=\"{}\",status=\"{status}\"}} {n}\n",
                    s.service
                ));
            }
        }
        out
    }
}
