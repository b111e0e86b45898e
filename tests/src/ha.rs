//! A Postgres cluster run as production HA set-ups run it, for failover tests: etcd, two
//! Postgres nodes managed by Patroni in synchronous mode, and HAProxy routing to the leader
//! (Debian's packages, installed by `./scripts/test`), all on 127.0.0.1 ports of their own.
//! Dropping it kills every process and removes the files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use uuid::Uuid;

use crate::process::free_port;
use crate::support::eventually;

/// The Patroni scope (cluster name) every node joins.
const SCOPE: &str = "chronicle";

/// One Patroni-managed Postgres node.
pub struct PatroniNode {
    /// Its Patroni name.
    pub name: String,
    /// Its Postgres port.
    pub port: u16,
    /// Its REST API port.
    pub rest_port: u16,
    config: PathBuf,
    data: PathBuf,
    child: Option<tokio::process::Child>,
}

/// etcd, Patroni nodes and HAProxy.
pub struct PatroniCluster {
    dir: PathBuf,
    etcd: tokio::process::Child,
    /// The nodes, in the order they were started (the first bootstraps the cluster).
    pub nodes: Vec<PatroniNode>,
    haproxy: tokio::process::Child,
    /// HAProxy's port, which routes to the leader.
    pub port: u16,
}

impl PatroniCluster {
    /// Starts etcd, `nodes` Patroni nodes in synchronous mode (the first leads) and HAProxy,
    /// and waits until the leader answers through HAProxy and a synchronous standby streams.
    pub async fn start(nodes: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("chronicle-ha-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        chown_to_postgres(&dir)?;
        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd = tokio::process::Command::new("etcd")
            .args([
                "--name",
                "default",
                "--data-dir",
                &dir.join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(log_file(&dir, "etcd.log")?)
            .stderr(log_file(&dir, "etcd.log")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting etcd (./scripts/test installs etcd-server)")?;
        wait_for_port(etcd_port).await.context("etcd")?;

        let mut cluster_nodes = Vec::new();
        for index in 0..nodes {
            let node = PatroniNode::configure(&dir, index + 1, etcd_port)?;
            cluster_nodes.push(node);
        }
        let port = free_port()?;
        let haproxy_config = dir.join("haproxy.cfg");
        std::fs::write(&haproxy_config, haproxy_config_text(port, &cluster_nodes))?;
        let haproxy = tokio::process::Command::new("haproxy")
            .args(["-f", &haproxy_config.display().to_string(), "-db"])
            .stdout(log_file(&dir, "haproxy.log")?)
            .stderr(log_file(&dir, "haproxy.log")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting haproxy (./scripts/test installs it)")?;
        let mut cluster = Self {
            dir,
            etcd,
            nodes: cluster_nodes,
            haproxy,
            port,
        };
        // The first node bootstraps; the others clone it once it leads. Bootstrapping (initdb,
        // the first start, the leader key in etcd) took over 60 s once while the whole suite
        // loaded the machine, so the wait is longer, and a failure shows why from the logs the
        // cluster's directory loses when it is dropped.
        cluster.nodes[0].start()?;
        let leading = eventually(BOOTSTRAP, || async {
            Ok(cluster.nodes[0].rest("primary").await.then_some(()))
        })
        .await;
        if let Err(error) = leading {
            let tail = |name: &str| log_tail(&cluster.dir.join(name), 40);
            let node_log = format!("{}.log", cluster.nodes[0].name);
            return Err(error.context(format!(
                "the first node leads\n--- {node_log} ---\n{}\n--- etcd.log ---\n{}",
                tail(&node_log),
                tail("etcd.log")
            )));
        }
        for node in cluster.nodes.iter_mut().skip(1) {
            node.start()?;
        }
        cluster.wait_synchronous().await?;
        wait_for_port(cluster.port).await.context("haproxy")?;
        Ok(cluster)
    }

    /// A URL of database `name` through HAProxy (always the leader).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The node that leads now, by its REST API.
    pub async fn leader(&self) -> Option<&PatroniNode> {
        for node in &self.nodes {
            if node.rest("primary").await {
                return Some(node);
            }
        }
        None
    }

    /// Waits until a leader has a synchronous standby streaming (Patroni's `/sync`).
    pub async fn wait_synchronous(&self) -> anyhow::Result<()> {
        eventually(Duration::from_secs(90), || async {
            let mut leader = false;
            let mut synchronous = false;
            for node in &self.nodes {
                leader |= node.rest("primary").await;
                synchronous |= node.rest("sync").await;
            }
            Ok((leader && synchronous).then_some(()))
        })
        .await
        .context("a leader with a synchronous standby")
    }

    /// Asks Patroni for a switchover from the current leader to `candidate`, as
    /// `patronictl switchover` does.
    pub async fn switchover(&self, candidate: &str) -> anyhow::Result<()> {
        let leader = self.leader().await.context("no leader to switch from")?;
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/switchover", leader.rest_port))
            .json(&serde_json::json!({"leader": leader.name, "candidate": candidate}))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "switchover refused: {status} {text}");
        Ok(())
    }

    /// The cluster as Patroni sees it (`GET /cluster`), for messages.
    pub async fn describe(&self) -> Value {
        for node in &self.nodes {
            let url = format!("http://127.0.0.1:{}/cluster", node.rest_port);
            if let Ok(answer) = reqwest::get(url).await {
                if let Ok(value) = answer.json().await {
                    return value;
                }
            }
        }
        Value::Null
    }
}

impl PatroniNode {
    fn configure(dir: &Path, number: usize, etcd_port: u16) -> anyhow::Result<Self> {
        let name = format!("node{number}");
        let port = free_port()?;
        let rest_port = free_port()?;
        let data = dir.join(&name);
        let sockets = dir.join(format!("{name}-sockets"));
        std::fs::create_dir_all(&sockets)?;
        chown_to_postgres(&sockets)?;
        let bin_dir = crate::process::postgres_bindir()?;
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                r#"scope: {SCOPE}
name: {name}
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 100
        fsync: off
        wal_log_hints: on
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication all 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin_dir}
  pgpass: {pgpass}
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '{sockets}'
"#,
                data = data.display(),
                bin_dir = bin_dir.display(),
                pgpass = dir.join(format!("{name}.pgpass")).display(),
                sockets = sockets.display(),
            ),
        )?;
        chown_to_postgres(&config)?;
        Ok(Self {
            name,
            port,
            rest_port,
            config,
            data,
            child: None,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let dir = self.config.parent().context("config has a directory")?;
        let log = format!("{}.log", self.name);
        let mut command = if crate::process::running_as_root() {
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", "patroni"]);
            command
        } else {
            tokio::process::Command::new("patroni")
        };
        let child = command
            .arg(&self.config)
            .stdout(log_file(dir, &log)?)
            .stderr(log_file(dir, &log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting patroni (./scripts/test installs it)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the node's REST API answers 200 at `check` (`primary`, `replica`, `sync`).
    pub async fn rest(&self, check: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/{check}", self.rest_port);
        let answer = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        matches!(answer, Ok(answer) if answer.status().is_success())
    }

    /// Kills the node as a host that dies: Patroni and every Postgres process of it, SIGKILL.
    pub fn kill(&self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &format!("patroni {}", self.config.display())])
            .status();
        let postmaster = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::trim).map(str::to_owned));
        if let Some(pid) = postmaster {
            // Its children first: without their postmaster they would linger a moment.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-P", &pid])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
        Ok(())
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        let _ = self.haproxy.start_kill();
        for node in &self.nodes {
            let _ = node.kill();
        }
        let _ = self.etcd.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn haproxy_config_text(port: u16, nodes: &[PatroniNode]) -> String {
    let mut text = format!(
        "global\n    maxconn 400\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30m\n    \
         timeout server 30m\n    timeout check 1s\n\
         listen primary\n    bind 127.0.0.1:{port}\n    option httpchk OPTIONS /primary\n    \
         http-check expect status 200\n    \
         default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n"
    );
    for node in nodes {
        text.push_str(&format!(
            "    server {} 127.0.0.1:{} maxconn 200 check port {}\n",
            node.name, node.port, node.rest_port
        ));
    }
    text
}

/// How long the first node may take to bootstrap and lead.
const BOOTSTRAP: Duration = Duration::from_secs(120);

/// The last `lines` lines of the log at `path`, or why it could not be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("({} unreadable: {error})", path.display()),
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?)
}

fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if crate::process::running_as_root() {
        let status = std::process::Command::new("chown")
            .args(["postgres:postgres", &path.display().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "chown {} failed", path.display());
    }
    Ok(())
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    crate::process::wait_for_port(&format!("127.0.0.1:{port}")).await
}
