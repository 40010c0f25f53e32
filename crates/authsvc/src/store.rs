//! The auth service's store: [`vigil_store::identity`]'s [`IdentityStore`], behind an `Arc`
//! so every part of the service shares one (and a test can hand it another implementation).

pub use vigil_store::identity::{
    ApiKeyRow, ClientRow, IdentityStore, KeyState, NewKey, OutboxEvent, SqlIdentityStore,
    StoredKey, UserRow,
};

/// The store as the service holds it.
pub type AuthStore = std::sync::Arc<dyn IdentityStore>;
