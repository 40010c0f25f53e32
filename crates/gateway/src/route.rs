//! The route table: which configured route a path belongs to, who may use it, and which
//! upstream takes the next request.

use crate::config::RouteConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use vigil_security::capability::Capability;

/// Milliseconds on a clock of the process's own (monotonic).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One upstream of a route, in rotation or out of it.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Its base URL, without a trailing slash.
    pub(crate) base: String,
    /// Out of rotation until this [`now_ms`] (0: in rotation; `u64::MAX`: until a health
    /// probe finds it ready).
    down_until: AtomicU64,
}

impl Upstream {
    fn new(base: &str) -> Upstream {
        Upstream {
            base: base.trim_end_matches('/').to_owned(),
            down_until: AtomicU64::new(0),
        }
    }

    fn in_rotation(&self, now: u64) -> bool {
        self.down_until.load(Ordering::Relaxed) <= now
    }

    /// Out of rotation for `d`: it refused a connection (a probe that finds it ready puts it
    /// back sooner).
    pub(crate) fn eject(&self, d: Duration) {
        self.down_until
            .fetch_max(now_ms() + d.as_millis() as u64, Ordering::Relaxed);
    }

    /// What a health probe found.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.down_until
            .store(if ready { 0 } else { u64::MAX }, Ordering::Relaxed);
    }

    /// In rotation now?
    pub(crate) fn is_up(&self) -> bool {
        self.in_rotation(now_ms())
    }
}

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
    upstreams: Vec<Upstream>,
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
            upstreams: c.upstreams.iter().map(|u| Upstream::new(u)).collect(),
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

    /// The next upstream in rotation, round-robin; when none is, the next one all the same
    /// (an answer from a struggling upstream beats a certain 502).
    pub(crate) fn upstream(&self) -> &Upstream {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .find(|u| u.in_rotation(now))
            .unwrap_or(&self.upstreams[start % n])
    }

    /// Every upstream of the route.
    pub(crate) fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
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

    /// Every route.
    pub(crate) fn all(&self) -> &[Route] {
        &self.0
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
        let turns: Vec<&str> = (0..4).map(|_| r.upstream().base.as_str()).collect();
        assert_eq!(turns, ["http://a", "http://b", "http://a", "http://b"]);
    }

    #[test]
    fn upstreams_out_of_rotation_are_skipped_until_back_or_all_are_out() {
        let t = RouteTable::new(&[config("/", &["http://a", "http://b"], "public", false)]);
        let r = t.find("/x").unwrap();
        let [a, b] = r.upstreams() else { panic!() };
        a.eject(Duration::from_secs(60));
        let turns: Vec<&str> = (0..4).map(|_| r.upstream().base.as_str()).collect();
        assert_eq!(turns, ["http://b"; 4]);
        // A probe that finds it ready puts it back before the ejection ends.
        a.set_ready(true);
        assert!(a.is_up());
        let turns: Vec<&str> = (0..2).map(|_| r.upstream().base.as_str()).collect();
        assert!(turns.contains(&"http://a") && turns.contains(&"http://b"));
        // Every upstream out: they still take turns (a slow answer beats a certain 502).
        a.set_ready(false);
        b.set_ready(false);
        let turns: Vec<&str> = (0..2).map(|_| r.upstream().base.as_str()).collect();
        assert!(turns.contains(&"http://a") && turns.contains(&"http://b"));
        // An ejection shorter than a probe's verdict does not shorten it.
        b.eject(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!b.is_up());
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
