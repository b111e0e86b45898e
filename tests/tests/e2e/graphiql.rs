//! GraphiQL in a real browser: headless Chromium, driven through chromedriver's WebDriver
//! protocol, loads `/graphql`, runs a query with and without a token and shows the answers;
//! every file the page loads comes from the service itself (no CDN).
//!
//! Needs `chromedriver` (`CHROMEDRIVER`, else on the path) and Chromium (`CHROMIUM_BIN`, else
//! `/usr/bin/chromium`); `./scripts/test` installs both (Debian's `chromium`, `chromium-driver`).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chronicle_tests::{eventually, free_port, TestApp};
use serde_json::{json, Value};

/// A chromedriver process and one browser session in it.
struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the browsers it starts join: dropping the Browser
            // kills the group, so no Chromium outlives the test.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting {driver_bin} (./scripts/test installs chromium-driver)")
            })?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(20), || async {
            Ok(http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|_| ()))
        })
        .await?;
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1000"],
                },
            }}}))
            .send()
            .await?
            .json()
            .await?;
        let session = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no browser session: {created}"))?
            .to_owned();
        Ok(Self {
            http,
            session,
            base,
            driver,
        })
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer: Value = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if answer["value"]["error"].is_string() {
            bail!("WebDriver {path}: {}", answer["value"]);
        }
        Ok(answer["value"].clone())
    }

    async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await
            .map(|_| ())
    }

    /// Runs `script` in the page with `args`; returns what it returns.
    async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Clicks the element a locator (`css selector` or `xpath`) finds, as a user would.
    async fn click(&self, using: &str, value: &str) -> anyhow::Result<()> {
        let element = self
            .command(
                reqwest::Method::POST,
                "/element",
                json!({"using": using, "value": value}),
            )
            .await?;
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .context("no element id")?
            .to_owned();
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await
        .map(|_| ())
    }

    /// Types `query` and `headers` into GraphiQL's editors, presses the run button and returns
    /// the response pane's JSON once it shows one.
    async fn run(&self, query: &str, headers: &str) -> anyhow::Result<Value> {
        self.script(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]);
             document.querySelector('.graphiql-response .CodeMirror').CodeMirror.setValue('');",
            json!([query]),
        )
        .await?;
        self.click("xpath", "//button[normalize-space()='Headers']")
            .await?;
        self.script(
            "document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror').CodeMirror.setValue(arguments[0]);",
            json!([headers]),
        )
        .await?;
        self.click("css selector", ".graphiql-execute-button")
            .await?;
        eventually(Duration::from_secs(20), || async {
            let shown = self
                .script(
                    "return document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue();",
                    json!([]),
                )
                .await?;
            Ok(shown
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok()))
        })
        .await
        .context("GraphiQL showed no response")
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group: chromedriver and every Chromium process it started.
    /// Asking chromedriver to end the session is not enough (it is asynchronous, and a test
    /// that fails first never asks), and killing chromedriver alone leaves the browser running.
    fn drop(&mut self) {
        if let Some(group) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test]
async fn graphiql_loads_from_the_service_and_runs_a_query_with_a_token() {
    let app = TestApp::spawn().await.unwrap();
    app.create_task("Seen in the browser", "team-a")
        .await
        .unwrap();
    let browser = Browser::start().await.unwrap();
    browser
        .open(&format!("{}/graphql", app.base_url))
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || async {
        let ready = browser
            .script(
                "return !!document.querySelector('.graphiql-query-editor .CodeMirror') && !!document.querySelector('.graphiql-execute-button');",
                json!([]),
            )
            .await?;
        Ok(ready.as_bool().unwrap_or(false).then_some(()))
    })
    .await
    .expect("GraphiQL rendered");

    let query =
        "{ tasks(filter: {teamId: \"team-a\"}) { totalCount edges { node { title status } } } }";
    let refused = browser
        .run(query, "{\"Authorization\": \"Bearer not-a-token\"}")
        .await
        .unwrap();
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );

    let headers = json!({"Authorization": format!("Bearer {}", app.admin_token)}).to_string();
    let answered = browser.run(query, &headers).await.unwrap();
    assert_eq!(answered["data"]["tasks"]["totalCount"], 1, "{answered}");
    assert_eq!(
        answered["data"]["tasks"]["edges"][0]["node"],
        json!({"title": "Seen in the browser", "status": "OPEN"})
    );

    // Everything the page loaded came from the service: no CDN, works offline.
    let loaded = browser
        .script(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            json!([]),
        )
        .await
        .unwrap();
    let loaded: Vec<&str> = loaded
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(loaded.iter().any(|url| url.ends_with("graphiql.min.js")));
    for url in &loaded {
        assert!(
            url.starts_with(&app.base_url),
            "loaded from elsewhere: {url}"
        );
    }
}
