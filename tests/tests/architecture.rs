//! The shape ARCHITECTURE.md promises, checked on the sources: no module of any crate imports a
//! module that imports it back, directly or through others ("Modules without circles" there).
//!
//! Cargo already forbids circles between crates; inside a crate nothing does, and a circle is
//! how a boundary (the ports, say) quietly stops being one. The check reads each crate from its
//! root file, follows `mod name;` declarations to the files, and draws an arrow from a file to
//! every file whose module a path in it names (`use` trees, and `crate::`, `super::`, `self::`
//! or child-module paths in code). Comments, strings and `#[cfg(test)]` items are not read:
//! tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate root of the workspace (libraries and binaries).
const CRATE_ROOTS: &[&str] = &[
    "domain/src/lib.rs",
    "application/src/lib.rs",
    "infrastructure/src/lib.rs",
    "api/src/lib.rs",
    "chronicle/src/lib.rs",
    "chronicle/src/main.rs",
    "tests/src/lib.rs",
    "tests/src/bin/bench/main.rs",
];

/// The roots of the service's own code (what ships), without the domain and the tests.
const SERVICE_ROOTS: &[&str] = &[
    "application/src/lib.rs",
    "infrastructure/src/lib.rs",
    "api/src/lib.rs",
    "chronicle/src/lib.rs",
    "chronicle/src/main.rs",
];

/// The workspace's root directory.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let workspace = workspace();
    let mut report = String::new();
    for root in CRATE_ROOTS {
        let graph = ModuleGraph::read(&workspace, root);
        assert!(
            graph.modules.len() > 1 || root.ends_with("main.rs"),
            "{root}: found no modules; the reader is broken"
        );
        for circle in graph.circles() {
            report.push_str(&format!("circle in {root}:\n{circle}"));
        }
    }
    assert!(
        report.is_empty(),
        "modules that import each other:\n{report}"
    );
}

/// Files may form no circle (above); neither may the folders they sit in. A crate's top-level
/// modules are its layers (`data`, `ports`, the use cases; `db`, `held`, `outbox`, ...): one
/// that imports another that imports it back, through any of their files, makes two layers one.
#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let workspace = workspace();
    let mut report = String::new();
    for root in CRATE_ROOTS {
        for circle in ModuleGraph::read(&workspace, root).top_level().circles() {
            report.push_str(&format!("circle in {root}:\n{circle}"));
        }
    }
    assert!(
        report.is_empty(),
        "top-level modules that import each other (file -> file: name):\n{report}"
    );
}

#[test]
fn the_check_finds_a_circle_when_there_is_one() {
    let graph = ModuleGraph::from_sources(&[
        (vec![], "mod a; mod b; mod c;"),
        (vec!["a"], "use crate::b::Thing; fn f() { super::c::g(); }"),
        (vec!["b"], "use crate::{c::{self, Other as O}};"),
        (
            vec!["c"],
            "// use crate::a::X;\nconst S: &str = \"crate::a::Y\";\nfn h() -> crate::a::Z { todo!() }",
        ),
    ]);
    let circles = graph.circles();
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("c -> a: Z"), "{}", circles[0]);
    // Folders: no two files import each other, yet `a` and `b` do through their children.
    let folders = ModuleGraph::from_sources(&[
        (vec![], "mod a; mod b;"),
        (vec!["a"], "mod x; mod y;"),
        (vec!["a", "x"], "use crate::b::z::Thing;"),
        (vec!["a", "y"], ""),
        (vec!["b"], "mod z; mod w;"),
        (vec!["b", "z"], ""),
        (vec!["b", "w"], "use crate::a::y::Other;"),
    ]);
    assert!(folders.circles().is_empty(), "{:?}", folders.circles());
    let top = folders.top_level().circles();
    assert_eq!(top.len(), 1, "{top:?}");
    assert!(top[0].contains("a::x -> b::z: Thing"), "{}", top[0]);
    let commented_only = ModuleGraph::from_sources(&[
        (vec![], "mod a; mod b;"),
        (vec!["a"], "use crate::b::Thing;"),
        (
            vec!["b"],
            "/* crate::a::X */ #[cfg(test)] mod tests { use crate::a::Y; }",
        ),
    ]);
    assert!(commented_only.circles().is_empty());
}

/// Outside the registry (`application::aggregates`) and the domain, an aggregate's type name
/// is never written out: a third aggregate must not have to be added in ten places, and one
/// place forgotten would still compile.
/// What the application's ports may name of their own crate: other ports, data types (`data/`)
/// and the error-chain formatter. A port that named a use case (`projection`, `audit`,
/// `privacy`, ...) would make every adapter depend on it.
const PORTS_MAY_NAME: &[&str] = &["ports", "data", "error_chain"];

#[test]
fn ports_name_only_ports_and_data_types() {
    let ports = workspace().join("application/src/ports");
    let mut named = Vec::new();
    for entry in std::fs::read_dir(&ports).expect("application/src/ports") {
        let path = entry.expect("a directory entry").path();
        let code = strip(&std::fs::read_to_string(&path).expect("a port file"));
        for (at, _) in code.match_indices("crate::") {
            let module: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !PORTS_MAY_NAME.contains(&module.as_str()) {
                named.push(format!("{}: crate::{module}", path.display()));
            }
        }
    }
    assert!(
        named.is_empty(),
        "ports naming what is not a port or a data type:\n{}",
        named.join("\n")
    );
}

#[test]
fn aggregate_type_names_are_written_only_in_the_registry_and_the_domain() {
    let workspace = workspace();
    let literals: Vec<String> = chronicle_application::aggregates::type_names()
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect();
    let mut found = Vec::new();
    for root in SERVICE_ROOTS {
        for (file, text) in ModuleGraph::read(&workspace, root).texts {
            if file.ends_with("application/src/aggregates.rs") {
                continue;
            }
            let code = strip_keeping_strings(&text);
            for literal in &literals {
                if code.contains(literal.as_str()) {
                    found.push(format!("{file}: {literal}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "aggregate type names written outside the registry; use application::aggregates:\n{}",
        found.join("\n")
    );
}

/// The configuration table (docs/operations.md) lists every environment variable the code reads, and
/// where the code gives a literal default, the table gives the same one: the default is
/// written in the code and the table is held to it.
#[test]
fn the_operations_guide_lists_every_variable_the_code_reads_with_its_default() {
    let workspace = workspace();
    let guide =
        std::fs::read_to_string(workspace.join("docs/operations.md")).expect("docs/operations.md");
    let documented = configuration_table(&guide);
    assert!(
        documented.len() > 20,
        "docs/operations.md's configuration table was not found"
    );
    let mut problems = Vec::new();
    for root in SERVICE_ROOTS {
        for (file, text) in ModuleGraph::read(&workspace, root).texts {
            let code = strip_keeping_strings(&text);
            for (name, default) in variables_read(&code) {
                match documented.iter().find(|(listed, _)| *listed == name) {
                    None => problems.push(format!("{file}: reads {name}, missing from the table")),
                    Some((_, listed)) => {
                        if let (Some(code_default), Some(listed)) = (&default, listed) {
                            if code_default != listed {
                                problems.push(format!(
                                    "{file}: {name} defaults to {code_default}, the table says {listed}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/operations.md, Configuration:\n{}",
        problems.join("\n")
    );
}

/// (variable, its default when the cell gives one in backticks) for every row of the
/// configuration table; a row may list several variables with as many defaults.
fn configuration_table(guide: &str) -> Vec<(String, Option<String>)> {
    let section = guide
        .split("\n## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for line in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let names = backticked(cells[0]);
        let defaults = cells
            .get(1)
            .map(|cell| backticked(cell))
            .unwrap_or_default();
        for (index, name) in names.into_iter().enumerate() {
            rows.push((name, defaults.get(index).cloned()));
        }
    }
    rows
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The alerts and the dashboard of `deploy/` name only metrics the service records: a metric
/// renamed in the code would otherwise leave an alert that can never fire and a panel that
/// stays empty, with nothing to say so.
#[test]
fn alerts_and_dashboard_name_only_metrics_the_code_records() {
    let workspace = workspace();
    let mut recorded = BTreeSet::new();
    for root in SERVICE_ROOTS {
        for (_, text) in ModuleGraph::read(&workspace, root).texts {
            recorded.extend(metric_names(&strip_keeping_strings(&text)));
        }
    }
    assert!(
        recorded.contains("chronicle_command_duration_seconds"),
        "the metric reader is broken: {recorded:?}"
    );
    let mut problems = Vec::new();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/chronicle.json",
    ] {
        let text = std::fs::read_to_string(workspace.join(file)).expect(file);
        let named = metric_names(&text);
        assert!(!named.is_empty(), "{file} names no metric");
        for name in named {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            if !recorded.contains(base) && !recorded.contains(&name) {
                problems.push(format!("{file}: {name} is not recorded by the service"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `chronicle_...` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("chronicle_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // Crate paths (`chronicle_api::...`) and the like are not metric names.
        if text[at + name.len()..].starts_with("::") || name.ends_with('_') {
            continue;
        }
        names.insert(name);
    }
    names
}

/// The variables `code` reads (`var("NAME")`, `parsed("NAME", default)` and the like: any
/// string literal that names one), with the default when it is a literal number or boolean,
/// given in the call or as `default.field` of a `Default` impl in the same file.
fn variables_read(code: &str) -> Vec<(String, Option<String>)> {
    variables_read_literally(code)
        .into_iter()
        .map(|(name, default, field)| {
            let from_field = field.and_then(|field| {
                let assignment = format!("{field}: ");
                code.match_indices(&assignment)
                    .find_map(|(at, _)| plain_literal(code[at + assignment.len()..].trim_start()))
            });
            (name, default.or(from_field))
        })
        .collect()
}

/// A number or boolean literal that ends its expression (`5_000,` or `true)`), underscores
/// removed.
fn plain_literal(text: &str) -> Option<String> {
    let token_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let token: String = text[..token_end].chars().filter(|c| *c != '_').collect();
    let ends = text[token_end..].trim_start().starts_with([',', ')']);
    let plain = !token.is_empty()
        && (token.chars().all(|c| c.is_ascii_digit()) || token == "true" || token == "false");
    (ends && plain).then_some(token)
}

/// Like [`variables_read`], with the `default.field` a call names instead of resolving it.
fn variables_read_literally(code: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut found = Vec::new();
    for (index, _) in code.match_indices('"') {
        let rest = &code[index + 1..];
        let Some(end) = rest.find('"') else { continue };
        let name = &rest[..end];
        let is_variable = ["CHRONICLE_", "KAFKA_", "OTEL_", "DATABASE_URL"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_variable
            || found
                .iter()
                .any(|(known, _, _): &(String, _, _)| known == name)
        {
            continue;
        }
        let after = rest[end + 1..].trim_start();
        let argument = after.strip_prefix(',').map(str::trim_start);
        let default = argument.and_then(plain_literal);
        let field = argument.and_then(|value| {
            let value = value.strip_prefix("default.")?;
            let field_end = value
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(value.len());
            Some(value[..field_end].to_owned())
        });
        found.push((name.to_owned(), default, field));
    }
    found
}

/// One crate's modules and the arrows between their files.
struct ModuleGraph {
    /// Module path (`["outbox", "relay"]`) to the file that holds it.
    modules: BTreeMap<Vec<String>, String>,
    /// (from, to) module paths to the names the first takes from the second.
    arrows: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>>,
    /// Each file as shown in messages, with its text.
    texts: Vec<(String, String)>,
}

impl ModuleGraph {
    /// Reads a crate from its root file, following `mod` declarations.
    fn read(workspace: &Path, root: &str) -> Self {
        let mut sources = Vec::new();
        let mut pending = vec![(Vec::<String>::new(), workspace.join(root))];
        while let Some((path, file)) = pending.pop() {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
            let tokens = tokenize(&strip(&text));
            let children_dir = child_directory(&file, path.is_empty());
            for child in declared_modules(&tokens) {
                let flat = children_dir.join(format!("{child}.rs"));
                let nested = children_dir.join(&child).join("mod.rs");
                let found = if flat.exists() { flat } else { nested };
                let mut child_path = path.clone();
                child_path.push(child);
                pending.push((child_path, found));
            }
            let shown = file
                .strip_prefix(workspace)
                .unwrap_or(&file)
                .display()
                .to_string();
            sources.push((path, shown, text));
        }
        Self::build(sources)
    }

    /// A graph from in-memory sources (module path, text), for testing the reader.
    #[cfg(test)]
    fn from_sources(sources: &[(Vec<&str>, &str)]) -> Self {
        Self::build(
            sources
                .iter()
                .map(|(path, text)| {
                    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                    let shown = path.join("::");
                    (path, shown, text.to_string())
                })
                .collect(),
        )
    }

    fn build(sources: Vec<(Vec<String>, String, String)>) -> Self {
        let modules: BTreeMap<Vec<String>, String> = sources
            .iter()
            .map(|(path, shown, _)| (path.clone(), shown.clone()))
            .collect();
        let mut graph = Self {
            modules,
            arrows: BTreeMap::new(),
            texts: sources
                .iter()
                .map(|(_, shown, text)| (shown.clone(), text.clone()))
                .collect(),
        };
        for (path, _, text) in &sources {
            let tokens = tokenize(&strip(text));
            for reference in references(&tokens) {
                if let Some((target, name)) = graph.resolve(path, &reference) {
                    if &target != path {
                        graph
                            .arrows
                            .entry((path.clone(), target))
                            .or_default()
                            .insert(name);
                    }
                }
            }
        }
        graph
    }

    /// The module a path names, and the name taken from it; `None` for other crates.
    fn resolve(&self, current: &[String], path: &[String]) -> Option<(Vec<String>, String)> {
        let (mut base, mut rest) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("self") => (current.to_vec(), &path[1..]),
            Some("super") => {
                let mut base = current.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            Some(first) => {
                let mut child = current.to_vec();
                child.push(first.to_string());
                if !self.modules.contains_key(&child) {
                    return None;
                }
                (current.to_vec(), path)
            }
            None => return None,
        };
        while let Some(segment) = rest.first() {
            let mut deeper = base.clone();
            deeper.push(segment.clone());
            if !self.modules.contains_key(&deeper) {
                break;
            }
            base = deeper;
            rest = &rest[1..];
        }
        let name = rest.first().cloned().unwrap_or_else(|| "*".to_string());
        Some((base, name))
    }

    /// The same crate with every module folded into its top-level module (the root, which only
    /// declares them, left out); each arrow keeps the files and names it came from.
    fn top_level(&self) -> Self {
        let fold = |path: &Vec<String>| path.first().map(|top| vec![top.clone()]);
        let mut arrows: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>> = BTreeMap::new();
        for ((from, to), names) in &self.arrows {
            let (Some(a), Some(b)) = (fold(from), fold(to)) else {
                continue;
            };
            if a != b {
                let files = format!("{} -> {}", from.join("::"), to.join("::"));
                arrows
                    .entry((a, b))
                    .or_default()
                    .extend(names.iter().map(|name| format!("{files}: {name}")));
            }
        }
        Self {
            modules: self
                .modules
                .keys()
                .filter_map(fold)
                .map(|top| (top.clone(), top[0].clone()))
                .collect(),
            arrows,
            texts: Vec::new(),
        }
    }

    /// Every circle (a strongly connected set of more than one file), described arrow by arrow.
    fn circles(&self) -> Vec<String> {
        let nodes: Vec<&Vec<String>> = self.modules.keys().collect();
        let index_of = |path: &Vec<String>| nodes.iter().position(|n| *n == path);
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (from, to) in self.arrows.keys() {
            if let (Some(a), Some(b)) = (index_of(from), index_of(to)) {
                next[a].push(b);
            }
        }
        strongly_connected(&next)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let members: BTreeSet<&Vec<String>> = component.iter().map(|&i| nodes[i]).collect();
                let mut text = String::new();
                for ((from, to), names) in &self.arrows {
                    if members.contains(from) && members.contains(to) {
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        text.push_str(&format!(
                            "  {} -> {}: {}\n",
                            self.modules[from],
                            self.modules[to],
                            names.join(", ")
                        ));
                    }
                }
                text
            })
            .collect()
    }
}

/// Where a file's child modules live: beside `lib.rs`, `main.rs` and `mod.rs`, else in a folder
/// named after the file.
fn child_directory(file: &Path, is_root: bool) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    if is_root || file.file_name().is_some_and(|name| name == "mod.rs") {
        dir
    } else {
        dir.join(file.file_stem().unwrap_or_default())
    }
}

/// The text with comments, string and character literals and `#[cfg(test)]` items blanked.
fn strip(text: &str) -> String {
    blank_test_items(&blank(text, false))
}

/// The text with comments and `#[cfg(test)]` items blanked; strings stay.
fn strip_keeping_strings(text: &str) -> String {
    blank_test_items(&blank(text, true))
}

/// Blanks comments and, unless `keep_strings`, string and character literals.
fn blank(text: &str, keep_strings: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            let start = i;
            i = after_quoted(&chars, i);
            if keep_strings {
                out.extend(&chars[start..i.min(chars.len())]);
            } else {
                out.push_str("\"\"");
            }
        } else if c == '\'' && is_char_literal(&chars, i) {
            i = after_quoted(&chars, i);
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The index after the literal opening at `chars[start]` (a `"` or `'`), escapes skipped.
fn after_quoted(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'x'` or `'\n'`, not a lifetime (`'a`).
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// Blanks the item after every `#[cfg(test)]`: up to its `;`, or through its braces.
fn blank_test_items(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let end = match (after.find(';'), after.find('{')) {
            (Some(semi), Some(brace)) if semi < brace => semi + 1,
            (_, Some(brace)) => {
                let mut depth = 0;
                let mut end = after.len();
                for (offset, c) in after[brace..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = brace + offset + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(semi), None) => semi + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token::PathSep);
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

fn ident(token: Option<&Token>) -> Option<&str> {
    match token {
        Some(Token::Ident(name)) => Some(name),
        _ => None,
    }
}

/// The names of `mod name;` declarations (files of child modules).
fn declared_modules(tokens: &[Token]) -> Vec<String> {
    tokens
        .windows(3)
        .filter_map(|window| match window {
            [Token::Ident(keyword), Token::Ident(name), Token::Punct(';')] if keyword == "mod" => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

/// Every path a file names: each leaf of each `use` tree, and each path in code.
fn references(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if ident(tokens.get(i)) == Some("use") {
            let mut end = i + 1;
            while end < tokens.len() && tokens[end] != Token::Punct(';') {
                end += 1;
            }
            let mut position = i + 1;
            use_tree(&tokens[..end], &mut position, Vec::new(), &mut paths);
            i = end + 1;
        } else if let Some(first) = ident(tokens.get(i)) {
            let starts_path = i == 0 || tokens[i - 1] != Token::PathSep;
            if starts_path && tokens.get(i + 1) == Some(&Token::PathSep) {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while tokens.get(j) == Some(&Token::PathSep) {
                    match ident(tokens.get(j + 1)) {
                        Some(segment) => path.push(segment.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                paths.push(path);
                i = j;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    paths
}

/// Expands one `use` tree (`a::{b, c::{self, D as E}}`) into its paths.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match tokens.get(*i) {
            Some(Token::Ident(name)) if name == "self" && !path.is_empty() => {
                *i += 1;
            }
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                *i += 1;
                if ident(tokens.get(*i)) == Some("as") {
                    *i += 2;
                }
            }
            Some(Token::Punct('*')) => {
                *i += 1;
            }
            Some(Token::Punct('{')) => {
                *i += 1;
                loop {
                    match tokens.get(*i) {
                        Some(Token::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Token::Punct(',')) => *i += 1,
                        None => return,
                        _ => use_tree(tokens, i, path.clone(), out),
                    }
                }
            }
            _ => {}
        }
        if tokens.get(*i) == Some(&Token::PathSep) {
            *i += 1;
            continue;
        }
        if !path.is_empty() {
            out.push(path);
        }
        return;
    }
}

/// Tarjan's strongly connected components over adjacency lists.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(state: &mut State, node: usize) {
        state.index[node] = Some(state.counter);
        state.low[node] = state.counter;
        state.counter += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        for &other in &state.next[node] {
            match state.index[other] {
                None => {
                    visit(state, other);
                    state.low[node] = state.low[node].min(state.low[other]);
                }
                Some(index) if state.on_stack[other] => {
                    state.low[node] = state.low[node].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(state.low[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let mut state = State {
        next,
        index: vec![None; next.len()],
        low: vec![0; next.len()],
        on_stack: vec![false; next.len()],
        stack: Vec::new(),
        counter: 0,
        components: Vec::new(),
    };
    for node in 0..next.len() {
        if state.index[node].is_none() {
            visit(&mut state, node);
        }
    }
    state.components
}

/// docs/privacy.md's table of personal fields is the domain's registry, row for row: what the
/// docs promise is forgotten is what erasure will forget.
#[test]
fn the_privacy_guide_lists_exactly_the_personal_fields_the_domain_registers() {
    use chronicle_domain::personal::{METADATA, METADATA_FIELDS};
    let guide =
        std::fs::read_to_string(workspace().join("docs/privacy.md")).expect("docs/privacy.md");
    let section = guide
        .split("\n## What is personal data")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut documented = BTreeSet::new();
    for row in section
        .lines()
        .filter(|line| line.starts_with("| "))
        .skip(2)
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let events = if cells[1].contains("metadata") {
            vec![METADATA.to_owned()]
        } else {
            ticked(cells[1])
        };
        for event in events {
            for field in ticked(cells[2]) {
                documented.insert((event.clone(), field));
            }
        }
    }
    let registered: BTreeSet<(String, String)> = chronicle_application::aggregates::ALL
        .iter()
        .flat_map(|kind| kind.personal_fields.iter())
        .chain(METADATA_FIELDS)
        .map(|field| (field.event_type.to_owned(), field.field.to_owned()))
        .collect();
    assert!(
        documented.len() > 10,
        "docs/privacy.md's table was not found"
    );
    assert_eq!(
        documented, registered,
        "docs/privacy.md, \"What is personal data\", and the domain's personal fields differ"
    );
}

/// `rust-version` in the workspace's Cargo.toml is a promise to whoever builds Chronicle with
/// an older toolchain: it must be at least what every locked dependency says it needs, or the
/// build fails with a dependency's error instead of Cargo's plain "requires rustc X".
#[test]
fn the_declared_rust_version_covers_every_locked_dependency() {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("rust-version = "))
        .map(|value| rust_version(value.trim_matches('"')))
        .expect("Cargo.toml declares rust-version");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let needing_more: Vec<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|package| {
            let needs = package["rust_version"].as_str()?;
            (rust_version(needs) > declared)
                .then(|| format!("{} {} needs {needs}", package["name"], package["version"]))
        })
        .collect();
    assert!(
        needing_more.is_empty(),
        "Cargo.toml says rust-version {declared:?}, but: {needing_more:?}"
    );
}

/// `1.89` as `[1, 89, 0]`, so versions compare component by component.
fn rust_version(text: &str) -> [u64; 3] {
    let mut parts = text.split('.').map(|part| part.parse::<u64>().unwrap_or(0));
    [0; 3].map(|_| parts.next().unwrap_or(0))
}
