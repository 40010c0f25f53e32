//! `vigil-coverage.toml`: what counts as emitting an audit event, and what to leave out.

use serde::Deserialize;

/// The scanner's settings. Every field has a default, so an empty file (or none) works for a
/// service that audits through Vigil's producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The least audited share of mutating routes (`--min` wins over it).
    pub min: f64,
    /// How many calls deep from a handler an emitter is looked for (same crate only).
    pub depth: usize,
    /// Calls that emit an audit event: a method name (`emit`) or a path suffix
    /// (`events::event`, `AuditProducer::emit`).
    pub emitters: Vec<String>,
    /// Layers that audit every route they wrap (`AuditLayer`): a `.layer(…)` whose argument
    /// names one, or a variable built from one, covers the routes added before it.
    pub layers: Vec<String>,
    /// Paths (relative to the scanned root) to skip: a file or directory prefix.
    pub exclude: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            min: 0.9,
            depth: 3,
            emitters: vec![
                "emit".into(),
                "emit_event".into(),
                "emit_acknowledged".into(),
            ],
            layers: vec!["AuditLayer".into()],
            exclude: Vec::new(),
        }
    }
}

impl Config {
    /// Parses the TOML text of a config file.
    pub fn from_toml(text: &str) -> Result<Config, crate::CoverageError> {
        let c: Config =
            toml::from_str(text).map_err(|e| crate::CoverageError::Config(e.to_string()))?;
        if !(0.0..=1.0).contains(&c.min) {
            return Err(crate::CoverageError::Config(format!(
                "min must be between 0 and 1, not {}",
                c.min
            )));
        }
        Ok(c)
    }
}
