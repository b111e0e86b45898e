//! The environment variables each `chronicle` command reads, for its `--help`.
//!
//! They are rendered from the configuration table of docs/operations.md, compiled in. That
//! table is the one list: operators read it in the guide and in `--help`, and the architecture
//! test holds it to the code (every variable the code reads is in it, with the default the code
//! uses). What this module adds is which command reads which of them.

/// The operations guide, whose "Configuration" section holds the table.
const GUIDE: &str = include_str!("../../docs/operations.md");

/// One variable of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its name (`KAFKA_BROKERS`).
    pub name: String,
    /// Its default as the table gives it (`127.0.0.1:9092`, `none`, `set by ./scripts/dev`).
    pub default: String,
    /// What it does, as plain text.
    pub meaning: String,
}

/// Every variable of the table, in its order. A row naming several variables gives each its
/// own default when the default cell lists as many, else the whole cell.
pub fn table() -> Vec<Variable> {
    let section = GUIDE
        .split("\n## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let mut variables = Vec::new();
    for line in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        let [names, default, meaning] = cells[..] else {
            continue;
        };
        let names = backticked(names);
        let defaults = defaults_of(default, names.len());
        for (index, name) in names.iter().enumerate() {
            let default = defaults[index].clone();
            variables.push(Variable {
                name: name.clone(),
                default,
                meaning: plain(meaning),
            });
        }
    }
    variables
}

/// One default per variable of a row: a cell listing as many values, comma-separated, gives
/// each its own; otherwise the first variable has the cell and the others none (the row's
/// later variables are options of the first, as SASL's are of the protocol).
fn defaults_of(cell: &str, names: usize) -> Vec<String> {
    let text = plain(cell);
    let parts: Vec<String> = text.split(", ").map(str::to_owned).collect();
    if names > 1 && parts.len() == names {
        return parts;
    }
    let mut defaults = vec![text];
    defaults.resize(names.max(1), "none".to_owned());
    defaults
}

/// What a cell writes in backticks.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .filter(|name| !name.is_empty())
        .collect()
}

/// Markdown as plain text: links keep their text, backticks go.
fn plain(markdown: &str) -> String {
    let mut text = String::new();
    let mut rest = markdown.trim();
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|at| open + at) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|at| close + at) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.replace('`', "")
}

/// What `Settings::from_env` reads: the store, the broker and the service's own settings.
const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "CHRONICLE_SESSION_DATABASE_URL",
    "CHRONICLE_READ_*",
    "KAFKA_*",
    "CHRONICLE_SNAPSHOT_EVERY",
    "CHRONICLE_GROUP_COMMIT",
    "CHRONICLE_DB_*",
    "CHRONICLE_OUTBOX_RETENTION_SECS",
    "CHRONICLE_RELAY_READ_INTERVAL_MS",
    "CHRONICLE_WORKER_MAX_ATTEMPTS",
    "CHRONICLE_AUDIT_*",
    "CHRONICLE_SEAL_PERSONAL_DATA",
    "CHRONICLE_PRIVACY_KEY_CACHE_SECS",
    "CHRONICLE_REBUILD_OUTDATED",
    "CHRONICLE_SHUTDOWN_TIMEOUT_SECS",
];
/// The database alone.
const DATABASE: &[&str] = &["DATABASE_URL"];
/// Token checking and signing.
const AUTH: &[&str] = &["CHRONICLE_AUTH", "CHRONICLE_JWT_*"];
/// Where the API listens and its request limits.
const API: &[&str] = &[
    "CHRONICLE_HTTP_ADDR",
    "CHRONICLE_GRAPHQL_*",
    "CHRONICLE_MAX_BODY_BYTES",
    "CHRONICLE_REQUEST_TIMEOUT_MS",
    "CHRONICLE_RATE_LIMIT_*",
];
/// The async runtime's size, which every command reads before it starts.
const RUNTIME: &[&str] = &["CHRONICLE_RUNTIME_WORKERS"];
/// Logs and trace export.
const TELEMETRY: &[&str] = &["CHRONICLE_LOG_FORMAT", "OTEL_*"];

/// Which variables each command reads: `(command path, selectors)`, a selector ending in `*`
/// naming every variable it prefixes. `serve` (and `chronicle` itself) read them all. A command
/// that reads `Settings` reads every one of them, and stops on any that is malformed.
pub const COMMANDS: &[(&str, &[&[&str]])] = &[
    ("migrate", &[RUNTIME, DATABASE, TELEMETRY]),
    ("replay", &[RUNTIME, DATABASE]),
    ("health", &[RUNTIME, API]),
    ("held", &[RUNTIME, SETTINGS]),
    ("dead-letters", &[RUNTIME, SETTINGS]),
    ("projection-failures", &[RUNTIME, DATABASE]),
    ("erase", &[RUNTIME, SETTINGS]),
    ("token", &[RUNTIME, AUTH]),
    ("audit public-key", &[RUNTIME, SETTINGS]),
    // The key only for `--format signed-note`, which signs the note.
    (
        "audit export",
        &[RUNTIME, DATABASE, &["CHRONICLE_AUDIT_SIGNING_KEY_FILE"]],
    ),
    ("audit verify", &[RUNTIME, SETTINGS]),
    ("audit keygen", &[RUNTIME]),
    ("audit verify-export", &[RUNTIME]),
    ("audit verify-note", &[RUNTIME]),
];

/// Whether `selector` names `name`.
fn selects(selector: &str, name: &str) -> bool {
    match selector.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == selector,
    }
}

/// The variables `selectors` name, in the table's order; every one when `selectors` is `None`.
pub fn read_by(selectors: Option<&[&[&str]]>) -> Vec<Variable> {
    table()
        .into_iter()
        .filter(|variable| match selectors {
            None => true,
            Some(groups) => groups
                .iter()
                .flat_map(|group| group.iter())
                .any(|selector| selects(selector, &variable.name)),
        })
        .collect()
}

/// The `Environment` section of a command's help: each variable with its default and meaning,
/// wrapped to `width` columns.
pub fn help(variables: &[Variable], width: usize) -> String {
    if variables.is_empty() {
        return "Environment: none read.".to_owned();
    }
    let mut out = String::from(
        "Environment (also read from a .env file in the working directory or above):\n",
    );
    for variable in variables {
        out.push_str(&format!(
            "  {} [default: {}]\n",
            variable.name, variable.default
        ));
        out.push_str(&wrapped(&variable.meaning, "      ", width));
    }
    out
}

/// `text` in lines of at most `width` columns, each starting with `indent`.
fn wrapped(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_variable_its_own_default() {
        let table = table();
        let find = |name: &str| table.iter().find(|v| v.name == name).unwrap().clone();
        assert_eq!(find("KAFKA_BROKERS").default, "127.0.0.1:9092");
        assert_eq!(find("CHRONICLE_RATE_LIMIT_BURST").default, "100");
        assert_eq!(find("CHRONICLE_JWT_SECRET").default, "none");
        assert_eq!(find("DATABASE_URL").default, "set by ./scripts/dev");
        assert_eq!(find("KAFKA_SECURITY_PROTOCOL").default, "plaintext");
        assert_eq!(find("KAFKA_SASL_PASSWORD").default, "none");
        assert_eq!(find("OTEL_SERVICE_NAME").default, "chronicle");
        assert_eq!(find("OTEL_RESOURCE_ATTRIBUTES").default, "none");
        let url = find("DATABASE_URL");
        assert!(
            !url.meaning.contains('`') && !url.meaning.contains("](#"),
            "{url:?}"
        );
        assert!(table.len() > 60, "{}", table.len());
    }

    #[test]
    fn every_selector_names_a_variable_of_the_table() {
        let table = table();
        for (command, groups) in COMMANDS {
            for selector in groups.iter().flat_map(|group| group.iter()) {
                assert!(
                    table.iter().any(|v| selects(selector, &v.name)),
                    "{command}: {selector} names no variable of docs/operations.md's table"
                );
            }
        }
    }

    #[test]
    fn help_lists_what_a_command_reads_and_nothing_else() {
        let token = help(&read_by(Some(COMMANDS[7].1)), 100);
        assert_eq!(COMMANDS[7].0, "token");
        assert!(token.contains("CHRONICLE_JWT_AUDIENCE") && token.contains("CHRONICLE_AUTH"));
        assert!(
            token.contains("CHRONICLE_JWT_SECRET [default: none]"),
            "{token}"
        );
        assert!(!token.contains("KAFKA_BROKERS"), "{token}");
        let all = help(&read_by(None), 100);
        for variable in table() {
            assert!(all.contains(&format!("  {} [default: ", variable.name)));
        }
        // Meanings are wrapped; a word longer than the line (a URL) stands alone.
        for line in all.lines().filter(|line| line.starts_with("      ")) {
            assert!(line.len() <= 100 || !line.trim().contains(' '), "{line}");
        }
    }
}
