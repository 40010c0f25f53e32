//! The one error type of `vigil-core`.

/// What went wrong in the core: a field that does not validate, or a note that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field of an event (or another value) is not acceptable; `field` is its JSON path.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the offending field, e.g. `source.producer_seq`.
        field: String,
        /// What is wrong with it, in words a caller can act on.
        reason: String,
    },
    /// A signed note or checkpoint could not be parsed or verified.
    #[error("checkpoint: {0}")]
    Note(String),
    /// A sealed value or wrapped key does not open (wrong key, or altered).
    #[error("sealed data does not open: {0}")]
    Sealed(&'static str),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The JSON path of the field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::Note(_) | Error::Sealed(_) => None,
        }
    }
}
