//! The `chronicle` binary.

use std::process::ExitCode;

use anyhow::Context as _;
use chronicle::app::{self, Parts};
use chronicle::cli::{self, Migrations};
use chronicle::settings::ServeSettings;
use chronicle::telemetry::TelemetrySettings;
use chronicle::variables;
use chronicle::{held_cli, telemetry};
use chronicle_api::auth::{parse_ttl, Authenticator};
use chronicle_api::settings::{ApiSettings, AuthSettings};
use chronicle_application::audit::export::Expected;
use chronicle_application::audit::signed_note::{default_origin, VerifierKey};
use chronicle_application::ports::dead_letters::Redrive;
use chronicle_application::ports::held::HeldKind;
use chronicle_application::topics::Topics;
use chronicle_infrastructure::config::Settings;
use chronicle_infrastructure::kafka::dead_letter::KafkaRedrive;
use chronicle_infrastructure::kafka::on_demand::OnDemandProducer;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Chronicle: event-sourced tasks and reports over GraphQL, Postgres and Kafka.
///
/// Settings come from the environment (and a `.env` file when present); see docs/operations.md, "Configuration".
#[derive(Parser)]
#[command(name = "chronicle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the GraphQL API, outbox relay, projections and report worker.
    Serve {
        /// Run only these parts (comma-separated): api, relay, projections, worker.
        #[arg(long, value_name = "PARTS", value_parser = Parts::parse)]
        only: Option<Parts>,
    },
    /// Apply database migrations (idempotent).
    Migrate,
    /// Rebuild read models from the event store while the service keeps serving: `tasks`,
    /// `reports` or `all`. Exits 2 for an unknown name, 1 when another rebuild holds it.
    Replay {
        /// The projection to rebuild, or `all`.
        projection: String,
    },
    /// Ask the local `serve` whether it is ready (`/health/ready` on CHRONICLE_HTTP_ADDR), for
    /// container health checks: exits 0 when ready, 1 otherwise, printing the answer.
    Health,
    /// Held messages: parked outbox records, dead letters, projection failures. List, show,
    /// retry (parked: back to the relay; dead letters: back to their group alone; projection
    /// failures: applied again) or discard them. Exits 2 for an unknown holder or a missing
    /// `--id`, 1 when a message is missing, a retry left some held or the broker refused it.
    Held {
        /// list, show, retry or discard.
        #[arg(value_enum)]
        action: held_cli::Action,
        /// What is held: parked, dead-letter or projection-failure.
        #[arg(long, value_parser = parse_kind)]
        kind: HeldKind,
        /// Who holds it: a consumer group for dead letters (chronicle-projections,
        /// chronicle-report-worker), a projection for failures (tasks, reports); parked
        /// records are the outbox's and need none.
        #[arg(long)]
        holder: Option<String>,
        /// Messages to show, retry or discard (retry without one: every one waiting).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<i64>,
    },
    /// `held --kind dead-letter --holder GROUP` under its first name (deprecated: use
    /// `chronicle held`; `redrive` is `retry`).
    DeadLetters {
        /// list, show, redrive or discard.
        #[arg(value_enum)]
        action: DeadLetterAction,
        /// The consumer group: chronicle-projections or chronicle-report-worker.
        #[arg(long)]
        group: String,
        /// Dead letters to show, redrive or discard (redrive without one: every one waiting).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<i64>,
    },
    /// `held --kind projection-failure --holder NAME` under its first name (deprecated: use
    /// `chronicle held`).
    ProjectionFailures {
        /// list or retry.
        #[arg(value_enum)]
        action: ProjectionFailureAction,
        /// The projection: tasks or reports.
        name: String,
    },
    /// Erase a person's personal data (docs/privacy.md): their key is destroyed, so their
    /// values read `erased:<pseudonym>` everywhere, and the read models are rewritten. Prints
    /// the answer as JSON; exits 0 when erased (now or before), 1 when the id is unknown.
    Erase {
        /// The person: a user id, as tokens name it.
        #[arg(long)]
        subject: String,
        /// Why (cite a ticket, not the person); recorded with the erasure.
        #[arg(long)]
        reason: String,
    },
    /// Inspect the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a JWT signed with CHRONICLE_JWT_SECRET, for development and scripts.
    Token {
        /// The subject: the user id that becomes the actor of events.
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated: admin, auditor, member, privacy.
        #[arg(long, value_delimiter = ',', default_value = "member")]
        roles: Vec<String>,
        /// Teams, comma-separated.
        #[arg(long, value_delimiter = ',')]
        teams: Vec<String>,
        /// Lifetime, such as 30m, 8h or 7d.
        #[arg(long, default_value = "8h", value_parser = parse_ttl)]
        ttl: chrono::Duration,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DeadLetterAction {
    List,
    Show,
    Redrive,
    Discard,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProjectionFailureAction {
    List,
    Retry,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write a new Ed25519 signing key for audit checkpoints to PATH (PKCS#8 PEM, mode 0600)
    /// and its public key to PATH.pub; an existing file is never overwritten.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "PATH")]
        out: std::path::PathBuf,
    },
    /// Print the public key of CHRONICLE_AUDIT_SIGNING_KEY_FILE, for auditors: SPKI PEM, or the
    /// verifier key standard transparency-log tools check signed notes with.
    PublicKey {
        /// pem (the default) or verifier-key (`<origin>+<key id>+<key>`, C2SP signed-note).
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        /// The origin the verifier key names (verifier-key only): the one given to `export
        /// --format signed-note --origin`; default: chronicle-audit/<key id>.
        #[arg(long, value_name = "NAME")]
        origin: Option<String>,
    },
    /// Write the events of a position range, each with its inclusion proof, after the latest
    /// signed checkpoint, as JSON Lines on stdout; or, with --format signed-note, that
    /// checkpoint alone as a C2SP signed note, for standard transparency-log tools
    /// (docs/audit.md).
    Export {
        /// jsonl (the default): the range's events with their proofs. signed-note: the latest
        /// checkpoint as a C2SP tlog-checkpoint note, signed again with
        /// CHRONICLE_AUDIT_SIGNING_KEY_FILE once its stored signature verifies under it; its
        /// verifier key goes to stderr.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ExportFormat>,
        /// The first position exported (jsonl).
        #[arg(
            long,
            value_name = "N",
            required_unless_present = "format",
            required_if_eq("format", "jsonl")
        )]
        from_position: Option<i64>,
        /// The last position exported (jsonl).
        #[arg(
            long,
            value_name = "M",
            required_unless_present = "format",
            required_if_eq("format", "jsonl")
        )]
        to_position: Option<i64>,
        /// The log's origin, which is also its note key's name (signed-note only); default:
        /// chronicle-audit/<key id>. Tools follow a log by its origin: keep it the same.
        #[arg(long, value_name = "NAME")]
        origin: Option<String>,
    },
    /// Check a checkpoint note (`export --format signed-note`) with no database: the
    /// signature of the given key (other keys' signatures, such as witnesses', are ignored)
    /// and the C2SP tlog-checkpoint format. Exits 0 when it verifies, 1 with what diverged
    /// printed.
    VerifyNote {
        /// The note.
        file: std::path::PathBuf,
        /// The verifier key, `<origin>+<key id>+<key>` (`public-key --format verifier-key`).
        #[arg(
            long,
            value_name = "VERIFIER",
            required_unless_present = "public_key",
            conflicts_with = "public_key"
        )]
        key: Option<String>,
        /// Instead of --key: the public key (SPKI PEM) the note must verify under.
        #[arg(long, value_name = "PATH")]
        public_key: Option<std::path::PathBuf>,
        /// With --public-key: the log's origin; default: chronicle-audit/<key id>.
        #[arg(
            long,
            value_name = "NAME",
            requires = "public_key",
            conflicts_with = "key"
        )]
        origin: Option<String>,
    },
    /// Check an export with no database and no broker. Exits 0 when intact, 1 with what
    /// diverged printed.
    VerifyExport {
        /// The export (JSON Lines).
        file: std::path::PathBuf,
        /// The public key (SPKI PEM) its checkpoint must verify under.
        #[arg(long, value_name = "PATH")]
        public_key: std::path::PathBuf,
        /// The first position you asked for: an export stating another range diverges.
        #[arg(long, value_name = "N")]
        from_position: Option<i64>,
        /// The last position you asked for.
        #[arg(long, value_name = "M")]
        to_position: Option<i64>,
        /// The least tree size the checkpoint must cover (a file re-proved against an older
        /// checkpoint diverges).
        #[arg(long, value_name = "SIZE")]
        min_tree_size: Option<u64>,
    },
    /// Check the hash chain of one aggregate (--type and --id) or of every aggregate; with
    /// --checkpoints, also the whole store against the signed checkpoints. Exits 0 when intact,
    /// 1 with what diverged printed.
    Verify {
        /// Aggregate type: Task or Report.
        #[arg(long = "type", value_name = "TYPE", requires = "id")]
        aggregate_type: Option<String>,
        /// Aggregate id (a UUID).
        #[arg(long, value_name = "ID", requires = "aggregate_type")]
        id: Option<String>,
        /// Where the signed checkpoints come from: `kafka` (the topic
        /// {prefix}chronicle.audit.checkpoints) or a file of them, one JSON object a line.
        #[arg(long, value_name = "kafka|FILE", conflicts_with = "id")]
        checkpoints: Option<String>,
        /// The public key (SPKI PEM) the checkpoints, and the erasures that changed events
        /// stored in clear, must verify under; default: that of
        /// CHRONICLE_AUDIT_SIGNING_KEY_FILE (without either, erasures' signatures are not
        /// checked, and --checkpoints cannot run).
        #[arg(long, value_name = "PATH")]
        public_key: Option<std::path::PathBuf>,
    },
}

/// What `chronicle audit export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// A position range's events with their inclusion proofs (JSON Lines).
    Jsonl,
    /// The latest checkpoint as a C2SP signed note.
    SignedNote,
}

/// How `chronicle audit public-key` writes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KeyFormat {
    /// SPKI PEM.
    Pem,
    /// C2SP signed-note's verifier key.
    VerifierKey,
}

/// `chronicle audit export`, its arguments checked together.
#[derive(Debug, PartialEq, Eq)]
enum Export {
    /// The events of positions `from..=to`.
    Range { from: i64, to: i64 },
    /// The latest checkpoint as a signed note of `origin` (the default when `None`).
    SignedNote { origin: Option<String> },
}

impl Export {
    /// Each format with its own flags only: clap requires the positions of jsonl, and this
    /// refuses a flag the chosen format would silently ignore.
    fn of(
        format: Option<ExportFormat>,
        from: Option<i64>,
        to: Option<i64>,
        origin: Option<String>,
    ) -> Result<Self, String> {
        match (format.unwrap_or(ExportFormat::Jsonl), from, to) {
            (ExportFormat::Jsonl, Some(from), Some(to)) if origin.is_none() => {
                Ok(Self::Range { from, to })
            }
            (ExportFormat::Jsonl, Some(_), Some(_)) => {
                Err("--origin is for --format signed-note".to_owned())
            }
            (ExportFormat::Jsonl, _, _) => {
                Err("--from-position and --to-position are required".to_owned())
            }
            (ExportFormat::SignedNote, None, None) => Ok(Self::SignedNote { origin }),
            (ExportFormat::SignedNote, _, _) => Err(
                "--format signed-note writes the latest checkpoint alone: it takes no \
                 --from-position or --to-position"
                    .to_owned(),
            ),
        }
    }
}

/// Exits as clap does for arguments that do not go together (status 2).
fn usage_error(message: String) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// mimalloc instead of glibc's malloc: fewer cycles per allocation and no lock contention
/// between the runtime's and librdkafka's threads (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    // The command line first: `--help` and usage errors answer whatever the runtime's setting.
    let matches = command_with_environment().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let runtime = match chronicle::runtime::build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "chronicle: {}",
                chronicle_application::error_chain::Chain(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chronicle: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { only } => {
            let parts = only.unwrap_or(Parts::ALL);
            let ServeSettings {
                service: settings,
                api,
                telemetry,
            } = ServeSettings::from_env(parts)?;
            telemetry::init(telemetry)?;
            let service = app::start(&settings, &api, parts).await?;
            let addr = service.http_addr;
            match service.serves_api {
                true => tracing::info!("GraphiQL at http://{addr}/graphql"),
                false => {
                    tracing::info!("health and metrics at http://{addr}/health/ready, /metrics")
                }
            }
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; finishing in-flight work");
            let started = std::time::Instant::now();
            let stopped = tokio::time::timeout(settings.shutdown_timeout, service.stop()).await;
            // The spans of the last requests and messages leave before the process does.
            telemetry::otlp::flush(std::time::Duration::from_secs(5)).await;
            match stopped {
                Ok(()) => {
                    tracing::info!(elapsed = ?started.elapsed(), "stopped cleanly");
                    Ok(ExitCode::SUCCESS)
                }
                Err(_) => {
                    tracing::error!(
                        timeout = ?settings.shutdown_timeout,
                        "in-flight work did not finish in time; exiting anyway (CHRONICLE_SHUTDOWN_TIMEOUT_SECS)"
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Health => {
            let api = ApiSettings::from_env_for(false)?;
            Ok(match chronicle::ops::probe_ready(api.http_addr).await {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    eprintln!("chronicle: not ready: {reason}");
                    ExitCode::FAILURE
                }
            })
        }
        Command::Held {
            action,
            kind,
            holder,
            ids,
        } => run_held("held", action, kind, holder.as_deref(), &ids).await,
        Command::DeadLetters { action, group, ids } => {
            let action = match action {
                DeadLetterAction::List => held_cli::Action::List,
                DeadLetterAction::Show => held_cli::Action::Show,
                DeadLetterAction::Redrive => held_cli::Action::Retry,
                DeadLetterAction::Discard => held_cli::Action::Discard,
            };
            run_held(
                "dead-letters",
                action,
                HeldKind::DeadLetter,
                Some(&group),
                &ids,
            )
            .await
        }
        Command::Erase { subject, reason } => {
            telemetry::init_for_command();
            let settings = Settings::from_env()?;
            // One connection holds the erasure lock for the erasure's length.
            let pool = cli::database(&settings.database_url, 4, Migrations::Apply).await?;
            let topics =
                chronicle_application::topics::Topics::new(settings.kafka.topic_prefix.clone());
            let store =
                std::sync::Arc::new(chronicle_infrastructure::event_store::PgEventStore::new(
                    pool.clone(),
                    chronicle_infrastructure::outbox::OutboxSignal::new(),
                ));
            // Sealing on: the erasure event's reason is the officer's text.
            let personal = app::personal_data(
                &pool,
                chronicle_application::privacy::personal_data::Sealing::On,
                settings.privacy_key_cache,
            );
            let signer = app::checkpoint_signer(&settings)?.map(std::sync::Arc::new);
            let eraser = app::eraser(&pool, store, topics, personal, signer);
            Ok(chronicle::erase_cli::run(&eraser, &subject, &reason).await)
        }
        Command::ProjectionFailures { action, name } => {
            let action = match action {
                ProjectionFailureAction::List => held_cli::Action::List,
                ProjectionFailureAction::Retry => held_cli::Action::Retry,
            };
            let kind = HeldKind::ProjectionFailure;
            run_held("projection-failures", action, kind, Some(&name), &[]).await
        }
        Command::Migrate => {
            telemetry::init(TelemetrySettings::from_env()?)?;
            cli::database(&Settings::database_url()?, 2, Migrations::Apply).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { projection } => {
            telemetry::init_for_command();
            let pool = cli::database(&Settings::database_url()?, 4, Migrations::Apply).await?;
            let rebuilder = app::rebuilder(&pool, app::personal_data_for_reading(&pool));
            chronicle::rebuild_cli::replay(&rebuilder, &projection).await
        }
        Command::Token {
            sub,
            roles,
            teams,
            ttl,
        } => {
            // Only the auth settings matter here: no database or broker is needed to sign.
            let authenticator = Authenticator::from_settings(&AuthSettings::from_env()?)?;
            match authenticator.issue(&sub, roles, teams, ttl) {
                Ok(token) => {
                    println!("{token}");
                    Ok(ExitCode::SUCCESS)
                }
                // Bad arguments, as clap reports its own: exit status 2.
                Err(refused @ chronicle_api::auth::AuthError::Refused(_)) => {
                    eprintln!("chronicle token: {refused}");
                    Ok(ExitCode::from(2))
                }
                Err(other) => Err(other.into()),
            }
        }
        Command::Audit {
            command: AuditCommand::Keygen { out },
        } => chronicle::audit_cli::keygen(&out),
        Command::Audit {
            command:
                AuditCommand::Export {
                    format,
                    from_position,
                    to_position,
                    origin,
                },
        } => {
            telemetry::init_for_command();
            let export = match Export::of(format, from_position, to_position, origin) {
                Ok(export) => export,
                Err(message) => usage_error(message),
            };
            match export {
                Export::Range { from, to } => {
                    let pool =
                        cli::database(&Settings::database_url()?, 2, Migrations::Leave).await?;
                    chronicle::audit_cli::export(pool, from, to).await
                }
                Export::SignedNote { origin } => {
                    // The note is signed here: the key first, before any connection.
                    let signer = app::signer_of_key_file(chronicle_infrastructure::config::var(
                        "CHRONICLE_AUDIT_SIGNING_KEY_FILE",
                    ))?
                    .context(
                        "--format signed-note signs the note: set CHRONICLE_AUDIT_SIGNING_KEY_FILE",
                    )?;
                    let pool =
                        cli::database(&Settings::database_url()?, 2, Migrations::Leave).await?;
                    chronicle::audit_cli::export_signed_note(pool, &signer, origin.as_deref()).await
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::VerifyNote {
                    file,
                    key,
                    public_key,
                    origin,
                },
        } => {
            let verifier = match key {
                Some(key) => VerifierKey::parse(key.trim()).context("--key")?,
                None => {
                    // clap requires --public-key without --key.
                    let public = audit_public_key(public_key.as_deref())?
                        .context("name the key with --key or --public-key")?;
                    let origin = origin.unwrap_or_else(|| default_origin(&public));
                    VerifierKey::new(&origin, public).context("--origin")?
                }
            };
            chronicle::audit_cli::verify_note_file(&file, &verifier)
        }
        Command::Audit {
            command:
                AuditCommand::VerifyExport {
                    file,
                    public_key,
                    from_position,
                    to_position,
                    min_tree_size,
                },
        } => chronicle::audit_cli::verify_export_file(
            &file,
            &public_key,
            &Expected {
                from_position,
                to_position,
                min_tree_size,
            },
        ),
        Command::Audit {
            command: AuditCommand::PublicKey { format, origin },
        } => {
            if format == KeyFormat::Pem && origin.is_some() {
                usage_error("--origin is for --format verifier-key".to_owned());
            }
            let settings = Settings::from_env()?;
            let signer = app::checkpoint_signer(&settings)?
                .context("CHRONICLE_AUDIT_SIGNING_KEY_FILE is not set")?;
            let key = signer.public_key();
            match format {
                KeyFormat::Pem => print!("{}", key.to_pem()?),
                KeyFormat::VerifierKey => {
                    let origin = origin.unwrap_or_else(|| default_origin(&key));
                    println!("{}", VerifierKey::new(&origin, key).context("--origin")?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoints: Some(source),
                    public_key,
                    ..
                },
        } => {
            let settings = Settings::from_env()?;
            let key = audit_public_key(public_key.as_deref())?.context(
                "name the public key with --public-key (or set CHRONICLE_AUDIT_SIGNING_KEY_FILE)",
            )?;
            let pool = cli::database(&settings.database_url, 2, Migrations::Leave).await?;
            let intact =
                chronicle::audit_cli::verify_checkpoints(pool, &settings, &source, &key).await?;
            Ok(cli::verdict(intact))
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    aggregate_type,
                    id,
                    public_key,
                    ..
                },
        } => {
            let url = Settings::database_url()?;
            let key = audit_public_key(public_key.as_deref())?;
            let pool = cli::database(&url, 2, Migrations::Leave).await?;
            let target = aggregate_type.zip(id);
            let intact = chronicle::audit_cli::verify(pool, target, key).await?;
            Ok(cli::verdict(intact))
        }
    }
}

/// The audit public key: `--public-key`'s, or that of CHRONICLE_AUDIT_SIGNING_KEY_FILE when
/// set, or none.
fn audit_public_key(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<chronicle_application::audit::signing::PublicKey>> {
    if let Some(path) = path {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("--public-key: cannot read {}", path.display()))?;
        let key = chronicle_application::audit::signing::PublicKey::from_pem(&pem)
            .with_context(|| format!("--public-key {}", path.display()))?;
        return Ok(Some(key));
    }
    Ok(
        app::signer_of_key_file(chronicle_infrastructure::config::var(
            "CHRONICLE_AUDIT_SIGNING_KEY_FILE",
        ))?
        .map(|signer| signer.public_key()),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// A held kind as the CLI writes it.
fn parse_kind(text: &str) -> Result<HeldKind, String> {
    HeldKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| "choose from parked, dead-letter, projection-failure".to_owned())
}

/// `chronicle held` (also under its older names): connects, migrates and runs `action`.
async fn run_held(
    command: &str,
    action: held_cli::Action,
    kind: HeldKind,
    holder: Option<&str>,
    ids: &[i64],
) -> anyhow::Result<ExitCode> {
    telemetry::init_for_command();
    // Dead letters need the broker (a redrive sends) and the topic prefix (their groups' ids);
    // the other kinds only the database.
    let (url, topics, redrive): (_, _, std::sync::Arc<dyn Redrive>) = match kind {
        HeldKind::DeadLetter => {
            let settings = Settings::from_env()?;
            // Made and connected only when a redrive sends.
            let producer = OnDemandProducer::checked(&settings.kafka)?;
            (
                settings.database_url,
                Topics::new(settings.kafka.topic_prefix.clone()),
                std::sync::Arc::new(KafkaRedrive::new(producer)),
            )
        }
        HeldKind::Parked | HeldKind::ProjectionFailure => (
            Settings::database_url()?,
            Topics::new(String::new()),
            std::sync::Arc::new(held_cli::NoBroker),
        ),
    };
    let pool = cli::database(&url, 2, Migrations::Apply).await?;
    let personal = app::personal_data_for_reading(&pool);
    let held = app::held_messages(&pool, &topics, redrive, personal);
    Ok(held_cli::run(&held, command, action, kind, holder, ids).await)
}

/// Width of the environment part of `--help`.
const HELP_WIDTH: usize = 100;

/// The command line with each command's help listing the variables it reads, with their
/// defaults (`chronicle --help` and `serve --help`: all of them).
fn command_with_environment() -> clap::Command {
    let all = variables::help(&variables::read_by(None), HELP_WIDTH);
    let mut command = Cli::command()
        .after_help(all.clone())
        .mut_subcommand("serve", |serve| serve.after_help(all));
    for (path, reads) in variables::COMMANDS {
        let help = variables::help(&variables::read_by(Some(reads)), HELP_WIDTH);
        command = match path.split_once(' ') {
            Some((parent, child)) => command.mut_subcommand(parent, |parent| {
                parent.mut_subcommand(child, |child| child.after_help(help))
            }),
            None => command.mut_subcommand(path, |sub| sub.after_help(help)),
        };
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_of_the_environment_list_exists_and_its_help_names_what_it_reads() {
        let mut command = command_with_environment();
        command.build();
        command.clone().debug_assert();
        for (path, _) in variables::COMMANDS {
            let mut found = &command;
            for name in path.split(' ') {
                found = found
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no command {path}"));
            }
            let help = found.clone().render_help().to_string();
            assert!(help.contains("Environment"), "{path}: {help}");
        }
        let serve = command.find_subcommand("serve").unwrap();
        let help = serve.clone().render_help().to_string();
        for variable in variables::table() {
            assert!(
                help.contains(&variable.name),
                "serve --help lacks {}",
                variable.name
            );
        }
        let token = command.find_subcommand("token").unwrap();
        let help = token.clone().render_help().to_string();
        assert!(
            help.contains("CHRONICLE_JWT_SECRET [default: none]"),
            "{help}"
        );
        assert!(!help.contains("DATABASE_URL"), "{help}");
    }

    fn export_of(args: &[&str]) -> Result<Export, String> {
        let cli = Cli::try_parse_from([&["chronicle", "audit", "export"][..], args].concat())
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Audit {
                command:
                    AuditCommand::Export {
                        format,
                        from_position,
                        to_position,
                        origin,
                    },
            } => Export::of(format, from_position, to_position, origin),
            _ => Err("not an export".to_owned()),
        }
    }

    #[test]
    fn export_takes_a_range_by_default_and_nothing_but_an_origin_as_a_signed_note() {
        let range = Export::Range { from: 1, to: 9 };
        let positions = ["--from-position", "1", "--to-position", "9"];
        assert_eq!(export_of(&positions), Ok(range));
        let jsonl = [&["--format", "jsonl"][..], &positions[..]].concat();
        assert_eq!(export_of(&jsonl), Ok(Export::Range { from: 1, to: 9 }));
        assert_eq!(
            export_of(&["--format", "signed-note"]),
            Ok(Export::SignedNote { origin: None })
        );
        assert_eq!(
            export_of(&["--format", "signed-note", "--origin", "example.com/log"]),
            Ok(Export::SignedNote {
                origin: Some("example.com/log".to_owned())
            })
        );
        // Refused: a range without positions, a note with them, an origin for a range, an
        // unknown format.
        assert!(export_of(&[]).is_err());
        assert!(export_of(&["--format", "jsonl", "--from-position", "1"]).is_err());
        let note_with_range = [&["--format", "signed-note"][..], &positions[..]].concat();
        assert!(export_of(&note_with_range).is_err());
        let range_with_origin = [&positions[..], &["--origin", "x"]].concat();
        assert!(export_of(&range_with_origin).is_err());
        assert!(export_of(&["--format", "json"]).is_err());
    }

    #[test]
    fn verify_note_takes_a_verifier_key_or_a_public_key_with_an_origin() {
        let parses = |args: &[&str]| {
            let base = ["chronicle", "audit", "verify-note", "n.txt"];
            Cli::try_parse_from([&base[..], args].concat()).is_ok()
        };
        assert!(parses(&["--key", "a+00000000+AQ=="]));
        assert!(parses(&["--public-key", "k.pub"]));
        assert!(parses(&[
            "--public-key",
            "k.pub",
            "--origin",
            "example.com/log"
        ]));
        assert!(!parses(&[]));
        assert!(!parses(&[
            "--key",
            "a+00000000+AQ==",
            "--public-key",
            "k.pub"
        ]));
        assert!(!parses(&[
            "--key",
            "a+00000000+AQ==",
            "--origin",
            "example.com/log"
        ]));
    }
}
