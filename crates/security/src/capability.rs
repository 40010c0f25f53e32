//! Capabilities, decided by a Cedar policy.
//!
//! Handlers ask for a [`Capability`]; they never compare roles. Which roles hold which
//! capability is the Cedar policy `policy/capabilities.cedar` (shipped in the binary,
//! replaceable by a file), validated against `policy/capabilities.cedarschema` when loaded: a
//! policy that names an unknown action or entity type stops start-up with Cedar's message.
//!
//! Every (role set, capability) pair is evaluated by Cedar once, at load, and kept in a
//! table: there are 2^7 role sets and 13 capabilities, and a request then costs an array
//! read instead of an evaluation (BENCHMARKS.md has both figures).

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, Schema, ValidationMode, Validator,
};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// The shipped policy.
pub const DEFAULT_POLICY: &str = include_str!("../policy/capabilities.cedar");
/// The schema every policy is validated against.
pub const SCHEMA: &str = include_str!("../policy/capabilities.cedarschema");

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name used in policies, headers and metrics.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// Parses a name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// A role a caller may hold.
    Role {
        /// Everything, in its tenant.
        SuperAdmin => "super_admin",
        /// Tenant administration.
        Admin => "admin",
        /// A store manager.
        Manager => "manager",
        /// Stock keeping.
        Inventory => "inventory",
        /// Point of sale.
        Cashier => "cashier",
        /// Customer support.
        Support => "support",
        /// A service of the fleet.
        Service => "service",
    }
);

named_enum!(
    /// Something a caller may be allowed to do.
    Capability {
        /// Append audit events.
        AuditWrite => "audit_write",
        /// Read audit events (redacted view).
        AuditRead => "audit_read",
        /// Read audit events with every field.
        AuditReadUnredacted => "audit_read_unredacted",
        /// Retention and redaction policy.
        AuditAdmin => "audit_admin",
        /// Signing keys.
        KeysManage => "keys_manage",
        /// Users, service clients and API keys of the caller's tenant.
        IdentityManage => "identity_manage",
        /// Check presented API keys (the gateway; system tenant only).
        ApiKeysIntrospect => "api_keys_introspect",
        /// See stock.
        InventoryView => "inventory_view",
        /// See customers.
        CustomerView => "customer_view",
        /// Change customers.
        CustomerWrite => "customer_write",
        /// Take payments.
        PaymentProcess => "payment_process",
        /// See loyalty accounts.
        LoyaltyView => "loyalty_view",
        /// Data-subject requests.
        GdprManage => "gdpr_manage",
    }
);

/// A set of roles, as bits. [`RoleSet::from_names`] drops unknown names (for identities from
/// elsewhere, e.g. a token's roles); a request body's list deserializes through
/// [`TryFrom<Vec<String>>`], which refuses them, naming the first.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct RoleSet(u8);

impl TryFrom<Vec<String>> for RoleSet {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<RoleSet, String> {
        match names.iter().find(|n| Role::parse(n).is_none()) {
            Some(bad) => Err(format!("{bad:?} is not a role")),
            None => Ok(RoleSet::from_names(names.iter().map(String::as_str))),
        }
    }
}

impl From<RoleSet> for Vec<String> {
    fn from(r: RoleSet) -> Vec<String> {
        r.names().into_iter().map(str::to_owned).collect()
    }
}

impl RoleSet {
    /// The empty set.
    pub const EMPTY: RoleSet = RoleSet(0);

    /// Roles named in `names`; names that are not roles are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> RoleSet {
        RoleSet(
            names
                .into_iter()
                .filter_map(|n| Role::parse(n.trim()))
                .fold(0, |bits, r| bits | (1 << r as u8)),
        )
    }

    /// A set of the given roles.
    pub fn of(roles: &[Role]) -> RoleSet {
        RoleSet(roles.iter().fold(0, |bits, r| bits | (1 << *r as u8)))
    }

    /// Whether `r` is in the set.
    pub fn contains(&self, r: Role) -> bool {
        self.0 & (1 << r as u8) != 0
    }

    /// The roles, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        Role::ALL.iter().copied().filter(|r| self.contains(*r))
    }

    /// Comma-separated names, for logs and audit payloads.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|r| r.as_str()).collect()
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text does not parse.
    #[error("capability policy does not parse: {0}")]
    Parse(String),
    /// The policy does not validate against the schema.
    #[error("capability policy does not validate against the schema: {0}")]
    Invalid(String),
    /// The policy file cannot be read.
    #[error("reading capability policy {path}: {err}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        err: std::io::Error,
    },
}

/// A loaded, validated capability policy with every decision precomputed.
pub struct CapabilityPolicy {
    policies: PolicySet,
    schema: Schema,
    table: Vec<bool>,
}

impl fmt::Debug for CapabilityPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapabilityPolicy")
            .field("policies", &self.policies.policies().count())
            .finish_non_exhaustive()
    }
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).expect("a valid type name"),
        EntityId::new(id),
    )
}

impl CapabilityPolicy {
    /// The shipped policy.
    pub fn shipped() -> CapabilityPolicy {
        CapabilityPolicy::from_text(DEFAULT_POLICY)
            .expect("the shipped policy is valid (a test pins it)")
    }

    /// A policy from a file.
    pub fn from_file(path: &std::path::Path) -> Result<CapabilityPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|err| PolicyError::Read {
            path: path.display().to_string(),
            err,
        })?;
        CapabilityPolicy::from_text(&text)
    }

    /// Parses and validates `text`, then evaluates every (role set, capability) pair.
    pub fn from_text(text: &str) -> Result<CapabilityPolicy, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).expect("the shipped schema is valid");
        let policies = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::default());
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        let mut p = CapabilityPolicy {
            policies,
            schema,
            table: Vec::new(),
        };
        let mut table = vec![false; (1 << Role::ALL.len()) * Capability::ALL.len()];
        for bits in 0..(1u16 << Role::ALL.len()) {
            for (ci, c) in Capability::ALL.iter().enumerate() {
                table[bits as usize * Capability::ALL.len() + ci] =
                    p.evaluate(RoleSet(bits as u8), *c);
            }
        }
        p.table = table;
        Ok(p)
    }

    /// Asks Cedar (no table): is a caller with `roles` allowed `capability`?
    pub fn evaluate(&self, roles: RoleSet, capability: Capability) -> bool {
        let principal = uid("Vigil::Caller", "caller");
        let parents: HashSet<EntityUid> = roles
            .iter()
            .map(|r| uid("Vigil::Role", r.as_str()))
            .collect();
        let mut entities: Vec<Entity> = roles
            .iter()
            .map(|r| Entity::new_no_attrs(uid("Vigil::Role", r.as_str()), HashSet::new()))
            .collect();
        entities.push(Entity::new_no_attrs(principal.clone(), parents));
        let entities = Entities::from_entities(entities, Some(&self.schema))
            .expect("role entities fit the schema");
        let request = Request::new(
            principal,
            uid("Vigil::Action", capability.as_str()),
            uid("Vigil::Platform", "vigil"),
            Context::empty(),
            Some(&self.schema),
        )
        .expect("capability requests fit the schema");
        Authorizer::new()
            .is_authorized(&request, &self.policies, &entities)
            .decision()
            == Decision::Allow
    }

    /// The decision, from the precomputed table.
    pub fn allows(&self, roles: RoleSet, capability: Capability) -> bool {
        self.table[roles.0 as usize * Capability::ALL.len() + capability as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_role_names_are_ignored() {
        let r = RoleSet::from_names(["admin", "wizard", " cashier ", ""]);
        assert_eq!(r, RoleSet::of(&[Role::Admin, Role::Cashier]));
    }

    #[test]
    fn a_policy_naming_an_unknown_action_is_refused_at_load() {
        let err = CapabilityPolicy::from_text(
            r#"permit (principal, action == Vigil::Action::"fly", resource);"#,
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
        let err = CapabilityPolicy::from_text("permit (principal, action").unwrap_err();
        assert!(matches!(err, PolicyError::Parse(_)), "{err}");
    }

    #[test]
    fn the_table_agrees_with_cedar_for_every_role_set_and_capability() {
        let p = CapabilityPolicy::shipped();
        for bits in 0..(1u16 << Role::ALL.len()) {
            for c in Capability::ALL {
                assert_eq!(
                    p.allows(RoleSet(bits as u8), *c),
                    p.evaluate(RoleSet(bits as u8), *c)
                );
            }
        }
    }

    #[test]
    fn no_role_means_no_capability() {
        let p = CapabilityPolicy::shipped();
        assert!(Capability::ALL
            .iter()
            .all(|c| !p.allows(RoleSet::EMPTY, *c)));
    }

    /// The table in docs/capabilities.md, parsed: (capability, allowed roles).
    fn documented_matrix() -> Vec<(Capability, Vec<Role>)> {
        let doc = include_str!("../../../docs/capabilities.md");
        let mut rows = doc.lines().filter(|l| l.starts_with('|'));
        let header: Vec<Role> = rows
            .next()
            .unwrap()
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .skip(1)
            .map(|s| Role::parse(s).unwrap())
            .collect();
        rows.skip(1)
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let cap = Capability::parse(cells[1])
                    .unwrap_or_else(|| panic!("unknown capability {:?} in the doc", cells[1]));
                let allowed = header
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| cells[i + 2] == "✓")
                    .map(|(_, r)| *r)
                    .collect();
                (cap, allowed)
            })
            .collect()
    }

    #[test]
    fn the_documented_matrix_is_the_policy_role_by_capability() {
        let p = CapabilityPolicy::shipped();
        let doc = documented_matrix();
        assert_eq!(
            doc.len(),
            Capability::ALL.len(),
            "every capability has a row"
        );
        for (cap, allowed) in doc {
            for role in Role::ALL {
                assert_eq!(
                    p.evaluate(RoleSet::of(&[*role]), cap),
                    allowed.contains(role),
                    "{role} / {cap}"
                );
            }
        }
    }
}
