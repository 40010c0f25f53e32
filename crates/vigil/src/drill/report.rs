//! A drill's report: a timeline, metrics before/during/after, figures, and checks against
//! stated thresholds; written as Markdown and JSON.

use serde::Serialize;
use std::time::Instant;

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    /// Wall-clock time (RFC 3339).
    pub(crate) at: String,
    /// Seconds since the drill started.
    pub(crate) t: f64,
    /// What happened.
    pub(crate) what: String,
}

/// A metric read at the three moments.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MetricRow {
    pub(crate) name: String,
    pub(crate) before: Option<f64>,
    pub(crate) during: Option<f64>,
    pub(crate) after: Option<f64>,
}

/// A pass/fail check.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub(crate) name: String,
    pub(crate) threshold: String,
    pub(crate) value: String,
    pub(crate) passed: bool,
}

/// The report being written.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) started_at: String,
    pub(crate) injected: String,
    pub(crate) setup: Vec<(String, String)>,
    pub(crate) timeline: Vec<Step>,
    pub(crate) metrics: Vec<MetricRow>,
    pub(crate) figures: Vec<(String, f64)>,
    pub(crate) checks: Vec<Check>,
    pub(crate) passed: bool,
    #[serde(skip)]
    clock: Option<Instant>,
}

impl Report {
    pub(crate) fn new(scenario: &str, injected: &str) -> Report {
        Report {
            scenario: scenario.into(),
            started_at: chrono::Utc::now().to_rfc3339(),
            injected: injected.into(),
            setup: Vec::new(),
            timeline: Vec::new(),
            metrics: Vec::new(),
            figures: Vec::new(),
            checks: Vec::new(),
            passed: false,
            clock: Some(Instant::now()),
        }
    }

    /// Seconds since the start.
    pub(crate) fn now(&self) -> f64 {
        self.clock.map_or(0.0, |c| c.elapsed().as_secs_f64())
    }

    /// Records a step (and says it on stderr, for whoever watches).
    pub(crate) fn step(&mut self, what: impl Into<String>) -> f64 {
        let t = self.now();
        let what = what.into();
        eprintln!("[{t:7.2}s] {what}");
        self.timeline.push(Step {
            at: chrono::Utc::now().to_rfc3339(),
            t,
            what,
        });
        t
    }

    pub(crate) fn figure(&mut self, name: &str, value: f64) {
        self.figures.push((name.into(), value));
    }

    pub(crate) fn check(&mut self, name: &str, threshold: String, value: String, passed: bool) {
        self.checks.push(Check {
            name: name.into(),
            threshold,
            value,
            passed,
        });
    }

    /// Records metric readings taken at before/during/after: each the sum of the series of
    /// `name`, or of those whose labels begin with the given ones (`name{engine="redis"`).
    pub(crate) fn metrics(&mut self, names: &[&str], readings: [&str; 3]) {
        for name in names {
            let (base, labels) = match name.find('{') {
                Some(i) => (&name[..i], Some(name[i..].trim_end_matches('}'))),
                None => (*name, None),
            };
            let read = |text: &str| -> Option<f64> {
                let v: Vec<f64> = text
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter(|l| {
                        l.starts_with(base)
                            && match labels {
                                None => {
                                    matches!(l.as_bytes().get(base.len()), Some(b' ' | b'{'))
                                }
                                Some(sel) => l[base.len()..].starts_with(sel),
                            }
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum())
            };
            self.metrics.push(MetricRow {
                // An open label selector shown as one: `name{engine="redis",…}`.
                name: if name.contains('{') && !name.ends_with('}') {
                    format!("{name},…}}")
                } else {
                    name.to_string()
                },
                before: read(readings[0]),
                during: read(readings[1]),
                after: read(readings[2]),
            });
        }
    }

    /// Settles the verdict: every check passed.
    pub(crate) fn finish(&mut self) {
        self.passed = !self.checks.is_empty() && self.checks.iter().all(|c| c.passed);
    }

    /// The check that every chain verified.
    pub(crate) fn check_chains(&mut self, intact: bool) {
        self.check(
            "chains verify",
            "intact".into(),
            if intact { "intact" } else { "tampered" }.into(),
            intact,
        );
    }

    /// Settles the verdict and writes the report to `dir`, if given.
    pub(crate) fn conclude(mut self, dir: Option<&std::path::Path>) -> anyhow::Result<Report> {
        self.finish();
        if let Some(dir) = dir {
            self.write(dir)?;
        }
        Ok(self)
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = format!(
            "# Drill: {} — {}\n\nStarted {}. Injected: {}.\n\n",
            self.scenario,
            if self.passed { "PASS" } else { "FAIL" },
            self.started_at,
            self.injected
        );
        if !self.setup.is_empty() {
            s.push_str("## Setup\n\n");
            for (k, v) in &self.setup {
                s.push_str(&format!("- {k}: {v}\n"));
            }
            s.push('\n');
        }
        s.push_str("## Checks\n\n| check | threshold | measured | result |\n|---|---|---|---|\n");
        for c in &self.checks {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.name,
                c.threshold,
                c.value,
                if c.passed { "pass" } else { "**FAIL**" }
            ));
        }
        s.push_str("\n## Figures\n\n");
        for (k, v) in &self.figures {
            s.push_str(&format!("- {k}: {v:.3}\n"));
        }
        s.push_str("\n## Timeline\n\n| t (s) | time | event |\n|---|---|---|\n");
        for st in &self.timeline {
            s.push_str(&format!("| {:.2} | {} | {} |\n", st.t, st.at, st.what));
        }
        s.push_str("\n## Metrics\n\n| metric | before | during | after |\n|---|---|---|---|\n");
        let show = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v}"));
        for m in &self.metrics {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                m.name,
                show(m.before),
                show(m.during),
                show(m.after)
            ));
        }
        s
    }

    /// Writes `DIR/drill-SCENARIO.md` and `.json`.
    pub(crate) fn write(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let base = dir.join(format!("drill-{}", self.scenario));
        std::fs::write(base.with_extension("md"), self.markdown())
            .with_context(|| format!("writing {}.md", base.display()))?;
        std::fs::write(
            base.with_extension("json"),
            serde_json::to_vec_pretty(self)?,
        )
        .with_context(|| format!("writing {}.json", base.display()))?;
        Ok(())
    }
}
