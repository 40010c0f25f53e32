//! The producer's one error type.

use std::path::PathBuf;

/// What can go wrong starting a producer, or with one event a caller waited for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerError {
    /// Durable mode needs a spool directory.
    #[error("durable mode needs a spool directory (ProducerConfig::spool_dir)")]
    NoSpoolDir,
    /// The spool could not be opened.
    #[error("opening the spool in {path}: {message}")]
    Spool {
        /// The spool directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Another process holds the spool directory.
    #[error("the spool in {0} is in use by another process")]
    SpoolLocked(PathBuf),
    /// The event does not validate.
    #[error("the audit event is invalid: {0}")]
    Invalid(vigil_core::Error),
    /// The event was lost (queue or spool full, refused, shut down): counted and logged.
    #[error("the audit event was dropped: {0}")]
    Dropped(&'static str),
    /// The producer stopped before the event was delivered or spooled.
    #[error("the audit producer has stopped")]
    Stopped,
}
