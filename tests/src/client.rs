//! The one GraphQL client of the tests and the requests they share: every test talks to the
//! service the way an application would, through [`GraphqlClient`].

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// `createTask` answering the new task's id and version; variables from [`new_task`].
pub const CREATE_TASK: &str =
    "mutation($i: CreateTaskInput!) { createTask(input: $i) { id version } }";

/// The variables of [`CREATE_TASK`] for a task titled `title` in `team`.
pub fn new_task(title: &str, team: &str) -> Value {
    json!({"i": {"title": title, "teamId": team}})
}

/// A GraphQL client of one service address, as an application would hold it.
#[derive(Clone)]
pub struct GraphqlClient {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
}

/// What one GraphQL request came to.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The service answered with data and no error.
    Data(Value),
    /// The service answered with an error; its `extensions.code` and message.
    Error {
        /// `extensions.code`.
        code: String,
        /// The message.
        message: String,
    },
    /// No answer: the connection was refused or broke.
    Unreachable(String),
}

impl GraphqlClient {
    /// A client of `base_url` (`http://host:port`) sending `token` as bearer.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self::with_token(base_url, Some(token.into()))
    }

    /// A client sending `token` as bearer when there is one (none: an anonymous caller).
    pub fn with_token(base_url: impl Into<String>, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a reqwest client"),
            base_url: base_url.into(),
            token,
        }
    }

    /// A client of the same service sending `token` instead, sharing this one's connections.
    pub fn as_caller(&self, token: Option<&str>) -> Self {
        Self {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// The service's address (`http://host:port`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Posts one operation; the whole response body.
    pub async fn body(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base_url))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await?.json().await?)
    }

    /// Sends one operation and says what came of it.
    pub async fn send(&self, query: &str, variables: Value) -> Answer {
        let body = match self.body(query, variables).await {
            Ok(body) => body,
            Err(error) => return Answer::Unreachable(error.to_string()),
        };
        match body["errors"].get(0) {
            Some(error) => Answer::Error {
                code: error["extensions"]["code"]
                    .as_str()
                    .unwrap_or("NONE")
                    .to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            },
            None => Answer::Data(body["data"].clone()),
        }
    }

    /// Sends an operation that must succeed; returns its data.
    pub async fn data(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        match self.send(query, variables).await {
            Answer::Data(data) => Ok(data),
            other => bail!("unexpected answer: {other:?}"),
        }
    }

    /// Creates a task in `team` as this client's caller; its id.
    pub async fn create_task(&self, title: &str, team: &str) -> anyhow::Result<String> {
        let data = self.data(CREATE_TASK, new_task(title, team)).await?;
        Ok(data["createTask"]["id"]
            .as_str()
            .context("createTask returned no id")?
            .to_owned())
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// `/health/ready`: status code and body.
    pub async fn ready(&self) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}/health/ready", self.base_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }
}
