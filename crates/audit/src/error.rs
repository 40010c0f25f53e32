//! The audit service's one error type for starting and running it (requests answer with
//! [`vigil_security::error::ApiError`]).

use std::path::PathBuf;

/// Why the audit service (or its writer) could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The settings contradict themselves or are unsafe.
    #[error("{0}")]
    Settings(String),
    /// A file or directory of the service (the data directory, the key file).
    #[error("{what} {}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint key file exists but cannot be used.
    #[error("{}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint key's name.
    #[error("checkpoint key name")]
    KeyName(#[source] vigil_core::Error),
    /// The store (opening, migrating, publishing the key).
    #[error("{what}")]
    Store {
        /// What was being done (with the redacted URL where there is one).
        what: String,
        /// The cause.
        #[source]
        source: vigil_store::StoreError,
    },
    /// A Merkle proof asked for cannot be made (bad parameters, or a tree the store does not
    /// hold).
    #[error(transparent)]
    Proof(#[from] vigil_core::merkle::MerkleError),
    /// The capability policy file.
    #[error(transparent)]
    Policy(#[from] vigil_security::capability::PolicyError),
    /// The service's own audit producer.
    #[error("starting the service's own audit producer")]
    Producer(#[from] vigil_producer::ProducerError),
    /// The Kafka consumer or dead-letter producer.
    #[error("starting the Kafka consumer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Binding or serving HTTP.
    #[error("{what}")]
    Http {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AuditError {
    pub(crate) fn file(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        AuditError::File {
            what,
            path: path.to_owned(),
            source,
        }
    }
}
