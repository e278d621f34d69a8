//! Dependencies in `monitor/src` point one way: no module imports a module that imports it
//! back, and `model` (the shared types) imports no other module of the crate. The graph is
//! built from the source text: every `crate::`, `super::` and imported-name path outside
//! `#[cfg(test)]` code, per top-level module, with `output/*` and `report/*` split into their
//! submodules. The source is tokenised by proc-macro2, so comments, doc links and string
//! contents never count as imports, and paths in attributes and macro calls do.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Modules whose submodules are nodes of their own (each one job, rendered side by side).
const SPLIT: &[&str] = &["output", "report"];
/// The bottom layer: shared types only.
const MODEL: &str = "model";

/// `from -> to`, with the first file and path that made the edge (for the failure message).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn monitor_src_has_no_module_cycles() {
    let graph = graph(&src_dir());
    // The scan must see the pipeline, or an empty graph would pass.
    for (from, to) in [
        ("live", "collector"),
        ("tui", "snapshot"),
        ("report", "record"),
    ] {
        assert!(
            graph.get(from).is_some_and(|t| t.contains_key(to)),
            "the scan missed the edge {from} -> {to}; graph: {graph:#?}"
        );
    }
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "module import cycles in monitor/src:\n{}",
        cycles
            .iter()
            .map(|c| describe(&graph, c))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn model_imports_no_other_module() {
    let graph = graph(&src_dir());
    let above: Vec<String> = graph
        .get(MODEL)
        .map(|t| {
            t.iter()
                .map(|(to, why)| format!("model -> {to} ({why})"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        src_dir().join("model.rs").exists() || src_dir().join("model/mod.rs").exists(),
        "monitor/src/model.rs (the shared types) is missing"
    );
    assert!(
        above.is_empty(),
        "model imports above itself:\n{}",
        above.join("\n")
    );
}

/// The report and the TUI are two outputs side by side: what both need (formatters) sits
/// below them in `format`, not borrowed from one by the other.
#[test]
fn the_report_and_the_tui_import_neither_each_other() {
    let graph = graph(&src_dir());
    let is = |n: &str, m: &str| n == m || n.starts_with(&format!("{m}::"));
    let across: Vec<String> = graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |(t, why)| (from, t, why)))
        .filter(|(f, t, _)| (is(f, "report") && is(t, "tui")) || (is(f, "tui") && is(t, "report")))
        .map(|(f, t, why)| format!("{f} -> {t} ({why})"))
        .collect();
    assert!(across.is_empty(), "{}", across.join("\n"));
}

/// One name per concept: no two public types (struct, enum, trait, type alias) of one name in
/// `monitor/src`, outside test code, so a name found in a file means one thing.
#[test]
fn no_two_public_types_share_a_name() {
    let src = src_dir();
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let tests = test_only_files(&src, &files);
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files.iter().filter(|f| !tests.contains(*f)) {
        let text = fs::read_to_string(f).expect("readable source");
        let ts = TokenStream::from_str(&text).expect("source tokenises");
        let shown = f.strip_prefix(&src).unwrap_or(f).display().to_string();
        for name in public_types(&ts.into_iter().collect::<Vec<_>>()) {
            by_name.entry(name).or_default().push(shown.clone());
        }
    }
    assert!(
        by_name.len() > 50,
        "the scan found too few public types to be reading the sources: {by_name:?}"
    );
    let twice: Vec<String> = by_name
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(n, at)| format!("{n}: {}", at.join(", ")))
        .collect();
    assert!(
        twice.is_empty(),
        "public types of one name:\n{}",
        twice.join("\n")
    );
}

/// Names of the types declared `pub` (or `pub(crate)`...) in `toks`, nested modules
/// included, `#[cfg(test)]` items left out.
fn public_types(toks: &[TokenTree]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(toks, i) {
            // Skip the attribute and the item it marks, up to its body or `;`.
            i += 2;
            while i < toks.len() {
                let end = matches!(&toks[i], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
                    || matches!(&toks[i], TokenTree::Punct(p) if p.as_char() == ';');
                i += 1;
                if end {
                    break;
                }
            }
            continue;
        }
        match &toks[i] {
            TokenTree::Ident(id) if id == "pub" => {
                let mut j = i + 1;
                if matches!(toks.get(j), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                {
                    j += 1;
                }
                if let (Some(TokenTree::Ident(kw)), Some(TokenTree::Ident(name))) =
                    (toks.get(j), toks.get(j + 1))
                {
                    if ["struct", "enum", "trait", "type"].contains(&kw.to_string().as_str()) {
                        out.push(name.to_string());
                    }
                }
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                out.extend(public_types(&g.stream().into_iter().collect::<Vec<_>>()));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Test modules are left out of the layering, declared plainly or with a `#[path]`.
#[test]
fn test_modules_are_found_with_or_without_a_path() {
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    fs::create_dir_all(dir.join("output")).expect("temp dir");
    let metrics = dir.join("output/metrics.rs");
    let text = "fn f() {}\n#[cfg(test)]\n#[path = \"metrics_tests.rs\"]\nmod tests;\n";
    fs::write(&metrics, text).expect("write");
    let module = dir.join("output/mod.rs");
    fs::write(&module, "mod metrics;\n#[cfg(test)]\nmod tests;\n").expect("write");
    let found = test_only_files(&dir, &[metrics, module]);
    let _ = fs::remove_dir_all(&dir);
    assert!(
        found.contains(&dir.join("output/metrics_tests.rs")),
        "{found:?}"
    );
    assert!(found.contains(&dir.join("output/tests.rs")), "{found:?}");
    assert!(!found.contains(&dir.join("output/metrics.rs")), "{found:?}");
}

#[test]
fn the_scan_resolves_paths_and_names_a_cycle() {
    let subs: BTreeMap<String, BTreeSet<String>> = [(
        "output".to_string(),
        ["json", "http"].iter().map(|s| s.to_string()).collect(),
    )]
    .into();
    let mut g = Graph::new();
    let src = r#"
        //! crate::tui is named in a comment only
        use crate::{alerts::{self, Level}, output::{json, http::serve}};
        use super::sibling;
        fn f() { let _ = "crate::live"; json::line(); format!("{}", crate::error::x()); }
        #[cfg(test)]
        mod tests { use crate::demo; }
    "#;
    scan_file(&mut g, &subs, "snapshot", &["snapshot"], src);
    let to: Vec<&str> = g["snapshot"].keys().map(String::as_str).collect();
    assert_eq!(
        to,
        ["alerts", "error", "output::http", "output::json", "sibling"]
    );
    scan_file(
        &mut g,
        &subs,
        "output::json",
        &["output", "json"],
        "use super::super::snapshot;",
    );
    scan_file(
        &mut g,
        &subs,
        "alerts",
        &["alerts"],
        "fn g() { crate::output::json::x() }",
    );
    let c = cycles(&g);
    assert_eq!(c.len(), 1, "{c:?}");
    let text = describe(&g, &c[0]);
    assert!(
        text.contains("in one cycle: alerts, output::json, snapshot"),
        "{text}"
    );
    assert!(
        text.contains("alerts -> output::json -> snapshot -> alerts"),
        "{text}"
    );
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Submodules of each split module, from the file system.
fn submodules(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    SPLIT
        .iter()
        .map(|m| {
            let names = fs::read_dir(src.join(m))
                .map(|d| {
                    d.filter_map(|e| {
                        let e = e.ok()?;
                        let name = e.file_name().to_string_lossy().into_owned();
                        let stem = name.strip_suffix(".rs").unwrap_or(&name).to_string();
                        (stem != "mod").then_some(stem)
                    })
                    .collect()
                })
                .unwrap_or_default();
            (m.to_string(), names)
        })
        .collect()
}

fn graph(src: &Path) -> Graph {
    let subs = submodules(src);
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let tests = test_only_files(src, &files);
    let mut g = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        if tests.contains(&file) || rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        // The module path of the file: `a/b.rs` and `a/b/mod.rs` are both `a::b`.
        let mut path: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if path.last().is_some_and(|l| l == "mod") {
            path.pop();
        }
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let node = node_of(&subs, &refs);
        let text = fs::read_to_string(&file).expect("readable source");
        let shown = rel.display().to_string();
        scan_file_named(&mut g, &subs, &node, &refs, &text, &shown);
    }
    // A split module holds its submodules: `output` is above `output::http`, so a helper
    // in output/mod.rs that a submodule's dependency uses closes a cycle.
    for (top, children) in &subs {
        for c in children {
            g.entry(top.clone())
                .or_default()
                .insert(format!("{top}::{c}"), format!("{top}/mod.rs: mod {c}"));
        }
    }
    if std::env::var_os("LAYERS_SHOW").is_some() {
        for (from, to) in &g {
            for (t, why) in to {
                eprintln!("{from} -> {t}    {why}");
            }
        }
    }
    g
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("readable src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Files declared `#[cfg(test)] mod name;` (or `#[cfg(test)] #[path = "file.rs"] mod
/// name;`, the file beside the declaring one): test code, not part of the layering.
fn test_only_files(src: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let Ok(ts) = TokenStream::from_str(&fs::read_to_string(f).unwrap_or_default()) else {
            continue;
        };
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        let dir = match f.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => f.parent().unwrap_or(src).to_path_buf(),
            _ => f.with_extension(""),
        };
        for i in 0..toks.len() {
            if let Some(file) = cfg_test_path(&toks, i) {
                out.insert(f.parent().unwrap_or(src).join(file));
            }
            if is_cfg_test(&toks, i) {
                if let (Some(TokenTree::Ident(m)), Some(TokenTree::Ident(name))) =
                    (toks.get(i + 2), toks.get(i + 3))
                {
                    if m == "mod"
                        && matches!(toks.get(i + 4), Some(TokenTree::Punct(p)) if p.as_char() == ';')
                    {
                        out.insert(dir.join(format!("{name}.rs")));
                        out.insert(dir.join(name.to_string()).join("mod.rs"));
                    }
                }
            }
        }
    }
    out
}

/// The file of `#[cfg(test)] #[path = "file.rs"] mod name;` starting at token `i`.
fn cfg_test_path(toks: &[TokenTree], i: usize) -> Option<String> {
    if !is_cfg_test(toks, i) {
        return None;
    }
    let (Some(TokenTree::Punct(hash)), Some(TokenTree::Group(g))) =
        (toks.get(i + 2), toks.get(i + 3))
    else {
        return None;
    };
    let attr: Vec<TokenTree> = g.stream().into_iter().collect();
    let is_mod = matches!(toks.get(i + 4), Some(TokenTree::Ident(m)) if m == "mod");
    match (hash.as_char(), g.delimiter(), attr.as_slice(), is_mod) {
        (
            '#',
            Delimiter::Bracket,
            [TokenTree::Ident(p), TokenTree::Punct(eq), TokenTree::Literal(l)],
            true,
        ) if p == "path" && eq.as_char() == '=' => {
            Some(l.to_string().trim_matches('"').to_string())
        }
        _ => None,
    }
}

/// `#[cfg(test)]` starting at token `i`.
fn is_cfg_test(toks: &[TokenTree], i: usize) -> bool {
    matches!(&toks[i], TokenTree::Punct(p) if p.as_char() == '#')
        && matches!(toks.get(i + 1), Some(TokenTree::Group(g))
            if g.delimiter() == Delimiter::Bracket
                && g.stream().to_string().replace(' ', "") == "cfg(test)")
}

/// The graph node of a module path: its top-level module, or `top::sub` for split modules.
fn node_of(subs: &BTreeMap<String, BTreeSet<String>>, path: &[&str]) -> String {
    match path {
        [top, sub, ..] if subs.get(*top).is_some_and(|s| s.contains(*sub)) => {
            format!("{top}::{sub}")
        }
        [top, ..] => top.to_string(),
        [] => String::new(),
    }
}

fn scan_file(
    g: &mut Graph,
    subs: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    module: &[&str],
    text: &str,
) {
    scan_file_named(g, subs, node, module, text, "test input");
}

fn scan_file_named(
    g: &mut Graph,
    subs: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    module: &[&str],
    text: &str,
    shown: &str,
) {
    let ts =
        TokenStream::from_str(text).unwrap_or_else(|e| panic!("{shown}: does not tokenise: {e}"));
    let mut scan = Scan {
        module: module.iter().map(|s| s.to_string()).collect(),
        aliases: HashMap::new(),
        paths: Vec::new(),
    };
    // A module's own children are in scope by their bare names.
    if let Some(children) = module
        .first()
        .and_then(|t| subs.get(*t))
        .filter(|_| module.len() == 1)
    {
        for c in children {
            scan.aliases
                .insert(c.clone(), vec![module[0].to_string(), c.clone()]);
        }
    }
    let toks: Vec<TokenTree> = ts.into_iter().collect();
    // Two passes: the first learns the names `use` brings in, the second resolves them.
    scan.walk(&toks, true);
    scan.paths.clear();
    scan.walk(&toks, false);
    for p in &scan.paths {
        let refs: Vec<&str> = p.iter().map(String::as_str).collect();
        let to = node_of(subs, &refs);
        if to.is_empty() || to == node {
            continue;
        }
        g.entry(node.to_string())
            .or_default()
            .entry(to)
            .or_insert_with(|| format!("{shown}: crate::{}", p.join("::")));
    }
}

struct Scan {
    /// The file's module path from the crate root.
    module: Vec<String>,
    /// Names brought in by `use crate::...` / `use super::...`, to their full paths.
    aliases: HashMap<String, Vec<String>>,
    /// Crate-absolute paths referenced.
    paths: Vec<Vec<String>>,
}

impl Scan {
    fn walk(&mut self, toks: &[TokenTree], learn: bool) {
        let mut i = 0;
        while i < toks.len() {
            if is_cfg_test(toks, i) {
                i = skip_item(toks, i + 2);
                continue;
            }
            let after_colons = i >= 2 && is_colons(toks, i - 2);
            match &toks[i] {
                TokenTree::Ident(id) if !after_colons && is_colons(toks, i + 1) => {
                    let name = id.to_string();
                    let base: Option<Vec<String>> = match name.as_str() {
                        "crate" => Some(Vec::new()),
                        "super" | "self" => Some(self.module.clone()),
                        n => self.aliases.get(n).cloned(),
                    };
                    if let Some(mut base) = base {
                        // After `crate::` / `self::` / `super::`; an imported name is itself
                        // the first segment of the path.
                        let mut k = i;
                        match name.as_str() {
                            "crate" | "self" => k += 3,
                            "super" => {
                                base.pop();
                                k += 3;
                                while matches!(toks.get(k), Some(TokenTree::Ident(s)) if s == "super")
                                    && is_colons(toks, k + 1)
                                {
                                    base.pop();
                                    k += 3;
                                }
                            }
                            _ => {
                                base.pop();
                            }
                        }
                        let in_use = matches!(i.checked_sub(1).map(|p| &toks[p]), Some(TokenTree::Ident(u)) if u == "use");
                        let end = self.tree(toks, k, &base, learn && in_use);
                        i = end.max(i + 1);
                        continue;
                    }
                }
                TokenTree::Group(gr) => {
                    let inner: Vec<TokenTree> = gr.stream().into_iter().collect();
                    self.walk(&inner, learn);
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Reads one path or use tree from `toks[k..]` under `base`; returns the index after it.
    fn tree(&mut self, toks: &[TokenTree], mut k: usize, base: &[String], learn: bool) -> usize {
        let mut path = base.to_vec();
        loop {
            match toks.get(k) {
                Some(TokenTree::Ident(id)) => {
                    let s = id.to_string();
                    if s != "self" {
                        path.push(s);
                    }
                    if is_colons(toks, k + 1) {
                        k += 3;
                        continue;
                    }
                    k += 1;
                    let alias = match (toks.get(k), toks.get(k + 1)) {
                        (Some(TokenTree::Ident(a)), Some(TokenTree::Ident(n))) if a == "as" => {
                            k += 2;
                            n.to_string()
                        }
                        _ => path.last().cloned().unwrap_or_default(),
                    };
                    if learn && !path.is_empty() && alias != "_" {
                        self.aliases.insert(alias, path.clone());
                    }
                    self.paths.push(path);
                    return k;
                }
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                    let mut m = 0;
                    while m < inner.len() {
                        m = self.tree(&inner, m, &path, learn);
                        // to the next comma
                        while m < inner.len()
                            && !matches!(&inner[m], TokenTree::Punct(p) if p.as_char() == ',')
                        {
                            m += 1;
                        }
                        m += 1;
                    }
                    return k + 1;
                }
                _ => {
                    // `*`, or a path that ended in `::<...>`
                    self.paths.push(path);
                    return k;
                }
            }
        }
    }
}

fn is_colons(toks: &[TokenTree], i: usize) -> bool {
    matches!((toks.get(i), toks.get(i + 1)), (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
        if a.as_char() == ':' && b.as_char() == ':')
}

/// The index after the item that starts at `i` (after its attributes): up to its first
/// `;` or brace block.
fn skip_item(toks: &[TokenTree], mut i: usize) -> usize {
    while i < toks.len() {
        match &toks[i] {
            TokenTree::Punct(p) if p.as_char() == '#' => i += 2,
            TokenTree::Punct(p) if p.as_char() == ';' => return i + 1,
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Each strongly connected component of more than one node (Tarjan): its members, sorted,
/// and one shortest cycle through the first of them, where each imports the next and the
/// last imports the first.
fn cycles(g: &Graph) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flat_map(|t| t.keys())).collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let index_of: HashMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            g.get(*n)
                .map(|t| t.keys().map(|k| index_of[k]).collect())
                .unwrap_or_default()
        })
        .collect();
    let comps = tarjan(&adj);
    comps
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            // A shortest cycle through the component's first node, by breadth-first search.
            let inside: BTreeSet<usize> = c.iter().copied().collect();
            let start = *c.iter().min().expect("non-empty");
            let mut prev: HashMap<usize, usize> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut last = None;
            'bfs: while let Some(u) = queue.pop_front() {
                for &v in &adj[u] {
                    if !inside.contains(&v) {
                        continue;
                    }
                    if v == start {
                        last = Some(u);
                        break 'bfs;
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(v) {
                        e.insert(u);
                        queue.push_back(v);
                    }
                }
            }
            let mut path = Vec::new();
            let mut at = last.expect("a component has a cycle");
            while at != start {
                path.push(nodes[at].clone());
                at = prev[&at];
            }
            path.push(nodes[start].clone());
            path.reverse();
            let mut members: Vec<String> = c.iter().map(|&i| nodes[i].clone()).collect();
            members.sort();
            (members, path)
        })
        .collect()
}

fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &t.adj[v] {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(comp);
        }
    }
    let n = adj.len();
    let mut t = T {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

/// `a -> b -> a`, then the path that made each edge.
fn describe(g: &Graph, (members, cycle): &(Vec<String>, Vec<String>)) -> String {
    let mut ring: Vec<&str> = cycle.iter().map(String::as_str).collect();
    ring.push(&cycle[0]);
    let mut s = format!(
        "  in one cycle: {}\n  {}",
        members.join(", "),
        ring.join(" -> ")
    );
    for w in ring.windows(2) {
        s.push_str(&format!("\n    {} -> {}: {}", w[0], w[1], g[w[0]][w[1]]));
    }
    s
}
