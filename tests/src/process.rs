//! Real processes for fault tests: `chronicle` binaries, a private broker and a private Postgres
//! cluster that a test may kill, freeze or restart without disturbing the tests beside it.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use chronicle_infrastructure::config::Settings;
use serde_json::Value;
use uuid::Uuid;

use crate::client::GraphqlClient;
use crate::support::{eventually, TEST_SECRET};

/// A TCP port nobody listened on a moment ago (the OS's choice for port 0).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits (up to 20 s) until something accepts connections at `address` (`host:port`).
pub(crate) async fn wait_for_port(address: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(20), || async {
        Ok(tokio::net::TcpStream::connect(address)
            .await
            .ok()
            .map(|_| ()))
    })
    .await
}

/// Sends `signal` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) to a process, as an operator would.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill {signal} {pid} failed: {status}");
    }
    Ok(())
}

/// A `chronicle` process (the real binary), for tests that kill, stop or restart it.
///
/// The binary is `CHRONICLE_BIN`, else `target/<profile>/chronicle` next to the test binary
/// (`./scripts/test` builds it before the tests). Dropping the handle kills the process.
pub struct ChronicleProcess {
    child: tokio::process::Child,
    /// Where it serves health and metrics (every `serve` does), and GraphQL when it runs the API.
    http_url: Option<String>,
    base_url: Option<String>,
    log: Option<PathBuf>,
}

impl ChronicleProcess {
    /// Starts `chronicle serve --only <only>` with the environment `settings` describe; when
    /// the API is among the parts it listens on a port of its own ([`ChronicleProcess::client`]).
    pub fn serve(settings: &Settings, only: &str) -> anyhow::Result<Self> {
        Self::serve_logged(settings, only, &[], false)
    }

    /// Like [`ChronicleProcess::serve`] with extra environment variables; with `capture`, the
    /// process's output goes to a file that [`ChronicleProcess::output`] reads.
    pub fn serve_logged(
        settings: &Settings,
        only: &str,
        env: &[(&str, &str)],
        capture: bool,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = capture.then(|| {
            std::env::temp_dir().join(format!("chronicle-{}.log", Uuid::now_v7().simple()))
        });
        let mut process = Self::spawn(
            settings,
            &["serve", "--only", only],
            &format!("127.0.0.1:{port}"),
            env,
            log.as_deref(),
        )?;
        process.log = log;
        process.http_url = Some(format!("http://127.0.0.1:{port}"));
        if only.split(',').any(|part| part.trim() == "api") {
            process.base_url = Some(format!("http://127.0.0.1:{port}"));
        }
        Ok(process)
    }

    /// Starts `chronicle <args>` with the environment `settings` describe.
    pub fn run(settings: &Settings, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(settings, args, "127.0.0.1:0", &[], None)
    }

    /// Like [`ChronicleProcess::run`] with extra environment variables (they win).
    pub fn run_with(
        settings: &Settings,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn(settings, args, "127.0.0.1:0", env, None)
    }

    fn spawn(
        settings: &Settings,
        args: &[&str],
        http_addr: &str,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let binary = chronicle_binary()?;
        let mut command = tokio::process::Command::new(&binary);
        if let Some(log) = log {
            let file = std::fs::File::create(log)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        let child = command
            .args(args)
            .env("DATABASE_URL", settings.database_url.expose())
            .env(
                "CHRONICLE_DB_MAX_CONNECTIONS",
                settings.database_max_connections.to_string(),
            )
            .env("KAFKA_BROKERS", &settings.kafka.brokers)
            .env("KAFKA_TOPIC_PREFIX", &settings.kafka.topic_prefix)
            .env("KAFKA_PARTITIONS", settings.kafka.partitions.to_string())
            .env(
                "KAFKA_FETCH_WAIT_MAX_MS",
                settings.kafka.fetch_wait_max_ms.to_string(),
            )
            .env(
                "CHRONICLE_AUDIT_CHECKPOINT_SECS",
                settings.audit_checkpoint_interval.as_secs().to_string(),
            )
            .envs(
                settings
                    .audit_signing_key_file
                    .iter()
                    .map(|path| ("CHRONICLE_AUDIT_SIGNING_KEY_FILE", path.as_str())),
            )
            .env(
                "CHRONICLE_SEAL_PERSONAL_DATA",
                settings.seal_personal_data.to_string(),
            )
            .envs(
                settings
                    .session_database_url
                    .iter()
                    .map(|url| ("CHRONICLE_SESSION_DATABASE_URL", url.expose())),
            )
            .envs(settings.read_replica.iter().flat_map(|replica| {
                [
                    (
                        "CHRONICLE_READ_DATABASE_URL",
                        replica.url.expose().to_owned(),
                    ),
                    (
                        "CHRONICLE_READ_REPLICA_MAX_WAIT_MS",
                        replica.max_wait.as_millis().to_string(),
                    ),
                    (
                        "CHRONICLE_READ_REPLICA_MAX_LAG_MS",
                        replica.max_lag.as_millis().to_string(),
                    ),
                ]
            }))
            .env(
                "CHRONICLE_WORKER_MAX_ATTEMPTS",
                settings.worker_max_attempts.to_string(),
            )
            .env(
                "KAFKA_MESSAGE_MAX_BYTES",
                settings.kafka.message_max_bytes.to_string(),
            )
            .env("KAFKA_LINGER_MS", settings.kafka.linger_ms.to_string())
            .env("CHRONICLE_JWT_SECRET", TEST_SECRET)
            .env("CHRONICLE_HTTP_ADDR", http_addr)
            .env("CHRONICLE_RATE_LIMIT_PER_SECOND", "0")
            .env(
                "CHRONICLE_SNAPSHOT_EVERY",
                settings.snapshot_every.to_string(),
            )
            // Set only when off (it is on by default), so a caller's own
            // CHRONICLE_GROUP_COMMIT (the bench's) passes.
            .envs((!settings.group_commit).then_some(("CHRONICLE_GROUP_COMMIT", "false")))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Self {
            child,
            http_url: None,
            base_url: None,
            log: None,
        })
    }

    /// What the process printed so far (when started with `capture`).
    pub fn output(&self) -> anyhow::Result<String> {
        let log = self.log.as_ref().context("output is not captured")?;
        Ok(std::fs::read_to_string(log)?)
    }

    /// The operating system's id of the process.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
    }

    /// Sends a signal (`-TERM`, `-KILL`, `-STOP`, `-CONT`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid()?, signal)
    }

    /// A GraphQL client of this process's API, sending `token`.
    pub fn client(&self, token: &str) -> anyhow::Result<GraphqlClient> {
        let base_url = self
            .base_url
            .clone()
            .context("this process does not run the API")?;
        Ok(GraphqlClient::new(base_url, token))
    }

    /// Where this process serves `/health/*` and `/metrics` (every `serve` does).
    pub fn http_url(&self) -> anyhow::Result<&str> {
        self.http_url
            .as_deref()
            .context("this process is not a `serve`")
    }

    /// An anonymous client of this process's HTTP listener (health and metrics).
    fn ops_client(&self) -> anyhow::Result<GraphqlClient> {
        Ok(GraphqlClient::new(self.http_url()?.to_owned(), ""))
    }

    /// `/health/ready`'s body once it answers 200 (within `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Value> {
        let client = self.ops_client()?;
        eventually(timeout, || async {
            Ok(match client.ready().await {
                Ok((200, body)) => Some(body),
                _ => None,
            })
        })
        .await
        .context("the service did not become ready")
    }

    /// Whether this process's relay holds the relay lock now (`None` when it does not answer).
    pub async fn relay_leader(&self) -> Option<bool> {
        let client = self.ops_client().ok()?;
        let (_, body) = client.ready().await.ok()?;
        body["relay"]["leader"].as_bool()
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("the process did not exit within {timeout:?}"))?
            .context("waiting for the process")
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

impl Drop for ChronicleProcess {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// The `chronicle` binary: `CHRONICLE_BIN`, else `target/<profile>/chronicle` next to the
/// test binary.
pub fn chronicle_binary() -> anyhow::Result<PathBuf> {
    let binary = match std::env::var_os("CHRONICLE_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(|deps| deps.parent())
            .context("no target directory above the test binary")?
            .join("chronicle"),
    };
    if !binary.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p chronicle --bin chronicle` (./scripts/test does)",
            binary.display()
        );
    }
    Ok(binary)
}

/// A private PgBouncer on a port of its own, in front of the Postgres at
/// `127.0.0.1:upstream_port`; stopped when dropped. Session mode runs Debian's `pgbouncer`;
/// transaction mode needs 1.21 or later (`max_prepared_statements`), `PGBOUNCER_BIN`, which
/// `./scripts/test` builds.
pub struct PrivatePgBouncer {
    child: tokio::process::Child,
    dir: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivatePgBouncer {
    /// Starts it with `pool_mode` (`session`, `transaction`) and the settings Chronicle needs
    /// (docs/operations.md, "Behind a connection pooler").
    pub async fn start(upstream_port: u16, pool_mode: &str) -> anyhow::Result<Self> {
        let (binary, prepared) = match pool_mode {
            "transaction" => (
                std::env::var("PGBOUNCER_BIN").context(
                    "PGBOUNCER_BIN is not set: transaction pooling needs PgBouncer 1.21 or \
                     later, which ./scripts/test builds",
                )?,
                // PgBouncer keeps each client's prepared statements and prepares them on
                // whichever server connection serves it (sqlx keeps up to 100 a connection).
                "max_prepared_statements = 200\n",
            ),
            _ => ("pgbouncer".to_owned(), ""),
        };
        // Transaction mode with few server connections: clients share them from one
        // transaction to the next, as a pooler in production makes them.
        let servers = if pool_mode == "transaction" { 3 } else { 40 };
        let dir = std::env::temp_dir().join(format!("chronicle-pgb-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n")?;
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 pidfile = {pidfile}\n\
                 pool_mode = {pool_mode}\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 default_pool_size = {servers}\nmax_client_conn = 400\n{prepared}",
                users = dir.join("users.txt").display(),
                pidfile = dir.join("pgbouncer.pid").display(),
            ),
        )?;
        // PgBouncer refuses to run as root.
        let mut command = if running_as_root() {
            run(std::process::Command::new("chown").args([
                "-R",
                "postgres:postgres",
                &dir.display().to_string(),
            ]))?;
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", &binary]);
            command
        } else {
            tokio::process::Command::new(&binary)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary} (./scripts/test installs it)"))?;
        let address = format!("127.0.0.1:{port}");
        wait_for_port(&address).await?;
        Ok(Self { child, dir, port })
    }

    /// A URL of database `name` through it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PrivatePgBouncer {
    fn drop(&mut self) {
        // PgBouncer itself (its pid file), since killing `runuser` would leave it running.
        if let Some(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            let _ = send_signal(pid, "-KILL");
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Tansu broker (`TANSU_BIN`, else `tansu` on the path) on a port of its own, for
/// tests that stop it.
pub struct PrivateBroker {
    child: tokio::process::Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

impl PrivateBroker {
    /// Starts the broker and waits until it listens.
    pub async fn start() -> anyhow::Result<Self> {
        let address = format!("127.0.0.1:{}", free_port()?);
        let url = format!("tcp://{address}");
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
        let child = tokio::process::Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin} (set TANSU_BIN)"))?;
        wait_for_port(&address).await?;
        Ok(Self { child, address })
    }

    /// Sends a signal (`-STOP` freezes it, `-CONT` thaws it).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.child.id().context("the broker exited")?, signal)
    }
}

/// A private Postgres cluster in a temporary directory, on a port of its own, for tests that
/// stop and restart the database. Initialised with the server's own binaries (the newest
/// `/usr/lib/postgresql/*/bin`, or `CHRONICLE_PG_BINDIR`), as the `postgres` user when the
/// tests run as root (initdb refuses root). Dropping it stops the server and removes the files.
pub struct PrivatePostgres {
    bindir: PathBuf,
    data: PathBuf,
    /// Server options beyond port, socket and listen address.
    options: String,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster for fault tests: without fsync (nothing here measures
    /// durability, and restarts are faster).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with("-c fsync=off -c max_connections=100").await
    }

    /// Initialises and starts a cluster with Postgres's durable defaults (fsync, synchronous
    /// commit) plus `options` (`-c name=value ...`), for benchmarks.
    pub async fn start_durable(options: &str) -> anyhow::Result<Self> {
        Self::start_with(options).await
    }

    /// Initialises and starts a cluster that speaks only TLS over TCP, as a managed Postgres
    /// does: `ssl=on` with a server certificate for `127.0.0.1` signed by a CA made here, and a
    /// `pg_hba.conf` that rejects every connection without TLS and asks every TLS connection
    /// for a client certificate of that CA (`cert` authentication: its CN is the user).
    pub async fn start_tls() -> anyhow::Result<(Self, TlsFiles)> {
        let mut cluster = Self::initialise("-c fsync=off -c max_connections=100")?;
        let dir = cluster.data.join("tls");
        std::fs::create_dir_all(&dir)?;
        let files = TlsFiles::generate(&dir)?;
        let server_files = ["server.crt", "server.key", "ca.crt"];
        if running_as_root() {
            for file in server_files {
                run(std::process::Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.join(file)))?;
            }
        }
        std::fs::write(
            cluster.data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 cert\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )?;
        cluster.options = format!(
            "{} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={}",
            cluster.options,
            dir.join("server.crt").display(),
            dir.join("server.key").display(),
            dir.join("ca.crt").display(),
        );
        cluster.start_server()?;
        Ok((cluster, files))
    }

    /// Starts a streaming standby of `primary`, known to it as `name` (its
    /// `application_name`): a `pg_basebackup` of the primary with `-R`, which writes
    /// `standby.signal` and the primary's address, on a port of its own.
    pub async fn start_standby_of(primary: &PrivatePostgres, name: &str) -> anyhow::Result<Self> {
        let standby = Self::empty(&primary.options)?;
        // Postgres refuses a data directory others can read.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&standby.data, std::fs::Permissions::from_mode(0o700))?;
        }
        run(standby.as_postgres("pg_basebackup").args([
            "-D",
            &standby.data.display().to_string(),
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres application_name={name}",
                primary.port
            ),
            "-X",
            "stream",
            "-R",
            "--no-sync",
            // At once, not paced over the checkpoint interval (minutes after a CREATE DATABASE).
            "--checkpoint=fast",
        ]))?;
        standby.start_server()?;
        Ok(standby)
    }

    /// Promotes this standby to primary and waits until it accepts writes.
    pub fn promote(&self) -> anyhow::Result<()> {
        run(self.pg_ctl().args(["-w", "promote"]))
    }

    /// Kills the server and every one of its processes with SIGKILL, as a host that dies.
    pub fn kill(&self) -> anyhow::Result<()> {
        let pid = self.postmaster_pid()?.to_string();
        // Children first: without their postmaster they would linger until they notice.
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-P", &pid])
            .status();
        run(std::process::Command::new("kill").args(["-KILL", &pid]))
    }

    async fn start_with(options: &str) -> anyhow::Result<Self> {
        let cluster = Self::initialise(options)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A new cluster's files, not started yet.
    fn initialise(options: &str) -> anyhow::Result<Self> {
        let cluster = Self::empty(options)?;
        run(cluster.as_postgres("initdb").args([
            "-D",
            &cluster.data.display().to_string(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]))?;
        Ok(cluster)
    }

    /// A cluster with an empty data directory (the server's user owns it) and a port.
    fn empty(options: &str) -> anyhow::Result<Self> {
        let bindir = postgres_bindir()?;
        let data = std::env::temp_dir().join(format!("chronicle-pg-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&data)?;
        if running_as_root() {
            run(std::process::Command::new("chown").args([
                "-R",
                "postgres:postgres",
                &data.display().to_string(),
            ]))?;
        }
        Ok(Self {
            bindir,
            port: free_port()?,
            data,
            options: options.to_owned(),
        })
    }

    /// A URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's main process (every other server process is its child).
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .context("reading postmaster.pid")?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .context("postmaster.pid names no process")
    }

    /// Stops the server (fast shutdown: sessions are ended, as in a restart).
    pub fn stop_server(&self) -> anyhow::Result<()> {
        run(self.pg_ctl().args(["-m", "fast", "-w", "stop"]))
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.data.display(),
            self.options
        );
        let log = self.data.join("server.log");
        run(self.pg_ctl().args([
            "-l",
            &log.display().to_string(),
            "-o",
            &options,
            "-w",
            "start",
        ]))
    }

    fn pg_ctl(&self) -> std::process::Command {
        let mut command = self.as_postgres("pg_ctl");
        command.args(["-D", &self.data.display().to_string()]);
        command
    }

    fn as_postgres(&self, program: &str) -> std::process::Command {
        let program = self.bindir.join(program);
        if running_as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }
}

/// Certificates for a TLS-only [`PrivatePostgres`], made with the `openssl` command: a CA, the
/// server's certificate (for `IP:127.0.0.1`), a client certificate for the user `postgres`, and
/// another CA that signed none of them.
pub struct TlsFiles {
    /// The CA that signed the server's and the client's certificates.
    pub ca_cert: PathBuf,
    /// The client's certificate (CN `postgres`).
    pub client_cert: PathBuf,
    /// The client's key (PKCS#8 PEM).
    pub client_key: PathBuf,
    /// A CA that signed nothing here: verifying the server against it must fail.
    pub other_ca_cert: PathBuf,
}

impl TlsFiles {
    fn generate(dir: &std::path::Path) -> anyhow::Result<Self> {
        let openssl = |args: &[&str]| {
            run(std::process::Command::new("openssl")
                .current_dir(dir)
                .args(args))
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [
            ("ca", "/CN=chronicle test CA"),
            ("other-ca", "/CN=another CA"),
        ] {
            let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &cert]);
            openssl(&args)?;
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        for (name, subject, extensions) in [
            ("server", "/CN=127.0.0.1", Some("server.ext")),
            ("client", "/CN=postgres", None),
        ] {
            let (key, csr, cert) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req", "-subj", subject];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &csr]);
            openssl(&args)?;
            let mut args = vec![
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
            ];
            if let Some(extensions) = extensions {
                args.extend(["-extfile", extensions]);
            }
            openssl(&args)?;
        }
        use std::os::unix::fs::PermissionsExt;
        for key in ["server.key", "client.key"] {
            std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self {
            ca_cert: dir.join("ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.crt"),
        })
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

pub(crate) fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

pub(crate) fn postgres_bindir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CHRONICLE_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: set CHRONICLE_PG_BINDIR to the Postgres binaries")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no Postgres server binaries (initdb) under /usr/lib/postgresql")
}

fn run(command: &mut std::process::Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
