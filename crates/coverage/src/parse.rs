//! What one source file holds that the scanner needs: its functions (with the calls each
//! makes) and the axum routes and nested routers each function builds.

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, ExprMethodCall, Token};

/// A call a function makes: a path (`events::event`, `Self::store`) or a method (`.emit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) segs: Vec<String>,
    pub(crate) method: bool,
}

/// What handles a route.
#[derive(Debug, Clone)]
pub(crate) enum Handler {
    /// A function named by path.
    Path(Vec<String>),
    /// A closure: the calls in its body.
    Inline(Vec<Call>),
    /// Anything else (a service, a variable), shown as written.
    Other(String),
}

/// `.route(path, method(handler))`, one per method.
#[derive(Debug, Clone)]
pub(crate) struct RouteDef {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) handler: Handler,
    pub(crate) line: usize,
    /// The last line of the `.route(…)` call.
    pub(crate) end_line: usize,
    pub(crate) layered: bool,
}

/// `.nest(prefix, f())` or `.merge(f())`: the routes `f` builds, under `prefix`.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub(crate) prefix: String,
    pub(crate) target: Vec<String>,
    pub(crate) layered: bool,
}

/// A function (free, or a method of `self_ty`).
#[derive(Debug, Clone)]
pub(crate) struct FnInfo {
    pub(crate) name: String,
    pub(crate) module: Vec<String>,
    pub(crate) self_ty: Option<String>,
    pub(crate) line: usize,
    pub(crate) calls: Vec<Call>,
    pub(crate) routes: Vec<RouteDef>,
    pub(crate) children: Vec<Child>,
}

const METHODS: [&str; 10] = [
    "get", "head", "options", "trace", "post", "put", "patch", "delete", "any", "connect",
];

/// Parses `source` (a file of module `module`) into its functions.
pub(crate) fn functions(
    source: &str,
    module: Vec<String>,
    layers: &[String],
) -> Result<Vec<FnInfo>, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut imports = std::collections::HashMap::new();
    for item in &file.items {
        if let syn::Item::Use(u) = item {
            flatten_use(&u.tree, &mut Vec::new(), &mut imports);
        }
    }
    let mut v = FileVisitor {
        module,
        self_ty: None,
        layers,
        out: Vec::new(),
    };
    v.visit_file(&file);
    // `use crate::events::event;` then `event(…)` is a call of `crate::events::event`.
    let expand = |segs: &mut Vec<String>| {
        if let Some(full) = segs.first().and_then(|f| imports.get(f)) {
            let mut path: Vec<String> = full.clone();
            path.extend(segs.drain(1..));
            *segs = path;
        }
    };
    for f in &mut v.out {
        for c in f.calls.iter_mut().filter(|c| !c.method) {
            expand(&mut c.segs);
        }
        for r in &mut f.routes {
            match &mut r.handler {
                Handler::Path(segs) => expand(segs),
                Handler::Inline(calls) => {
                    for c in calls.iter_mut().filter(|c| !c.method) {
                        expand(&mut c.segs);
                    }
                }
                Handler::Other(_) => {}
            }
        }
        for c in &mut f.children {
            expand(&mut c.target);
        }
    }
    Ok(v.out)
}

/// The names a `use` brings into scope, with the paths they stand for.
fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut std::collections::HashMap<String, Vec<String>>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident != "self" => {
            let mut full = prefix.clone();
            full.push(n.ident.to_string());
            out.insert(n.ident.to_string(), full);
        }
        syn::UseTree::Name(_) => {
            if let Some(last) = prefix.last() {
                out.insert(last.clone(), prefix.clone());
            }
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.insert(r.rename.to_string(), full);
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
        syn::UseTree::Glob(_) => {}
    }
}

struct FileVisitor<'a> {
    module: Vec<String>,
    self_ty: Option<String>,
    layers: &'a [String],
    out: Vec<FnInfo>,
}

impl FileVisitor<'_> {
    fn function(&mut self, name: &syn::Ident, block: &syn::Block) {
        let mut body = BodyVisitor {
            layers: self.layers,
            layer_vars: Vec::new(),
            calls: Vec::new(),
            routes: Vec::new(),
            children: Vec::new(),
        };
        body.visit_block(block);
        self.out.push(FnInfo {
            name: name.to_string(),
            module: self.module.clone(),
            self_ty: self.self_ty.clone(),
            line: name.span().start().line,
            calls: body.calls,
            routes: body.routes,
            children: body.children,
        });
    }
}

impl<'ast> Visit<'ast> for FileVisitor<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        let ty = match &*i.self_ty {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        };
        let outer = std::mem::replace(&mut self.self_ty, ty);
        visit::visit_item_impl(self, i);
        self.self_ty = outer;
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        let outer = self.self_ty.replace(t.ident.to_string());
        visit::visit_item_trait(self, t);
        self.self_ty = outer;
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let outer = self.self_ty.take();
        self.function(&f.sig.ident, &f.block);
        self.self_ty = outer;
        // Items nested in the body (fns inside fns) are functions of their own.
        for stmt in &f.block.stmts {
            if let syn::Stmt::Item(item) = stmt {
                self.visit_item(item);
            }
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.function(&f.sig.ident, &f.block);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(b) = &f.default {
            self.function(&f.sig.ident, b);
        }
    }
}

/// Collects a body's calls and the routers it builds.
struct BodyVisitor<'a> {
    layers: &'a [String],
    layer_vars: Vec<String>,
    calls: Vec<Call>,
    routes: Vec<RouteDef>,
    children: Vec<Child>,
}

fn path_segs(p: &syn::Path) -> Vec<String> {
    p.segments.iter().map(|s| s.ident.to_string()).collect()
}

fn string_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.value()),
        Expr::Group(g) => string_lit(&g.expr),
        Expr::Paren(p) => string_lit(&p.expr),
        _ => None,
    }
}

/// Calls inside an expression (a closure's body, a macro's arguments).
fn calls_in(e: &Expr, layers: &[String]) -> Vec<Call> {
    let mut v = BodyVisitor {
        layers,
        layer_vars: Vec::new(),
        calls: Vec::new(),
        routes: Vec::new(),
        children: Vec::new(),
    };
    v.visit_expr(e);
    v.calls
}

/// The method chain `a.b(..).c(..)` as its links, innermost first, and its base `a`.
fn chain(outer: &ExprMethodCall) -> (Vec<&ExprMethodCall>, &Expr) {
    let mut links = vec![outer];
    let mut base = &*outer.receiver;
    while let Expr::MethodCall(m) = base {
        links.push(m);
        base = &*m.receiver;
    }
    links.reverse();
    (links, base)
}

fn is_router_link(m: &ExprMethodCall) -> bool {
    matches!(
        m.method.to_string().as_str(),
        "route" | "nest" | "merge" | "route_service" | "nest_service"
    )
}

impl BodyVisitor<'_> {
    fn names_layer(&self, e: &Expr) -> bool {
        if let Expr::Path(p) = e {
            if let Some(id) = p.path.get_ident() {
                if self.layer_vars.contains(&id.to_string()) {
                    return true;
                }
            }
        }
        let text = e.to_token_stream().to_string();
        self.layers.iter().any(|l| text.contains(l.as_str()))
    }

    /// `get(h).post(h2)`, `axum::routing::post(h)`, `on(MethodFilter::POST, h)`.
    fn method_handlers(&self, e: &Expr, out: &mut Vec<(String, Handler)>) {
        match e {
            Expr::MethodCall(m) => {
                let name = m.method.to_string();
                if METHODS.contains(&name.as_str()) && m.args.len() == 1 {
                    out.push((name, self.handler(&m.args[0])));
                } else if name == "on" && m.args.len() == 2 {
                    self.filtered(&m.args[0], &m.args[1], out);
                }
                self.method_handlers(&m.receiver, out);
            }
            Expr::Call(c) => {
                let Expr::Path(f) = &*c.func else { return };
                let Some(last) = f.path.segments.last() else {
                    return;
                };
                let name = last.ident.to_string();
                let base = name.strip_suffix("_service").unwrap_or(&name);
                if METHODS.contains(&base) && c.args.len() == 1 {
                    out.push((base.to_string(), self.handler(&c.args[0])));
                } else if name == "on" && c.args.len() == 2 {
                    self.filtered(&c.args[0], &c.args[1], out);
                }
            }
            Expr::Paren(p) => self.method_handlers(&p.expr, out),
            _ => {}
        }
    }

    fn filtered(&self, filter: &Expr, h: &Expr, out: &mut Vec<(String, Handler)>) {
        let text = filter.to_token_stream().to_string();
        for m in METHODS {
            if text.contains(&m.to_uppercase()) {
                out.push((m.to_string(), self.handler(h)));
            }
        }
    }

    fn handler(&self, e: &Expr) -> Handler {
        match e {
            Expr::Path(p) => Handler::Path(path_segs(&p.path)),
            Expr::Closure(c) => Handler::Inline(calls_in(&c.body, self.layers)),
            other => Handler::Other(other.to_token_stream().to_string()),
        }
    }

    /// A router chain: its routes, nested routers and audit layers, in order.
    fn router_chain(&mut self, outer: &ExprMethodCall, prefix: &str) {
        let (links, base) = chain(outer);
        let first_route = self.routes.len();
        let first_child = self.children.len();
        match base {
            Expr::Call(c) => {
                if let Expr::Path(f) = &*c.func {
                    let segs = path_segs(&f.path);
                    if !matches!(segs.last().map(String::as_str), Some("new" | "default")) {
                        self.children.push(Child {
                            prefix: prefix.to_string(),
                            target: segs,
                            layered: false,
                        });
                    }
                }
                for a in &c.args {
                    self.visit_expr(a);
                }
            }
            other => self.visit_expr(other),
        }
        for link in links {
            let name = link.method.to_string();
            let args: Vec<&Expr> = link.args.iter().collect();
            match (name.as_str(), args.as_slice()) {
                ("route" | "route_service", [path, mr]) => {
                    let path = string_lit(path).unwrap_or_else(|| "<dynamic>".into());
                    let mut handlers = Vec::new();
                    self.method_handlers(mr, &mut handlers);
                    for (method, handler) in handlers {
                        self.routes.push(RouteDef {
                            method: method.to_uppercase(),
                            path: format!("{prefix}{path}"),
                            handler,
                            line: link.method.span().start().line,
                            end_line: syn::spanned::Spanned::span(link).end().line,
                            layered: false,
                        });
                    }
                    self.visit_expr(mr);
                }
                ("nest" | "nest_service", [p, child]) => {
                    let p = format!(
                        "{prefix}{}",
                        string_lit(p).unwrap_or_else(|| "<dynamic>".into())
                    );
                    self.child(child, &p);
                }
                ("merge", [child]) => self.child(child, prefix),
                ("layer" | "route_layer", [layer]) => {
                    if self.names_layer(layer) {
                        let routes_from = if matches!(base, Expr::Path(_)) {
                            0
                        } else {
                            first_route
                        };
                        let children_from = if matches!(base, Expr::Path(_)) {
                            0
                        } else {
                            first_child
                        };
                        self.routes[routes_from..]
                            .iter_mut()
                            .for_each(|r| r.layered = true);
                        self.children[children_from..]
                            .iter_mut()
                            .for_each(|c| c.layered = true);
                    }
                    self.visit_expr(layer);
                }
                _ => {
                    self.calls.push(Call {
                        segs: vec![name],
                        method: true,
                    });
                    for a in args {
                        self.visit_expr(a);
                    }
                }
            }
        }
    }

    fn child(&mut self, child: &Expr, prefix: &str) {
        match child {
            Expr::Call(c) => {
                if let Expr::Path(f) = &*c.func {
                    self.children.push(Child {
                        prefix: prefix.to_string(),
                        target: path_segs(&f.path),
                        layered: false,
                    });
                }
                for a in &c.args {
                    self.visit_expr(a);
                }
            }
            Expr::MethodCall(m) if chain(m).0.iter().any(|l| is_router_link(l)) => {
                self.router_chain(m, prefix)
            }
            other => self.visit_expr(other),
        }
    }
}

impl<'ast> Visit<'ast> for BodyVisitor<'_> {
    fn visit_local(&mut self, l: &'ast syn::Local) {
        if let (syn::Pat::Ident(p), Some(init)) = (&l.pat, &l.init) {
            if self.names_layer(&init.expr) {
                self.layer_vars.push(p.ident.to_string());
            }
        }
        visit::visit_local(self, l);
    }

    fn visit_expr_call(&mut self, c: &'ast ExprCall) {
        if let Expr::Path(p) = &*c.func {
            self.calls.push(Call {
                segs: path_segs(&p.path),
                method: false,
            });
        }
        visit::visit_expr_call(self, c);
    }

    fn visit_expr_method_call(&mut self, m: &'ast ExprMethodCall) {
        if chain(m).0.iter().any(|l| is_router_link(l)) {
            self.router_chain(m, "");
            return;
        }
        self.calls.push(Call {
            segs: vec![m.method.to_string()],
            method: true,
        });
        visit::visit_expr_method_call(self, m);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Most macros take expressions (`vec!`, `assert!`, `format!`…): look inside them.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for a in &args {
                self.visit_expr(a);
            }
        }
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {
        // Items inside a body are functions of their own (see FileVisitor).
    }
}

/// An `// audit:ignore REASON` comment anywhere in lines `from..=to` (1-based): inside a
/// `.route(…)` call, say, above the method router it exempts.
pub(crate) fn ignore_within(lines: &[&str], from: usize, to: usize) -> Option<Result<String, ()>> {
    (from..=to).find_map(|l| {
        let text = lines.get(l.checked_sub(1)?)?;
        let at = text.find("//")?;
        text[at..]
            .contains("audit:ignore")
            .then(|| ignore_comment(lines, l))
            .flatten()
    })
}

/// The `// audit:ignore REASON` comment on the lines just above `line` (1-based) or at its
/// end: `Some(Ok(reason))`, `Some(Err(()))` when the reason is missing, `None` when absent.
pub(crate) fn ignore_comment(lines: &[&str], line: usize) -> Option<Result<String, ()>> {
    let marker = "audit:ignore";
    let parse = |l: &str| -> Option<Result<String, ()>> {
        let at = l.find("//")?;
        let comment = l[at..]
            .trim_start_matches('/')
            .trim_start_matches('!')
            .trim();
        let rest = comment.strip_prefix(marker)?;
        let reason = rest.trim().trim_start_matches([':', '-']).trim();
        Some(if reason.is_empty() {
            Err(())
        } else {
            Ok(reason.to_string())
        })
    };
    if let Some(found) = lines.get(line.wrapping_sub(1)).and_then(|l| parse(l)) {
        return Some(found);
    }
    // Upwards over comments, doc comments and attributes (a multi-line attribute such as
    // `#[utoipa::path(…)]` is skipped whole).
    let mut in_attribute = false;
    let mut i = line.checked_sub(1)?;
    while i > 0 {
        i -= 1;
        let l = lines.get(i)?.trim();
        if l.starts_with("//") {
            if let Some(found) = parse(l) {
                return Some(found);
            }
        } else if l.starts_with("#[") {
            in_attribute = false;
        } else if l.ends_with(']') {
            in_attribute = true;
        } else if !in_attribute {
            return None;
        }
    }
    None
}
