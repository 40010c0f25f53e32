//! The route table: which configured route a path belongs to, who may use it, and which
//! upstream takes the next request.

use crate::config::RouteConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use vigil_security::capability::Capability;

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone; no identity is looked at and no limit applies.
    Public,
    /// Any verified caller.
    Authenticated,
    /// A verified caller holding this capability.
    Capability(Capability),
}

/// One configured route.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) prefix: String,
    upstreams: Vec<String>,
    next: AtomicUsize,
    pub(crate) access: Access,
    pub(crate) strip_prefix: bool,
    /// The route's own per-tenant limit (requests per minute).
    pub(crate) rpm: Option<u32>,
}

impl Route {
    /// From a checked [`RouteConfig`] (`GatewayConfig::check` refused unknown capabilities).
    pub(crate) fn from_config(c: &RouteConfig) -> Route {
        Route {
            prefix: c.prefix.clone(),
            upstreams: c
                .upstreams
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
            access: match c.access.as_str() {
                "public" => Access::Public,
                "authenticated" => Access::Authenticated,
                cap => Access::Capability(
                    Capability::parse(cap).expect("checked by GatewayConfig::check"),
                ),
            },
            strip_prefix: c.strip_prefix,
            rpm: c.rpm,
        }
    }

    /// Does `path` fall under this route? A prefix matches at a segment boundary only:
    /// `/api` matches `/api` and `/api/x`, not `/apix`.
    fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && (self.prefix.ends_with('/')
                || path.len() == self.prefix.len()
                || path.as_bytes()[self.prefix.len()] == b'/')
    }

    /// The next upstream, round-robin.
    pub(crate) fn upstream(&self) -> &str {
        &self.upstreams[self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len()]
    }

    /// The path sent upstream: without the prefix when the route strips it (never empty).
    pub(crate) fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        let rest = if self.strip_prefix {
            path.strip_prefix(self.prefix.trim_end_matches('/'))
                .unwrap_or(path)
        } else {
            path
        };
        if rest.is_empty() {
            "/"
        } else {
            rest
        }
    }
}

/// The configured routes, longest prefix first.
#[derive(Debug)]
pub(crate) struct RouteTable(Vec<Route>);

impl RouteTable {
    pub(crate) fn new(routes: &[RouteConfig]) -> RouteTable {
        let mut routes: Vec<Route> = routes.iter().map(Route::from_config).collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable(routes)
    }

    /// The most specific route for `path`.
    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| r.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str, upstreams: &[&str], access: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            upstreams: upstreams.iter().map(|u| (*u).to_owned()).collect(),
            access: access.into(),
            strip_prefix: strip,
            rpm: None,
        }
    }

    #[test]
    fn the_longest_prefix_wins_at_a_segment_boundary() {
        let t = RouteTable::new(&[
            config("/", &["http://a"], "public", false),
            config("/api", &["http://b"], "authenticated", false),
            config("/api/admin", &["http://c"], "audit_admin", false),
        ]);
        assert_eq!(t.find("/api/admin/x").unwrap().prefix, "/api/admin");
        assert_eq!(t.find("/api/adminx").unwrap().prefix, "/api");
        assert_eq!(t.find("/api").unwrap().prefix, "/api");
        assert_eq!(t.find("/apix").unwrap().prefix, "/");
        assert_eq!(
            t.find("/api/admin").unwrap().access,
            Access::Capability(Capability::AuditAdmin)
        );
        let only_api = RouteTable::new(&[config("/api", &["http://b"], "public", false)]);
        assert!(only_api.find("/other").is_none());
    }

    #[test]
    fn upstreams_take_turns_and_lose_their_trailing_slash() {
        let t = RouteTable::new(&[config("/", &["http://a/", "http://b"], "public", false)]);
        let r = t.find("/x").unwrap();
        let turns: Vec<&str> = (0..4).map(|_| r.upstream()).collect();
        assert_eq!(turns, ["http://a", "http://b", "http://a", "http://b"]);
    }

    #[test]
    fn a_stripped_prefix_leaves_a_path() {
        let t = RouteTable::new(&[
            config("/auth/", &["http://a"], "public", true),
            config("/keep", &["http://b"], "public", false),
        ]);
        let auth = t.find("/auth/v1/login").unwrap();
        assert_eq!(auth.upstream_path("/auth/v1/login"), "/v1/login");
        assert_eq!(auth.upstream_path("/auth"), "/");
        let keep = t.find("/keep/x").unwrap();
        assert_eq!(keep.upstream_path("/keep/x"), "/keep/x");
    }
}
