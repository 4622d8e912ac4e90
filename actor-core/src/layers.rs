// Longer than ~800 lines: one idea (the module-graph check), nearly half of it the tests
// that show the check itself can fail.
//! The crate's module graph, read from its own sources (test-only): the layers build in
//! the order channels → process → shared → {actors, services}, and within every
//! directory the sibling modules use each other without a circle.
//!
//! How a file's uses are found: every path that starts with `crate::`, `$crate::`,
//! `super::` or `self::` (use groups `crate::{a, b::{c, self}}` included) in the code
//! that remains once comments, string and character literals and `#[cfg(test)]` items are
//! blanked out. A path is resolved to the deepest *file* module it names (modules come
//! from the file names under `src/`: `a/b.rs` and `a/b/mod.rs` are `a::b`; `#[path]` is
//! not followed), through the root re-exports of `lib.rs` (`pub use channels::codec`
//! makes `crate::codec` mean `channels::codec`, `pub use process::Process` makes
//! `crate::Process` mean `process`). Re-exports elsewhere are not followed: a path names
//! the module it goes through. Bare paths (`runtime::x` after `use crate::runtime`, or a
//! file's own child module) add nothing a `crate::`/`super::` path has not already named.
//!
//! The rules:
//! - *Layers*: a file in one layer may use its own layer, the layers before it and the
//!   root files ([`ROOT_FILES`], and the items of `lib.rs` itself, such as `Message`);
//!   `actors` and `services` are one rank (the cycle check below keeps them from using
//!   each other both ways). A root file may use root files only. A top-level module in
//!   neither list fails, so that a new one is placed on purpose.
//! - *No circle among siblings*: for every directory (every module with child modules),
//!   the graph whose nodes are its children (a child with children of its own collapsed
//!   to one node) and whose edges are the uses between them has no cycle. Uses of the
//!   directory's own module (`mod.rs`, or `lib.rs` at the root) are not sibling edges.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The layers, in build order (a file may use a layer of the same or a lower rank).
const LAYERS: &[(&str, u8)] = &[
    ("channels", 0),
    ("process", 1),
    ("shared", 2),
    ("actors", 3),
    ("services", 3),
];

/// Files at the root of `src/` that every layer may use (they use nothing layered).
const ROOT_FILES: &[&str] = &["error", "observe", "stats", "status"];

type ModPath = Vec<String>;

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "the crate root".to_string()
    } else {
        m.join("::")
    }
}

/// `src` with comments, string literals and character literals replaced by spaces
/// (newlines kept, so line numbers stay true). Lifetimes are kept.
fn blank_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < c.len() {
                let n = c.get(i + 1).copied();
                if c[i] == '/' && n == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && n == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0
                || !is_ident(c[i - 1])
                || (c[i - 1] == 'b' && (i < 2 || !is_ident(c[i - 2]))))
            && matches!(next, Some('"') | Some('#'))
        {
            // a raw string `r"…"`, `r#"…"#` (or `br…`), unless `r#ident`
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push(' ');
            i += 1;
            while i <= j {
                out.push(' ');
                i += 1;
            }
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| c.get(i + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    if let Some(&e) = c.get(i + 1) {
                        blank(&mut out, e);
                    }
                    i += 2;
                } else if c[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == '\'' {
            // a character literal ('x', '\n', '\u{..}', '\''), or a lifetime ('a)
            let end = if next == Some('\\') {
                (i + 3..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &c[i..=e] {
                        blank(&mut out, ch);
                    }
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Tokens with their line numbers (1-based), from code already blanked.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || (ch == '$' && c.get(i + 1) == Some(&'c')) {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // a raw identifier `r#name` is its name
            if word == "r" && c.get(i) == Some(&'#') {
                i += 1;
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn is_punct(t: &[(Tok, usize)], k: usize, ch: char) -> bool {
    matches!(t.get(k), Some((Tok::Punct(p), _)) if *p == ch)
}

fn ident(t: &[(Tok, usize)], k: usize) -> Option<&str> {
    match t.get(k) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Blanks every item that follows `#[cfg(test)]` (the attribute, further attributes, and
/// the item up to its `;` or its closing brace). Returns the blanked code and the names
/// of the file modules declared test-only (`#[cfg(test)] mod name;`).
fn blank_cfg_test(code: &str) -> (String, Vec<String>) {
    let c: Vec<char> = code.chars().collect();
    let mut out: Vec<char> = c.clone();
    let mut test_mods = Vec::new();
    let compact = |from: usize, to: usize| -> String {
        c[from..to]
            .iter()
            .filter(|ch| !ch.is_whitespace())
            .collect()
    };
    let mut i = 0;
    while i < c.len() {
        if c[i] != '#' {
            i += 1;
            continue;
        }
        let Some(close) = (i..c.len()).find(|&j| c[j] == ']') else {
            break;
        };
        if compact(i, close + 1) != "#[cfg(test)]" {
            i += 1;
            continue;
        }
        // further attributes
        let mut j = close + 1;
        loop {
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            if c.get(j) == Some(&'#') {
                let mut depth = 0;
                while j < c.len() {
                    if c[j] == '[' {
                        depth += 1;
                    } else if c[j] == ']' {
                        depth -= 1;
                        if depth == 0 {
                            j += 1;
                            break;
                        }
                    }
                    j += 1;
                }
            } else {
                break;
            }
        }
        let item_start = j;
        let is_use = {
            let head = compact(item_start, (item_start + 40).min(c.len()));
            let head = head
                .strip_prefix("pub(crate)")
                .or_else(|| head.strip_prefix("pub(super)"))
                .or_else(|| head.strip_prefix("pub"))
                .unwrap_or(&head);
            head.starts_with("use")
        };
        // to the item's end: its `;`, or the brace closing its first `{`
        let mut end = c.len();
        let mut k = item_start;
        let mut nesting = 0usize; // ( and [, where a `;` does not end the item
        while k < c.len() {
            if c[k] == '(' || c[k] == '[' {
                nesting += 1;
            } else if c[k] == ')' || c[k] == ']' {
                nesting = nesting.saturating_sub(1);
            } else if c[k] == ';' && nesting == 0 {
                end = k + 1;
                break;
            }
            if c[k] == '{' && !is_use {
                let mut depth = 0;
                while k < c.len() {
                    if c[k] == '{' {
                        depth += 1;
                    } else if c[k] == '}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    k += 1;
                }
                end = (k + 1).min(c.len());
                break;
            }
            k += 1;
        }
        let item = compact(item_start, end);
        for vis in ["pub(crate)mod", "pub(super)mod", "pubmod", "mod"] {
            if let Some(name) = item.strip_prefix(vis).and_then(|r| r.strip_suffix(';')) {
                test_mods.push(name.to_string());
                break;
            }
        }
        for ch in &mut out[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    (out.into_iter().collect(), test_mods)
}

/// A path as written, from `crate`/`$crate`/`super`/`self` on: its segments (a use group
/// gives one path per leaf; `x::{self}` gives `x`), its alias (`as name`) and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    segs: Vec<String>,
    alias: Option<String>,
    line: usize,
}

/// Parses one use tree at `t[k]` under `prefix`; pushes its leaves; returns the index
/// after it.
fn parse_tree(
    t: &[(Tok, usize)],
    mut k: usize,
    prefix: Vec<String>,
    out: &mut Vec<Written>,
) -> usize {
    let mut segs = prefix;
    let line = t.get(k).map_or(0, |x| x.1);
    loop {
        match t.get(k) {
            Some((Tok::Ident(s), _)) if s != "as" => {
                if s != "self" || segs.is_empty() {
                    segs.push(s.clone());
                }
                k += 1;
            }
            Some((Tok::Punct('{'), _)) => {
                k += 1;
                while k < t.len() && !is_punct(t, k, '}') {
                    let before = k;
                    k = parse_tree(t, k, segs.clone(), out);
                    if is_punct(t, k, ',') {
                        k += 1;
                    } else if k == before {
                        k += 1; // something unexpected: skip it, never loop
                    }
                }
                return k + 1;
            }
            Some((Tok::Punct('*'), _)) => {
                out.push(Written {
                    segs,
                    alias: None,
                    line,
                });
                return k + 1;
            }
            _ => break,
        }
        if matches!(t.get(k), Some((Tok::Path, _))) {
            k += 1;
        } else {
            break;
        }
    }
    let mut alias = None;
    if ident(t, k) == Some("as") {
        alias = ident(t, k + 1).map(str::to_string);
        k += 2;
    }
    if !segs.is_empty() {
        out.push(Written { segs, alias, line });
    }
    k
}

/// The paths of a file that start with `crate`, `$crate`, `super` or `self`, each with
/// the inline module (`mod name { … }`, relative to the file's) it is written in.
fn crate_paths(code: &str) -> Vec<(Vec<String>, Written)> {
    let t = tokens(code);
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new(); // (name, brace depth inside it)
    let mut depth = 0usize;
    let mut k = 0;
    while k < t.len() {
        match &t[k].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(m) if m == "mod" => {
                if let (Some(name), true) = (ident(&t, k + 1), is_punct(&t, k + 2, '{')) {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(s)
                if matches!(s.as_str(), "crate" | "$crate" | "super" | "self")
                    && matches!(t.get(k + 1), Some((Tok::Path, _)))
                    && !matches!(
                        k.checked_sub(1).and_then(|p| t.get(p)),
                        Some((Tok::Path, _))
                    ) =>
            {
                let mut paths = Vec::new();
                let next = parse_tree(&t, k, Vec::new(), &mut paths);
                let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                out.extend(paths.into_iter().map(|p| (here.clone(), p)));
                k = next;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// One file of the crate, read and blanked.
struct File {
    rel: String,
    module: ModPath,
    code: String,
}

/// A use of a module by a file.
#[derive(Debug, Clone)]
struct Use {
    line: usize,
    written: String,
    target: ModPath,
}

/// The module of a file `rel` (relative to `src/`).
fn module_of(rel: &str) -> ModPath {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

struct Crate {
    files: Vec<File>,
    modules: BTreeSet<ModPath>,
    /// `lib.rs`'s re-exports: name at the root → path from the root.
    aliases: HashMap<String, Vec<String>>,
}

impl Crate {
    /// `sources`: (path relative to `src/`, text). Files under a test-only module are left
    /// out.
    fn new(sources: &[(String, String)]) -> Crate {
        let mut files = Vec::new();
        let mut test_only: Vec<ModPath> = Vec::new();
        for (rel, text) in sources {
            let module = module_of(rel);
            let (code, test_mods) = blank_cfg_test(&blank_comments_and_strings(text));
            for m in test_mods {
                let mut p = module.clone();
                p.push(m);
                test_only.push(p);
            }
            files.push(File {
                rel: rel.clone(),
                module,
                code,
            });
        }
        files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
        let modules = files.iter().map(|f| f.module.clone()).collect();
        let mut aliases = HashMap::new();
        if let Some(lib) = files.iter().find(|f| f.module.is_empty()) {
            let t = tokens(&lib.code);
            let mut depth = 0usize;
            for k in 0..t.len() {
                match &t[k].0 {
                    Tok::Punct('{') => depth += 1,
                    Tok::Punct('}') => depth = depth.saturating_sub(1),
                    Tok::Ident(u) if u == "use" && depth == 0 => {
                        let mut paths = Vec::new();
                        parse_tree(&t, k + 1, Vec::new(), &mut paths);
                        for p in paths {
                            let mut segs = p.segs;
                            if segs.first().is_some_and(|s| s == "crate") {
                                segs.remove(0);
                            }
                            if let Some(name) = p.alias.or_else(|| segs.last().cloned()) {
                                aliases.insert(name, segs);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Crate {
            files,
            modules,
            aliases,
        }
    }

    /// The deepest file module `segs` names, written in module `here`.
    fn resolve(&self, here: &[String], segs: &[String]) -> ModPath {
        self.resolve_depth(here, segs, 0)
    }

    fn resolve_depth(&self, here: &[String], segs: &[String], depth: usize) -> ModPath {
        let mut cur: ModPath = match segs.first().map(String::as_str) {
            Some("crate") | Some("$crate") => Vec::new(),
            Some("self") => here.to_vec(),
            Some("super") => {
                let mut p = here.to_vec();
                p.pop();
                p
            }
            _ => Vec::new(),
        };
        for s in &segs[1.min(segs.len())..] {
            if s == "super" {
                cur.pop();
                continue;
            }
            let mut next = cur.clone();
            next.push(s.clone());
            if self.modules.contains(&next) {
                cur = next;
            } else if cur.is_empty() && depth < 8 {
                match self.aliases.get(s) {
                    Some(target) if target.last() != Some(s) || target.len() > 1 => {
                        let mut p = vec!["crate".to_string()];
                        p.extend(target.iter().cloned());
                        cur = self.resolve_depth(&[], &p, depth + 1);
                    }
                    _ => break,
                }
            } else {
                break;
            }
        }
        // inside a file's inline module: the file's module
        while !cur.is_empty() && !self.modules.contains(&cur) {
            cur.pop();
        }
        cur
    }

    /// Every file with the modules it uses.
    fn uses(&self) -> Vec<(&File, Vec<Use>)> {
        self.files
            .iter()
            .map(|f| {
                let uses = crate_paths(&f.code)
                    .into_iter()
                    .map(|(inline, w)| {
                        let mut here = f.module.clone();
                        here.extend(inline);
                        Use {
                            line: w.line,
                            written: w.segs.join("::"),
                            target: self.resolve(&here, &w.segs),
                        }
                    })
                    .collect();
                (f, uses)
            })
            .collect()
    }
}

/// What the check found: the problems, and how much it looked at.
#[derive(Debug, Default)]
struct Report {
    problems: Vec<String>,
    files: usize,
    uses: usize,
    /// (directory, from, to) for every sibling edge.
    edges: BTreeSet<(String, String, String)>,
}

fn layer_rank(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == top).map(|(_, r)| *r)
}

/// Runs both rules over `sources` ((path relative to `src/`, text) pairs).
fn check(sources: &[(String, String)]) -> Report {
    let krate = Crate::new(sources);
    let all = krate.uses();
    let mut report = Report {
        files: all.len(),
        ..Report::default()
    };
    let order =
        "channels → process → shared → {actors, services}, root files error/status below all";

    // Layers.
    let mut unplaced = BTreeSet::new();
    for (f, uses) in &all {
        report.uses += uses.len();
        let Some(top) = f.module.first() else {
            continue; // lib.rs: the facade over every layer
        };
        let mine = layer_rank(top);
        let root_file = ROOT_FILES.contains(&top.as_str());
        if mine.is_none() && !root_file {
            unplaced.insert(format!(
                "src/{}: module `{top}` is in no layer: add it to LAYERS or ROOT_FILES in \
                 actor-core/src/layers.rs",
                f.rel
            ));
            continue;
        }
        for u in uses {
            let Some(ttop) = u.target.first() else {
                continue; // the items of lib.rs itself
            };
            if ttop == top || ROOT_FILES.contains(&ttop.as_str()) {
                continue;
            }
            let Some(theirs) = layer_rank(ttop) else {
                unplaced.insert(format!(
                    "src/{}:{}: `{}` names `{}`, which is in no layer: add `{ttop}` to LAYERS \
                     or ROOT_FILES in actor-core/src/layers.rs",
                    f.rel,
                    u.line,
                    u.written,
                    show(&u.target)
                ));
                continue;
            };
            match mine {
                None => report.problems.push(format!(
                    "src/{}:{}: `{}` names `{}` (layer `{ttop}`), but root file `{top}` may \
                     use only root files",
                    f.rel,
                    u.line,
                    u.written,
                    show(&u.target)
                )),
                Some(m) if theirs > m => report.problems.push(format!(
                    "src/{}:{}: `{}` names `{}` (layer `{ttop}`), which builds after this \
                     file's layer `{top}` (order: {order})",
                    f.rel,
                    u.line,
                    u.written,
                    show(&u.target)
                )),
                _ => {}
            }
        }
    }
    report.problems.extend(unplaced);

    // No circle among the children of any directory.
    let dirs: BTreeSet<ModPath> = krate
        .modules
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    for dir in dirs {
        let n = dir.len();
        // edge → its first evidence
        let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
        for (f, uses) in &all {
            if f.module.len() <= n || !f.module.starts_with(&dir) {
                continue;
            }
            let from = &f.module[n];
            for u in uses {
                if u.target.len() <= n || !u.target.starts_with(&dir) {
                    continue;
                }
                let to = &u.target[n];
                if to == from {
                    continue;
                }
                edges
                    .entry((from.clone(), to.clone()))
                    .or_insert_with(|| format!("src/{}:{} `{}`", f.rel, u.line, u.written));
            }
        }
        let where_ = if dir.is_empty() {
            "src/".to_string()
        } else {
            format!("src/{}/", dir.join("/"))
        };
        for (from, to) in edges.keys() {
            report
                .edges
                .insert((where_.clone(), from.clone(), to.clone()));
        }
        for cycle in find_cycles(&edges) {
            let mut msg = format!(
                "circle among the modules of {where_}: {} → {}",
                cycle.join(" → "),
                cycle[0]
            );
            for i in 0..cycle.len() {
                let (a, b) = (&cycle[i], &cycle[(i + 1) % cycle.len()]);
                let ev = &edges[&(a.clone(), b.clone())];
                msg.push_str(&format!("\n    {a} → {b}: {ev}"));
            }
            report.problems.push(msg);
        }
    }
    report
}

/// One cycle (as a node list, each using the next, the last the first) per strongly
/// connected group of nodes that has one.
fn find_cycles(edges: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let mut succ: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        succ.entry(a).or_default().push(b);
        succ.entry(b).or_default();
    }
    let nodes: Vec<&str> = succ.keys().copied().collect();
    let reach = |from: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            for &y in &succ[x] {
                if seen.insert(y) {
                    stack.push(y);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&str, BTreeSet<&str>> = nodes.iter().map(|&n| (n, reach(n))).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut cycles = Vec::new();
    for &start in &nodes {
        if done.contains(start) || !reachable[start].contains(start) {
            continue;
        }
        // its group: the nodes it reaches that reach it back
        let group: BTreeSet<&str> = reachable[start]
            .iter()
            .copied()
            .filter(|&m| reachable[m].contains(start))
            .collect();
        done.extend(group.iter().copied());
        // a shortest way back to `start` inside the group (breadth first)
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'bfs: while let Some(x) = queue.pop_front() {
            for &y in &succ[x] {
                if !group.contains(y) {
                    continue;
                }
                if y == start {
                    let mut path = vec![x];
                    let mut z = x;
                    while z != start {
                        z = prev[z];
                        path.push(z);
                    }
                    path.reverse();
                    cycles.push(path.into_iter().map(str::to_string).collect());
                    break 'bfs;
                }
                if y != start && !prev.contains_key(y) {
                    prev.insert(y, x);
                    queue.push_back(y);
                }
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read_sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                read_sources(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
                out.push((rel, text));
            }
        }
    }

    fn src(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The check on this crate's own sources.
    #[test]
    fn the_module_graph_is_layered_and_has_no_circle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut sources = Vec::new();
        read_sources(&root, &root, &mut sources);
        let report = check(&sources);
        assert!(
            report.problems.is_empty(),
            "the module graph of actor-core breaks its layout rules \
             (see actor-core/src/layers.rs):\n{}",
            report.problems.join("\n")
        );
        for (dir, from, to) in &report.edges {
            println!("{dir}: {from} → {to}");
        }
        // Not a vacuous pass: the files were read and their uses found.
        assert!(report.files >= 20, "only {} files read", report.files);
        assert!(report.uses >= 100, "only {} uses found", report.uses);
        let edge = |d: &str, a: &str, b: &str| {
            report
                .edges
                .contains(&(d.to_string(), a.to_string(), b.to_string()))
        };
        assert!(edge("src/", "process", "channels"), "{:?}", report.edges);
        assert!(edge("src/", "actors", "process"), "{:?}", report.edges);
    }

    #[test]
    fn comments_strings_and_chars_are_blanked_lines_kept() {
        let code = "use crate::a; // crate::b\n/* crate::c /* crate::d */ */ let s = \"crate::e\\\"\";\nlet r = r#\"crate::f\"#; let c = '\\''; fn f<'x>(v: &'x str) { crate::g(); }\n";
        let out = blank_comments_and_strings(code);
        assert_eq!(out.lines().count(), code.lines().count());
        for gone in ["crate::b", "crate::c", "crate::d", "crate::e", "crate::f"] {
            assert!(!out.contains(gone), "{gone} left in {out:?}");
        }
        assert!(out.contains("crate::a") && out.contains("crate::g()") && out.contains("&'x str"));
    }

    #[test]
    fn cfg_test_items_are_blanked_and_test_file_modules_noted() {
        let code = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n#[cfg(test)] use crate::{c, d};\n#[ cfg( test ) ]\n#[allow(dead_code)]\nfn f() { crate::e(); }\n#[cfg(test)]\nmod checks;\nfn g() { crate::h(); }\n";
        let (out, mods) = blank_cfg_test(code);
        assert_eq!(out.lines().count(), code.lines().count());
        for gone in ["crate::b", "crate::{c", "crate::e"] {
            assert!(!out.contains(gone), "{gone} left in {out:?}");
        }
        assert!(out.contains("crate::a") && out.contains("crate::h"));
        assert_eq!(mods, vec!["checks".to_string()]);
    }

    #[test]
    fn use_groups_give_one_path_per_leaf() {
        let paths = crate_paths("use crate::{a, b::{c, self}, d::*, e::F as G};\nsuper::x::y::<u8>();\nmod m {\n  use super::z;\n}\nself::w();");
        let got: Vec<(Vec<String>, String)> = paths
            .iter()
            .map(|(inline, w)| (inline.clone(), w.segs.join("::")))
            .collect();
        let m = vec!["m".to_string()];
        let want = vec![
            (vec![], "crate::a".to_string()),
            (vec![], "crate::b::c".to_string()),
            (vec![], "crate::b".to_string()),
            (vec![], "crate::d".to_string()),
            (vec![], "crate::e::F".to_string()),
            (vec![], "super::x::y".to_string()),
            (m, "super::z".to_string()),
            (vec![], "self::w".to_string()),
        ];
        assert_eq!(got, want);
        assert_eq!(paths[4].1.alias.as_deref(), Some("G"));
        assert_eq!(paths[5].1.line, 2);
    }

    #[test]
    fn paths_resolve_through_the_root_reexports() {
        let k = Crate::new(&src(&[
            ("lib.rs", "pub mod ch; pub mod pr; mod status;\npub use ch::{codec, pipe as p};\npub use pr::runtime;\npub use codec::Codec;\npub use pr::Process;\npub trait Message {}"),
            ("ch/mod.rs", "pub mod codec; pub mod pipe;"),
            ("ch/codec.rs", ""),
            ("ch/pipe.rs", ""),
            ("pr/mod.rs", "pub mod runtime;"),
            ("pr/runtime.rs", ""),
            ("status.rs", ""),
        ]));
        let r = |here: &[&str], path: &str| {
            let here: Vec<String> = here.iter().map(|s| s.to_string()).collect();
            let segs: Vec<String> = path.split("::").map(str::to_string).collect();
            show(&k.resolve(&here, &segs))
        };
        assert_eq!(r(&[], "crate::codec::encode"), "ch::codec");
        assert_eq!(r(&[], "crate::Codec"), "ch::codec");
        assert_eq!(r(&[], "crate::p::Pipe"), "ch::pipe");
        assert_eq!(r(&[], "crate::runtime::init"), "pr::runtime");
        assert_eq!(r(&[], "crate::Process"), "pr");
        assert_eq!(r(&[], "crate::Message"), "the crate root");
        assert_eq!(r(&[], "crate::status::ExitStatus"), "status");
        assert_eq!(r(&["pr", "runtime"], "super::Process"), "pr");
        assert_eq!(r(&["pr", "runtime"], "super::super::ch::pipe"), "ch::pipe");
        assert_eq!(r(&["pr"], "super::codec"), "ch::codec");
        assert_eq!(r(&["ch", "pipe", "inline"], "super::x"), "ch::pipe");
        assert_eq!(r(&["ch", "pipe", "inline"], "self::x"), "ch::pipe");
    }

    /// A back edge between layers and a circle between siblings are both reported,
    /// naming the file, the line and the path.
    #[test]
    fn a_layer_back_edge_and_a_circle_fail_with_their_evidence() {
        let report = check(&src(&[
            ("lib.rs", "pub mod channels; pub mod process; mod error; mod status;\npub use process::runtime;"),
            ("error.rs", "use crate::status::S;"),
            ("status.rs", ""),
            ("channels/mod.rs", "pub mod pipe;"),
            ("channels/pipe.rs", "// crate::runtime in a comment is not a use\nfn f() {\n    crate::runtime::go();\n}"),
            ("process/mod.rs", "pub mod a; pub mod b; pub mod c; pub mod runtime;\nuse crate::channels::pipe;"),
            ("process/a.rs", "use super::b::x;"),
            ("process/b.rs", "use super::{c::y, runtime};"),
            ("process/c.rs", "use crate::process::a::z; use super::Handle;"),
            ("process/runtime.rs", "use super::super::error::E;"),
        ]));
        let text = report.problems.join("\n");
        // the back edge, the circle it makes between the layers, the circle among siblings
        assert_eq!(report.problems.len(), 3, "{text}");
        assert!(
            text.contains("circle among the modules of src/: channels → process → channels\n    channels → process: src/channels/pipe.rs:3 `crate::runtime::go`\n    process → channels: src/process/mod.rs:2 `crate::channels::pipe`"),
            "{text}"
        );
        assert!(
            text.contains("src/channels/pipe.rs:3: `crate::runtime::go` names `process::runtime` (layer `process`), which builds after this file's layer `channels`"),
            "{text}"
        );
        assert!(
            text.contains("circle among the modules of src/process/: a → b → c → a\n    a → b: src/process/a.rs:1 `super::b::x`\n    b → c: src/process/b.rs:1 `super::c::y`\n    c → a: src/process/c.rs:1 `crate::process::a::z`"),
            "{text}"
        );
        assert!(report
            .edges
            .contains(&("src/".into(), "process".into(), "channels".into())));
        // uses of the directory's own module are not sibling edges
        assert!(!report
            .edges
            .iter()
            .any(|(d, _, to)| d == "src/process/" && to == "mod"));
    }

    #[test]
    fn a_module_in_no_layer_and_a_root_file_using_a_layer_fail() {
        let report = check(&src(&[
            ("lib.rs", "pub mod channels; mod error; mod extra;"),
            ("error.rs", "use crate::channels::X;"),
            ("extra.rs", ""),
            ("channels/mod.rs", "use crate::extra::Y;"),
        ]));
        let text = report.problems.join("\n");
        assert!(text.contains("src/error.rs:1: `crate::channels::X` names `channels` (layer `channels`), but root file `error` may use only root files"), "{text}");
        assert!(
            text.contains("src/extra.rs: module `extra` is in no layer"),
            "{text}"
        );
        assert!(
            text.contains(
                "src/channels/mod.rs:1: `crate::extra::Y` names `extra`, which is in no layer"
            ),
            "{text}"
        );
    }

    #[test]
    fn cycles_are_found_once_per_group() {
        let e = |pairs: &[(&str, &str)]| -> BTreeMap<(String, String), String> {
            pairs
                .iter()
                .map(|(a, b)| ((a.to_string(), b.to_string()), String::new()))
                .collect()
        };
        assert!(find_cycles(&e(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
        assert_eq!(
            find_cycles(&e(&[("a", "b"), ("b", "a")])),
            vec![vec!["a", "b"]]
        );
        let two = find_cycles(&e(&[
            ("a", "b"),
            ("b", "a"),
            ("c", "d"),
            ("d", "e"),
            ("e", "c"),
            ("b", "c"),
        ]));
        assert_eq!(two, vec![vec!["a", "b"], vec!["c", "d", "e"]]);
    }
}
