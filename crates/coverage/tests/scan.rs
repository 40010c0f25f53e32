//! The scanner on fixture crates written the ways services are: routers nested across
//! modules, handlers in other modules, emitters a few calls down, audit layers, and
//! `audit:ignore` with and without a reason.

use std::path::PathBuf;
use vigil_coverage::{scan, Config, RouteStatus};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn status(r: &vigil_coverage::Report, method: &str, path: &str) -> RouteStatus {
    r.services
        .iter()
        .flat_map(|s| &s.routes)
        .find(|x| x.method == method && x.path == path)
        .unwrap_or_else(|| panic!("no {method} {path} in\n{}", r.table()))
        .status
}

#[test]
fn nested_routers_handlers_in_other_modules_and_layers_are_followed() {
    let r = scan(&fixture("shop"), &Config::default()).unwrap();
    let t = r.table();
    // Nested under /v1 from another module, emitting two calls down.
    assert_eq!(
        status(&r, "POST", "/v1/orders"),
        RouteStatus::Audited,
        "{t}"
    );
    // An emit inside a spawned task of the handler.
    assert_eq!(
        status(&r, "POST", "/v1/orders/{id}/notes"),
        RouteStatus::Audited,
        "{t}"
    );
    // A handler in another module that never emits.
    assert_eq!(status(&r, "POST", "/v1/carts"), RouteStatus::Missing, "{t}");
    assert_eq!(
        status(&r, "POST", "/v1/carts/{id}/checkout"),
        RouteStatus::Ignored,
        "{t}"
    );
    assert_eq!(
        status(&r, "DELETE", "/v1/orders/{id}"),
        RouteStatus::Ignored,
        "{t}"
    );
    assert_eq!(
        status(&r, "POST", "/admin/purge"),
        RouteStatus::Missing,
        "{t}"
    );
    // A layer covers what was added before it, also through a variable holding it.
    assert_eq!(status(&r, "PUT", "/settings"), RouteStatus::Audited, "{t}");
    assert_eq!(status(&r, "PATCH", "/profile"), RouteStatus::Audited, "{t}");
    assert_eq!(
        status(&r, "PUT", "/after-the-layer"),
        RouteStatus::Missing,
        "{t}"
    );
    // GET routes are not counted.
    assert!(!t.contains("GET"), "{t}");
    let shop = &r.services[0];
    assert_eq!(
        (shop.mutating, shop.audited, shop.ignored),
        (9, 4, 2),
        "{t}"
    );
    assert!((r.ratio - 4.0 / 7.0).abs() < 1e-9);
    assert!(!r.passed);
    assert!(r.clone().with_min(0.5).passed);
    let via = shop
        .routes
        .iter()
        .find(|x| x.path == "/v1/orders")
        .and_then(|x| x.via.clone())
        .unwrap();
    assert_eq!(via, "create → record → emit");
}

#[test]
fn depth_bounds_how_far_calls_are_followed() {
    let shallow = Config {
        depth: 0,
        ..Config::default()
    };
    let r = scan(&fixture("shop"), &shallow).unwrap();
    assert_eq!(status(&r, "POST", "/v1/orders"), RouteStatus::Missing);
}

#[test]
fn an_ignore_without_a_reason_is_refused_whatever_the_threshold() {
    let r = scan(&fixture("careless"), &Config::default())
        .unwrap()
        .with_min(0.0);
    assert_eq!(status(&r, "POST", "/things"), RouteStatus::InvalidIgnore);
    assert!(!r.passed);
    assert!(r.table().contains("needs a reason"));
}

#[test]
fn the_prometheus_textfile_has_a_ratio_per_service() {
    let r = scan(&fixture("shop"), &Config::default()).unwrap();
    let text = r.prometheus();
    assert!(
        text.contains("audit_coverage_ratio{service=\"shop\"} 0.5714"),
        "{text}"
    );
    assert!(text.contains("audit_coverage_routes{service=\"shop\",status=\"missing\"} 3"));
}

#[test]
fn a_config_file_sets_emitters_and_refuses_unknown_keys() {
    let c = Config::from_toml("emitters = [\"helper\"]\nmin = 0.5").unwrap();
    let r = scan(&fixture("shop"), &c).unwrap();
    assert_eq!(status(&r, "POST", "/v1/carts"), RouteStatus::Audited);
    assert!(Config::from_toml("emiters = []").is_err());
    assert!(Config::from_toml("min = 2.0").is_err());
}
