//! The docs run: every GraphQL example in README.md and docs/*.md is extracted and run against
//! the service, so a renamed field, a changed argument or a documented answer that is no longer
//! true fails here instead of in a reader's GraphiQL.
//!
//! Each ```graphql block may hold several operations; each is run on its own, in the order of
//! the docs (README.md, then docs/*.md by name), as one caller with every role on `team-a` and
//! `team-b` (what `./scripts/dev`'s token has), on a service that signs audit checkpoints.
//! Queries and mutations must answer without errors; subscriptions must be accepted over
//! graphql-transport-ws (a document the schema rejects answers an `error` message at once).
//!
//! The docs stay readable: placeholders are written as a reader would replace them, and are
//! filled in from what the examples before them answered:
//!
//! | placeholder | becomes |
//! | --- | --- |
//! | `<task id>` | the id the last `createTask` answered |
//! | `<report id>` | the id the last `requestReport` answered |
//! | `<event id>` | the id of the first event of `<task id>` |
//! | `<cursor>` | the cursor of the first event of `<task id>` (a subscription's or the trail's) |
//! | `<from X-Correlation-Id>` | the `X-Correlation-Id` response header of the last `createTask` or `requestReport` |
//! | `<tree size>` | the tree size of the latest signed checkpoint |
//!
//! A task and a report are made first, so every placeholder has a value wherever it appears.
//! A comment in an operation states what it answers when that is not plain data:
//! `# answers CODE` (an error code, such as `IDEMPOTENCY_KEY_REUSED`) expects that error, and
//! `replayed: true` in a comment expects the payload's `replayed` to be true.
//!
//! The read side is eventually consistent, and some examples need a moment (a checkpoint to be
//! signed, a rebuild to finish before `pauseProjection`): an operation answering `NOT_FOUND`,
//! `INVALID_TRANSITION` or `STALE_READ` is tried again for a while. A document the schema
//! rejects answers `VALIDATION_FAILED`, which is never tried again.
//!
//! Besides GraphQL: the `/health/ready` examples (```json blocks with `status` and `database`)
//! must have the fields the service answers, and every `chronicle <command> --flag` written in
//! the docs' code must be a command and flag of the binary's `--help`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use chronicle_tests::{chronicle_binary, eventually, ws, TestApp};
use serde_json::{json, Value};

/// Codes an example may answer while the service catches up; tried again until [`PATIENCE`].
const TRANSIENT: [&str; 3] = ["NOT_FOUND", "INVALID_TRANSITION", "STALE_READ"];

/// How long an example answering a transient code is tried again.
const PATIENCE: Duration = Duration::from_secs(30);

/// One operation of a ```graphql block, where it is written and what it is said to answer.
#[derive(Debug, Clone)]
struct Example {
    /// `docs/api.md:123`.
    place: String,
    /// The operation as written (comments included: GraphQL ignores them).
    text: String,
    /// The comments written in or right after it.
    notes: String,
}

impl Example {
    fn kind(&self) -> &str {
        let start = self.text.trim_start();
        ["mutation", "subscription", "query", "fragment"]
            .into_iter()
            .find(|keyword| start.starts_with(keyword))
            .unwrap_or("query")
    }

    /// `# answers CODE`: the error code the docs say this operation answers.
    fn expected_code(&self) -> Option<String> {
        let (_, rest) = self.notes.split_once("answers ")?;
        let code: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        (code.len() > 2).then_some(code)
    }

    fn expects_replayed(&self) -> bool {
        self.notes.contains("replayed: true")
    }
}

/// The Markdown files whose examples run, in the order they run.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut all = vec![root.join("README.md")];
    all.extend(docs);
    all
}

/// A document's name as the failures show it: `README.md`, `docs/api.md`.
fn display(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match path.parent().and_then(Path::file_name) {
        Some(dir) if dir == "docs" => format!("docs/{name}"),
        _ => name.into_owned(),
    }
}

/// A fenced block: its language, the line of its first content line, and its content with
/// the fence's indentation removed (blocks inside list items are indented).
struct Block {
    language: String,
    first_line: usize,
    content: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    // The block being read, and its fence's indentation.
    let mut open: Option<(Block, usize)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        open = match open.take() {
            None => trimmed.strip_prefix("```").map(|language| {
                let block = Block {
                    language: language.trim().to_owned(),
                    first_line: number + 2,
                    content: String::new(),
                };
                (block, indent)
            }),
            Some((block, _)) if trimmed.trim_end() == "```" => {
                blocks.push(block);
                None
            }
            Some((mut block, fence_indent)) => {
                block.content.push_str(&line[fence_indent.min(indent)..]);
                block.content.push('\n');
                Some((block, fence_indent))
            }
        };
    }
    blocks
}

/// Splits a block into its operations by brace depth, minding strings and comments. A comment
/// belongs to the operation it is written in, or to the one that ended on its line.
fn operations(block: &str, file: &str, first_line: usize) -> Vec<Example> {
    let chars: Vec<char> = block.chars().collect();
    let mut examples: Vec<Example> = Vec::new();
    let (mut depth, mut line) = (0usize, 0usize);
    let mut start: Option<(usize, usize)> = None;
    let mut pending_notes = String::new();
    let mut last_end_line: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => line += 1,
            '#' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |n| i + n);
                let comment: String = chars[i..end].iter().collect();
                match (start, last_end_line) {
                    (Some(_), _) => pending_notes.push_str(&comment),
                    (None, Some(ended)) if ended == line => {
                        if let Some(last) = examples.last_mut() {
                            last.notes.push_str(&comment);
                        }
                    }
                    (None, _) => pending_notes.push_str(&comment),
                }
                i = end;
                continue;
            }
            '"' => {
                let block_string = chars[i..].starts_with(&['"', '"', '"']);
                let quote_len = if block_string { 3 } else { 1 };
                let mut j = i + quote_len;
                while j < chars.len() {
                    if chars[j] == '\\' {
                        j += 2;
                        continue;
                    }
                    if chars[j] == '\n' {
                        line += 1;
                    }
                    let closes = if block_string {
                        chars[j..].starts_with(&['"', '"', '"'])
                    } else {
                        chars[j] == '"'
                    };
                    if closes {
                        break;
                    }
                    j += 1;
                }
                i = j + quote_len;
                continue;
            }
            '{' => {
                if start.is_none() {
                    start = Some((i, line));
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if let Some((from, from_line)) = start.take() {
                        examples.push(Example {
                            place: format!("{file}:{}", first_line + from_line),
                            text: chars[from..=i].iter().collect(),
                            notes: std::mem::take(&mut pending_notes),
                        });
                        last_end_line = Some(line);
                    }
                }
            }
            c if !c.is_whitespace() && start.is_none() => start = Some((i, line)),
            _ => {}
        }
        i += 1;
    }
    if let Some((from, from_line)) = start {
        examples.push(Example {
            place: format!("{file}:{}", first_line + from_line),
            text: chars[from..].iter().collect(),
            notes: pending_notes,
        });
    }
    examples
}

/// Every GraphQL example of the docs, in order.
fn graphql_examples() -> Vec<Example> {
    let mut examples = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).expect("a document");
        for block in fenced_blocks(&text) {
            if block.language == "graphql" {
                examples.extend(operations(
                    &block.content,
                    &display(&path),
                    block.first_line,
                ));
            }
        }
    }
    examples
}

/// What earlier examples answered, for the placeholders of later ones.
#[derive(Default)]
struct Answers {
    task_id: String,
    report_id: String,
    correlation_id: String,
}

/// The caller of the examples and what they left behind.
struct Runner<'a> {
    app: &'a TestApp,
    token: String,
    http: reqwest::Client,
    answers: Answers,
}

impl Runner<'_> {
    /// Posts one operation: the response body and its `X-Correlation-Id`.
    async fn post(&self, query: &str) -> anyhow::Result<(Value, Option<String>)> {
        let response = self
            .http
            .post(format!("{}/graphql", self.app.base_url))
            .bearer_auth(&self.token)
            .json(&json!({"query": query}))
            .send()
            .await?;
        let correlation = response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((response.json().await?, correlation))
    }

    /// Answers from mutations that later placeholders name.
    fn remember(&mut self, data: &Value, correlation: Option<String>) {
        for (field, slot) in [("createTask", 0), ("requestReport", 1)] {
            let payload = &data[field];
            let Some(id) = payload["id"].as_str() else {
                continue;
            };
            match slot {
                0 => self.answers.task_id = id.to_owned(),
                _ => self.answers.report_id = id.to_owned(),
            }
            if payload["replayed"] != json!(true) {
                if let Some(correlation) = &correlation {
                    self.answers.correlation_id.clone_from(correlation);
                }
            }
        }
    }

    /// The value of `<name>`, or why there is none.
    async fn placeholder(&self, name: &str) -> anyhow::Result<String> {
        Ok(match name {
            "task id" => self.answers.task_id.clone(),
            "report id" => self.answers.report_id.clone(),
            "from X-Correlation-Id" => self.answers.correlation_id.clone(),
            "event id" | "cursor" => {
                let (body, _) = self
                    .post(&format!(
                        "{{ auditTrail(filter: {{aggregateId: \"{}\"}}, first: 1) {{ edges {{ cursor node {{ eventId }} }} }} }}",
                        self.answers.task_id
                    ))
                    .await?;
                let edge = &body["data"]["auditTrail"]["edges"][0];
                let value = if name == "cursor" { &edge["cursor"] } else { &edge["node"]["eventId"] };
                value
                    .as_str()
                    .with_context(|| format!("no event of task {}: {body}", self.answers.task_id))?
                    .to_owned()
            }
            "tree size" => {
                let size = eventually(PATIENCE, || async {
                    let (body, _) = self.post("{ auditCheckpoint { treeSize } }").await?;
                    Ok(body["data"]["auditCheckpoint"]["treeSize"].as_i64())
                })
                .await
                .context("no checkpoint was signed")?;
                size.to_string()
            }
            other => bail!(
                "unknown placeholder <{other}>: name one of the table in tests/tests/e2e/docs_examples.rs, or add a rule there"
            ),
        })
    }

    /// The operation with its placeholders filled in.
    async fn fill(&self, text: &str) -> anyhow::Result<String> {
        let mut filled = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let close = rest[open..]
                .find('>')
                .map(|n| open + n)
                .with_context(|| format!("an unclosed placeholder in {text}"))?;
            filled.push_str(&rest[..open]);
            filled.push_str(&self.placeholder(&rest[open + 1..close]).await?);
            rest = &rest[close + 1..];
        }
        filled.push_str(rest);
        Ok(filled)
    }

    /// Runs a query or mutation until it answers what the docs say, or says why not.
    async fn run(&mut self, example: &Example) -> anyhow::Result<()> {
        let expected = example.expected_code();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let query = self.fill(&example.text).await?;
            let (body, correlation) = self.post(&query).await?;
            let code = body["errors"][0]["extensions"]["code"]
                .as_str()
                .map(str::to_owned);
            match (code, &expected) {
                (None, None) => {
                    if example.expects_replayed() && !contains_replayed(&body["data"]) {
                        bail!("the docs say replayed: true; it answered {body}");
                    }
                    self.remember(&body["data"], correlation);
                    return Ok(());
                }
                (None, Some(expected)) => {
                    bail!("the docs say it answers {expected}; it answered {body}")
                }
                (Some(code), Some(expected)) if code == *expected => return Ok(()),
                (Some(code), _)
                    if TRANSIENT.contains(&code.as_str())
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (Some(_), _) => bail!("it answered {body}"),
            }
        }
    }

    /// Subscribes over graphql-transport-ws: accepted unless an `error` message, or a `next`
    /// with errors, comes back.
    async fn subscribe(&self, example: &Example) -> anyhow::Result<()> {
        let query = self.fill(&example.text).await?;
        let (mut socket, ack) = ws::open(self.app, &self.token).await;
        match ack {
            Some(ack) if ack["type"] == "connection_ack" => {}
            other => bail!("the connection was not acknowledged: {other:?}"),
        }
        ws::subscribe(&mut socket, "docs", &query, json!({})).await;
        let answer = ws::next_json_within(&mut socket, Duration::from_secs(2)).await;
        ws::stop(&mut socket, "docs").await;
        match answer {
            Some(message) if message["type"] == "error" => bail!("refused: {message}"),
            Some(message) if message["payload"]["errors"].is_array() => {
                bail!("answered errors: {message}")
            }
            _ => Ok(()),
        }
    }
}

fn contains_replayed(data: &Value) -> bool {
    data.as_object()
        .is_some_and(|fields| fields.values().any(|v| v["replayed"] == json!(true)))
}

/// A token with what `./scripts/dev`'s has: every role, teams `team-a` and `team-b`.
fn dev_token(app: &TestApp) -> String {
    app.token(
        "dev-admin",
        &["admin", "auditor", "member"],
        &["team-a", "team-b"],
    )
}

/// A signing key made as audit.md says (`chronicle audit keygen --out audit.pem`), in a
/// directory of its own: the private key's path, once the public key is where the docs'
/// `--public-key audit.pem.pub` says.
fn keygen() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("chronicle-docs-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let key = dir.join("audit.pem");
    let output = std::process::Command::new(chronicle_binary().expect("the chronicle binary"))
        .args(["audit", "keygen", "--out"])
        .arg(&key)
        .output()
        .expect("chronicle audit keygen");
    assert!(output.status.success(), "keygen: {output:?}");
    assert!(
        dir.join("audit.pem.pub").exists(),
        "keygen --out audit.pem writes audit.pem.pub, as docs/audit.md says"
    );
    key
}

#[test]
fn the_docs_hold_graphql_examples_and_each_is_split_into_operations() {
    let examples = graphql_examples();
    assert!(
        examples.len() > 30,
        "too few examples found: the extraction is broken ({})",
        examples.len()
    );
    for example in &examples {
        assert!(
            example.text.trim_end().ends_with('}'),
            "{}: not one whole operation: {}",
            example.place,
            example.text
        );
        assert_ne!(
            example.kind(),
            "fragment",
            "{}: fragments are not run",
            example.place
        );
    }
    // Two operations on one line, a comment after each, an object literal's braces, strings
    // holding braces and quotes: the splitter keeps them apart and notes each comment.
    let split = operations(
        "{ a(x: \"}\") { b } }  # answers NOT_FOUND\nmutation { c(i: {d: \"\\\"{\"}) { e } } # replayed: true",
        "t",
        1,
    );
    assert_eq!(split.len(), 2, "{split:?}");
    assert_eq!(split[0].expected_code().as_deref(), Some("NOT_FOUND"));
    assert_eq!(split[1].kind(), "mutation");
    assert!(split[1].expects_replayed() && split[1].place == "t:2");

    // An operation written inline would not be run: examples go in ```graphql blocks. (A
    // selection set naming fields, `{ id version }`, is not an operation.)
    let mut inline = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        for code in code_of(&text) {
            let code = code.trim();
            let field_with_arguments = code
                .strip_prefix("{ ")
                .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric()))
                .is_some_and(|rest| rest.starts_with('('));
            if code.starts_with("mutation {")
                || code.starts_with("subscription {")
                || field_with_arguments
            {
                inline.push(format!("{}: `{code}`", display(&path)));
            }
        }
    }
    assert!(
        inline.is_empty(),
        "GraphQL operations written inline are not run; put them in a ```graphql block:\n{}",
        inline.join("\n")
    );
}

#[tokio::test]
async fn every_graphql_example_in_the_docs_runs_against_the_service() {
    let key = keygen();
    let app = TestApp::spawn_with(|settings| {
        settings.audit_signing_key_file = Some(key.display().to_string());
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let mut runner = Runner {
        app: &app,
        token: dev_token(&app),
        http: reqwest::Client::new(),
        answers: Answers::default(),
    };
    // A task and a report, so that every placeholder has a value from the first example on.
    for seed in [
        "mutation { createTask(input: {title: \"Seeded by the docs test\", teamId: \"team-a\"}) { id } }",
        "mutation { requestReport(input: {kind: TEAM_SUMMARY, teamId: \"team-a\", from: \"2026-01-01T00:00:00Z\", to: \"2027-01-01T00:00:00Z\"}) { id } }",
    ] {
        let (body, correlation) = runner.post(seed).await.unwrap();
        assert!(body["errors"].is_null(), "seeding: {body}");
        runner.remember(&body["data"], correlation);
    }

    let examples = graphql_examples();
    let mut failures = Vec::new();
    for example in &examples {
        let outcome = match example.kind() {
            "subscription" => runner.subscribe(example).await,
            _ => runner.run(example).await,
        };
        if let Err(error) = outcome {
            failures.push(format!("{}: {}\n  {error:#}", example.place, example.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} GraphQL examples in the docs fail:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

/// The keys of a JSON value, recursively, as `a.b` paths.
fn key_paths(value: &Value, prefix: &str, paths: &mut BTreeSet<String>) {
    if let Some(object) = value.as_object() {
        for (key, inner) in object {
            let path = format!("{prefix}{key}");
            key_paths(inner, &format!("{path}."), paths);
            paths.insert(path);
        }
    }
}

#[tokio::test]
async fn the_readiness_examples_have_the_fields_the_service_answers() {
    let key = keygen();
    let app = TestApp::spawn_with(|settings| {
        settings.audit_signing_key_file = Some(key.display().to_string());
    })
    .await
    .unwrap();
    let (status, ready) = app.client(None).ready().await.unwrap();
    assert_eq!(status, 200, "{ready}");
    let mut served = BTreeSet::new();
    key_paths(&ready, "", &mut served);

    let mut checked = 0;
    let mut problems = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        for block in fenced_blocks(&text) {
            let Ok(example) = serde_json::from_str::<Value>(&block.content) else {
                continue;
            };
            if block.language != "json"
                || example.get("status").is_none()
                || example.get("database").is_none()
            {
                continue;
            }
            checked += 1;
            let mut documented = BTreeSet::new();
            key_paths(&example, "", &mut documented);
            let place = format!("{}:{}", display(&path), block.first_line);
            for missing in served.difference(&documented) {
                problems.push(format!("{place}: lacks {missing}"));
            }
            for extra in documented.difference(&served) {
                problems.push(format!(
                    "{place}: shows {extra}, which the service does not answer"
                ));
            }
        }
    }
    assert!(checked >= 1, "no /health/ready example found in the docs");
    assert!(
        problems.is_empty(),
        "served: {ready}\n{}",
        problems.join("\n")
    );
}

/// `chronicle <args> --help`.
fn help(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(chronicle_binary()?)
        .args(args)
        .arg("--help")
        .output()?;
    if !output.status.success() {
        bail!("chronicle {} --help: {output:?}", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The code of a Markdown text: its inline code spans (a paragraph's, so a span may wrap) and
/// the lines of its fenced blocks other than GraphQL and JSON.
fn code_of(markdown: &str) -> Vec<String> {
    fn spans(paragraph: &mut String, code: &mut Vec<String>) {
        code.extend(paragraph.split('`').skip(1).step_by(2).map(str::to_owned));
        paragraph.clear();
    }
    let mut code = Vec::new();
    let mut paragraph = String::new();
    // Inside a fenced block: whether its lines are code to read.
    let mut fence: Option<bool> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(language) = trimmed.strip_prefix("```") {
            spans(&mut paragraph, &mut code);
            fence = match fence {
                Some(_) => None,
                None => Some(!matches!(language.trim(), "graphql" | "json")),
            };
            continue;
        }
        match fence {
            Some(true) => code.push(line.to_owned()),
            Some(false) => {}
            None if trimmed.is_empty() => spans(&mut paragraph, &mut code),
            None => {
                paragraph.push_str(line);
                paragraph.push(' ');
            }
        }
    }
    spans(&mut paragraph, &mut code);
    code
}

/// Each `chronicle <command> [<subcommand>] --flag ...` written in `code`: the command path
/// and the flags after it.
fn invocations(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut found = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let is_binary = *word == "chronicle" || word.ends_with("/chronicle");
        let Some(next) = words.get(index + 1) else {
            continue;
        };
        if !is_binary || !next.starts_with(|c: char| c.is_ascii_lowercase()) || *next == "chronicle"
        {
            continue;
        }
        let mut path = vec![next.to_string()];
        let mut flags = Vec::new();
        for later in &words[index + 2..] {
            if later.starts_with(['|', '>', '#', ';', '&']) {
                break;
            }
            if path.len() == 1
                && path[0] == "audit"
                && later.starts_with(|c: char| c.is_ascii_lowercase())
            {
                path.push(later.to_string());
                continue;
            }
            if let Some(flag) = later.trim_start_matches('[').strip_prefix("--") {
                let flag: String = flag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                flags.push(flag);
            }
        }
        found.push((path, flags));
    }
    found
}

#[test]
fn every_chronicle_command_in_the_docs_exists_with_its_flags() {
    let commands = subcommands(&help(&[]).unwrap());
    assert!(
        commands.contains("serve"),
        "no commands read from --help: {commands:?}"
    );
    let mut helps: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        for code in code_of(&text) {
            for (command, flags) in invocations(&code) {
                let place = format!("{}: `{}`", display(&path), code.trim());
                if !commands.contains(&command[0]) {
                    problems.push(format!("{place}: no command {}", command[0]));
                    continue;
                }
                if command.len() > 1 {
                    let audit = helps
                        .entry(vec!["audit".to_owned()])
                        .or_insert_with(|| help(&["audit"]).unwrap());
                    if !subcommands(audit).contains(&command[1]) {
                        problems.push(format!("{place}: no command audit {}", command[1]));
                        continue;
                    }
                }
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                let command_help = helps
                    .entry(command.clone())
                    .or_insert_with(|| help(&args).unwrap());
                for flag in flags {
                    if !command_help.contains(&format!("--{flag}")) {
                        problems.push(format!(
                            "{place}: chronicle {} has no --{flag}",
                            command.join(" ")
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 20,
        "too few commands found in the docs ({checked})"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
