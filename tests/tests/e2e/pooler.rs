//! Chronicle behind PgBouncer: the pool's connections go through the pooler, and what needs a
//! session of its own (the relay's and the checkpointer's advisory locks, `LISTEN`, a
//! rebuild's locks) goes to `CHRONICLE_SESSION_DATABASE_URL`.

use std::time::Duration;

use chronicle_infrastructure::secret::DatabaseUrl;
use chronicle_tests::support::admin_token;
use chronicle_tests::{
    brokers, create_database, eventually, run_chronicle, test_settings, Answer, ChronicleProcess,
    PrivatePgBouncer, CREATE_TASK,
};
use serde_json::json;
use sqlx::PgPool;

#[tokio::test]
async fn the_core_loop_runs_behind_pgbouncer_in_session_mode() {
    core_loop_behind_pgbouncer("session").await;
}

/// Transaction pooling with PgBouncer 1.21+ (`max_prepared_statements`) and three server
/// connections shared by every client: the mode production poolers run.
#[tokio::test]
async fn the_core_loop_runs_behind_pgbouncer_in_transaction_mode() {
    core_loop_behind_pgbouncer("transaction").await;
}

/// Commands from concurrent clients, the projection, a report, `chronicle replay` and `audit
/// verify`, all through a PgBouncer in `pool_mode`; the session URL straight to Postgres.
async fn core_loop_behind_pgbouncer(pool_mode: &str) {
    let direct = create_database().await.unwrap();
    let name = direct.rsplit('/').next().unwrap().to_owned();
    // In front of the server the tests use (CHRONICLE_ADMIN_URL's).
    let upstream = direct
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .get_port();
    let bouncer = PrivatePgBouncer::start(upstream, pool_mode).await.unwrap();
    let through = bouncer.url(&name);
    let dir = chronicle_tests::audit_key_dir().await.unwrap();
    let key = dir.join("audit.pem");
    let mut settings = test_settings(&through, &brokers());
    settings.session_database_url = Some(DatabaseUrl::new(direct.clone()));
    settings.audit_signing_key_file = Some(key.display().to_string());
    settings.audit_checkpoint_interval = Duration::from_secs(1);
    let service = ChronicleProcess::serve(&settings, "api,relay,projections,worker").unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = service.client(&admin_token()).unwrap();

    // Eight clients at once, so statements of different clients meet on shared servers.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let client = client.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    let answer = client
                        .send(
                            CREATE_TASK,
                            json!({"i": {"title": format!("Pooled {writer}-{n}"), "teamId": "team-a"}}),
                        )
                        .await;
                    assert!(
                        matches!(answer, Answer::Data(_)),
                        "createTask through the pooler: {answer:?}"
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let now = chrono::Utc::now();
    let answer = client
        .send(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-a",
                         "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                         "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await;
    let Answer::Data(data) = answer else {
        panic!("requestReport through the pooler failed: {answer:?}");
    };
    let report = data["requestReport"]["id"].as_str().unwrap().to_owned();
    let completed = eventually(Duration::from_secs(30), || async {
        let answer = client
            .send(
                "query($id: ID!) { report(id: $id) { status } tasks(first: 100) { totalCount } }",
                json!({"id": report}),
            )
            .await;
        Ok(match answer {
            Answer::Data(data)
                if data["report"]["status"] == "COMPLETED"
                    && data["tasks"]["totalCount"] == 200 =>
            {
                Some(data)
            }
            _ => None,
        })
    })
    .await
    .expect("projected, and the report generated, through the pooler");
    println!("{completed}");

    // The locks are held on the session URL's connections, not through the pooler.
    let db = PgPool::connect(&direct).await.unwrap();
    let holders: Vec<String> = eventually(Duration::from_secs(20), || async {
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()",
        )
        .fetch_all(&db)
        .await?;
        // The relay's lock and the checkpointer's.
        Ok((!holders.is_empty()).then_some(holders))
    })
    .await
    .unwrap();
    assert_eq!(
        holders,
        ["chronicle-session"],
        "advisory locks only on session connections"
    );

    for command in [vec!["replay", "tasks"], vec!["audit", "verify"]] {
        let (code, out) = run_chronicle(&through, &command).await.unwrap();
        assert_eq!(code, 0, "{command:?} through the pooler: {out}");
    }
    drop(service);
    let _ = std::fs::remove_dir_all(dir);
}
