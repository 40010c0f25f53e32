//! The audit-coverage scanner behind `vigil coverage`.
//!
//! It parses a Rust codebase with `syn`, finds the axum routes each crate builds (router
//! builders, `nest`ed and `merge`d routers across modules, method routers such as
//! `get(a).post(b)`), keeps the mutating ones (POST, PUT, PATCH, DELETE, and `any`), and asks
//! of each: does the handler — or a function it calls in the same crate, up to a bounded
//! depth — emit an audit event (a configured emitter such as the producer's `emit`), or does
//! an audit layer (`AuditLayer`) wrap the route? A handler marked `// audit:ignore REASON`
//! is counted apart; the reason is required.
//!
//! It reads code, not behaviour: a call through a trait object or a function pointer is not
//! followed, and a call is resolved by name (and module, when the path names one), so
//! `depth` bounds how far a wrong guess can carry.
#![deny(missing_docs)]

mod config;
mod parse;
mod report;

pub use config::Config;
pub use report::{Report, RouteReport, RouteStatus, ServiceReport};

use parse::{Call, FnInfo, Handler};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// What went wrong scanning.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not Rust that `syn` parses.
    #[error("parsing {path}:{line}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// What `syn` said.
        message: String,
    },
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

/// A crate's functions, gathered from its files.
#[derive(Default)]
struct CrateFns {
    fns: Vec<(FnInfo, usize)>,
    files: Vec<(PathBuf, String)>,
}

/// Scans the Rust sources under `root`.
pub fn scan(root: &Path, config: &Config) -> Result<Report, CoverageError> {
    let mut crates: BTreeMap<String, CrateFns> = BTreeMap::new();
    let mut crate_of_dir: HashMap<PathBuf, Option<(String, PathBuf)>> = HashMap::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || (e.file_type().is_dir()
                        && matches!(
                            name.as_ref(),
                            "target" | "tests" | "benches" | "examples" | "node_modules"
                        )))
        });
    for entry in walker.filter_map(Result::ok) {
        let path = entry.path();
        if !entry.file_type().is_file() || path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let rel_text = rel.to_string_lossy();
        if config
            .exclude
            .iter()
            .any(|x| rel_text.starts_with(x.trim_start_matches("./")))
        {
            continue;
        }
        let Some((krate, src)) = crate_of(path, &mut crate_of_dir) else {
            continue;
        };
        let text = std::fs::read_to_string(path).map_err(|source| CoverageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let fns = parse::functions(&text, module_of(&src, path), &config.layers).map_err(|e| {
            CoverageError::Parse {
                path: path.to_path_buf(),
                line: e.span().start().line,
                message: e.to_string(),
            }
        })?;
        let c = crates.entry(krate).or_default();
        let file = c.files.len();
        c.files.push((rel.to_path_buf(), text));
        c.fns.extend(fns.into_iter().map(|f| (f, file)));
    }
    let mut services = Vec::new();
    for (name, c) in &crates {
        let routes = Resolver::new(c, config).routes();
        if !routes.is_empty() {
            services.push(ServiceReport::new(name.clone(), routes));
        }
    }
    Ok(Report::new(services, config.min))
}

/// The package a file belongs to (the nearest Cargo.toml with a `[package]`) and its `src`.
fn crate_of(
    file: &Path,
    cache: &mut HashMap<PathBuf, Option<(String, PathBuf)>>,
) -> Option<(String, PathBuf)> {
    let mut dir = file.parent()?;
    let mut seen = Vec::new();
    let found = loop {
        if let Some(hit) = cache.get(dir) {
            break hit.clone();
        }
        seen.push(dir.to_path_buf());
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let name = text
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string));
            if let Some(name) = name {
                break Some((name, dir.join("src")));
            }
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => break None,
        }
    };
    for d in seen {
        cache.insert(d, found.clone());
    }
    found
}

/// A file's module path inside its crate (`src/http/users.rs` → `http::users`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let Ok(rel) = file.strip_prefix(src) else {
        return Vec::new();
    };
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "lib" | "main" | "mod") {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn matches_emitter(call: &Call, emitter: &str) -> bool {
    let pattern: Vec<&str> = emitter.split("::").collect();
    if call.method {
        pattern.len() == 1 && call.segs.last().map(String::as_str) == Some(pattern[0])
    } else {
        call.segs.len() >= pattern.len()
            && call.segs[call.segs.len() - pattern.len()..]
                .iter()
                .zip(&pattern)
                .all(|(a, b)| a == b)
    }
}

struct Resolver<'a> {
    c: &'a CrateFns,
    config: &'a Config,
    by_name: HashMap<&'a str, Vec<usize>>,
}

/// A route with its full path, found while walking the router tree.
struct Mounted {
    method: String,
    path: String,
    handler: Handler,
    line: usize,
    end_line: usize,
    file: usize,
    layered: bool,
    caller: usize,
}

impl<'a> Resolver<'a> {
    fn new(c: &'a CrateFns, config: &'a Config) -> Resolver<'a> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (f, _)) in c.fns.iter().enumerate() {
            by_name.entry(f.name.as_str()).or_default().push(i);
        }
        Resolver { c, config, by_name }
    }

    /// The functions a call may mean: by name, narrowed by the type (`Type::f`) or module
    /// (`http::users::router`) its path names, else by the caller's module and file.
    fn resolve(&self, call: &Call, caller: usize) -> Vec<usize> {
        let Some(name) = call.segs.last() else {
            return Vec::new();
        };
        let Some(all) = self.by_name.get(name.as_str()) else {
            return Vec::new();
        };
        let fns = &self.c.fns;
        if call.method {
            let methods: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&i| fns[i].0.self_ty.is_some())
                .collect();
            // A name this common (new, get, insert…) says nothing about which one it is.
            return if methods.len() <= 4 {
                methods
            } else {
                Vec::new()
            };
        }
        let qualifier: Vec<&str> = call.segs[..call.segs.len() - 1]
            .iter()
            .map(String::as_str)
            .filter(|s| !matches!(*s, "crate" | "self" | "super" | "Self"))
            .collect();
        if let Some(ty) = qualifier
            .last()
            .filter(|t| t.starts_with(char::is_uppercase))
        {
            return all
                .iter()
                .copied()
                .filter(|&i| fns[i].0.self_ty.as_deref() == Some(*ty))
                .collect();
        }
        let free: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| fns[i].0.self_ty.is_none())
            .collect();
        let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
            free.iter().copied().filter(|&i| keep(i)).collect()
        };
        let narrowed = if !qualifier.is_empty() {
            pick(&|i| {
                fns[i]
                    .0
                    .module
                    .ends_with(&qualifier.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            })
        } else {
            let same_module = pick(&|i| fns[i].0.module == fns[caller].0.module);
            if same_module.is_empty() {
                pick(&|i| fns[i].1 == fns[caller].1)
            } else {
                same_module
            }
        };
        if narrowed.is_empty() {
            free
        } else {
            narrowed
        }
    }

    /// Every route, from the router functions nobody nests (the roots) down.
    fn routes(&self) -> Vec<RouteReport> {
        let fns = &self.c.fns;
        let mut nested: HashSet<usize> = HashSet::new();
        for (i, (f, _)) in fns.iter().enumerate() {
            for child in &f.children {
                nested.extend(self.resolve(
                    &Call {
                        segs: child.target.clone(),
                        method: false,
                    },
                    i,
                ));
            }
        }
        let mut mounted = Vec::new();
        for i in 0..fns.len() {
            if !nested.contains(&i) {
                self.mount(i, "", false, &mut vec![i], &mut mounted);
            }
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in mounted {
            if !matches!(
                m.method.as_str(),
                "POST" | "PUT" | "PATCH" | "DELETE" | "ANY"
            ) {
                continue;
            }
            if !seen.insert((m.method.clone(), m.path.clone())) {
                continue;
            }
            out.push(self.classify(m));
        }
        out
    }

    fn mount(
        &self,
        at: usize,
        prefix: &str,
        layered: bool,
        stack: &mut Vec<usize>,
        out: &mut Vec<Mounted>,
    ) {
        let (f, file) = &self.c.fns[at];
        for r in &f.routes {
            out.push(Mounted {
                method: r.method.clone(),
                path: format!("{prefix}{}", r.path),
                handler: r.handler.clone(),
                line: r.line,
                end_line: r.end_line,
                file: *file,
                layered: layered || r.layered,
                caller: at,
            });
        }
        for child in &f.children {
            let call = Call {
                segs: child.target.clone(),
                method: false,
            };
            for target in self.resolve(&call, at) {
                if stack.contains(&target) {
                    continue;
                }
                stack.push(target);
                self.mount(
                    target,
                    &format!("{prefix}{}", child.prefix),
                    layered || child.layered,
                    stack,
                    out,
                );
                stack.pop();
            }
        }
    }

    fn lines(&self, file: usize) -> Vec<&str> {
        self.c.files[file].1.lines().collect()
    }

    fn classify(&self, m: Mounted) -> RouteReport {
        let fns = &self.c.fns;
        let (handler_name, targets, inline_calls) = match &m.handler {
            Handler::Path(segs) => {
                let call = Call {
                    segs: segs.clone(),
                    method: false,
                };
                (segs.join("::"), self.resolve(&call, m.caller), Vec::new())
            }
            Handler::Inline(calls) => ("<closure>".to_string(), Vec::new(), calls.clone()),
            Handler::Other(text) => (text.clone(), Vec::new(), Vec::new()),
        };
        let (file, line) = match targets.first() {
            Some(&t) => (fns[t].1, fns[t].0.line),
            None => (m.file, m.line),
        };
        let mut report = RouteReport {
            method: m.method,
            path: m.path,
            handler: handler_name,
            file: self.c.files[file].0.display().to_string(),
            line,
            status: RouteStatus::Missing,
            via: None,
            reason: None,
        };
        // The comment may sit on the handler or on the `.route(` call.
        let ignore = parse::ignore_comment(&self.lines(file), line)
            .or_else(|| parse::ignore_comment(&self.lines(m.file), m.line))
            .or_else(|| parse::ignore_within(&self.lines(m.file), m.line, m.end_line));
        match ignore {
            Some(Ok(reason)) => {
                report.status = RouteStatus::Ignored;
                report.reason = Some(reason);
                return report;
            }
            Some(Err(())) => {
                report.status = RouteStatus::InvalidIgnore;
                report.reason = Some("audit:ignore needs a reason".into());
                return report;
            }
            None => {}
        }
        if m.layered {
            report.status = RouteStatus::Audited;
            report.via = Some(format!("layer ({})", self.config.layers.join(", ")));
            return report;
        }
        let emitter = |calls: &[Call]| -> Option<String> {
            calls.iter().find_map(|c| {
                self.config
                    .emitters
                    .iter()
                    .find(|e| matches_emitter(c, e))
                    .map(|_| c.segs.join("::"))
            })
        };
        if let Some(e) = emitter(&inline_calls) {
            report.status = RouteStatus::Audited;
            report.via = Some(e);
            return report;
        }
        // Breadth first from the handler (or the closure's calls), `depth` calls deep.
        let mut queue: VecDeque<(usize, usize)> = VecDeque::new();
        let mut parent: HashMap<usize, Option<usize>> = HashMap::new();
        for t in targets {
            parent.insert(t, None);
            queue.push_back((t, 0));
        }
        for c in &inline_calls {
            for t in self.resolve(c, m.caller) {
                if let std::collections::hash_map::Entry::Vacant(v) = parent.entry(t) {
                    v.insert(None);
                    queue.push_back((t, 1));
                }
            }
        }
        while let Some((at, depth)) = queue.pop_front() {
            if let Some(e) = emitter(&fns[at].0.calls) {
                let mut path = vec![e];
                let mut cur = Some(at);
                while let Some(i) = cur {
                    path.push(fns[i].0.name.clone());
                    cur = parent.get(&i).copied().flatten();
                }
                path.reverse();
                report.status = RouteStatus::Audited;
                report.via = Some(path.join(" → "));
                return report;
            }
            if depth >= self.config.depth {
                continue;
            }
            for c in &fns[at].0.calls {
                for t in self.resolve(c, at) {
                    if let std::collections::hash_map::Entry::Vacant(v) = parent.entry(t) {
                        v.insert(Some(at));
                        queue.push_back((t, depth + 1));
                    }
                }
            }
        }
        report
    }
}
