//! Chronicle against a Postgres that speaks only TLS, as managed Postgres services do:
//! `DATABASE_URL` carries libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.

use std::path::Path;
use std::time::Duration;

use chronicle_tests::support::admin_token;
use chronicle_tests::{
    brokers, eventually, test_settings, Answer, ChronicleProcess, PrivatePostgres, TlsFiles,
};
use serde_json::json;
use sqlx::{Connection, PgConnection};

/// A URL of database `name` on `postgres` with libpq's TLS parameters.
fn url(postgres: &PrivatePostgres, name: &str, params: &[(&str, &Path)], mode: &str) -> String {
    let mut url = format!("{}?sslmode={mode}", postgres.url(name));
    for (key, path) in params {
        url.push_str(&format!("&{key}={}", path.display()));
    }
    url
}

/// verify-full against `ca`, with the client certificate.
fn verified(postgres: &PrivatePostgres, files: &TlsFiles, name: &str) -> String {
    url(
        postgres,
        name,
        &[
            ("sslrootcert", &files.ca_cert),
            ("sslcert", &files.client_cert),
            ("sslkey", &files.client_key),
        ],
        "verify-full",
    )
}

#[tokio::test]
async fn migrate_and_serve_work_over_verified_tls_and_plaintext_is_refused() {
    let (postgres, files) = PrivatePostgres::start_tls().await.unwrap();
    let client = [
        ("sslcert", files.client_cert.as_path()),
        ("sslkey", files.client_key.as_path()),
    ];

    // The server refuses plaintext: a test that passed without TLS would prove nothing.
    let plaintext = PgConnection::connect(&url(&postgres, "postgres", &client, "disable")).await;
    let refused = plaintext.expect_err("a plaintext connection was accepted");
    assert!(
        refused.to_string().contains("no encryption")
            || refused.to_string().contains("pg_hba.conf"),
        "{refused}"
    );
    // verify-full checks the server's certificate: against another CA it fails.
    let mut wrong_ca = client.to_vec();
    wrong_ca.push(("sslrootcert", files.other_ca_cert.as_path()));
    let unverified =
        PgConnection::connect(&url(&postgres, "postgres", &wrong_ca, "verify-full")).await;
    assert!(
        unverified.is_err(),
        "a server signed by another CA was trusted"
    );
    // `require` encrypts without verifying, as libpq's does.
    let mut required = PgConnection::connect(&url(&postgres, "postgres", &client, "require"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE chronicle")
        .execute(&mut required)
        .await
        .unwrap();

    let database_url = verified(&postgres, &files, "chronicle");
    let settings = test_settings(&database_url, &brokers());
    let mut migrate = ChronicleProcess::run(&settings, &["migrate"]).unwrap();
    let status = migrate.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "chronicle migrate failed: {status}");

    let service = ChronicleProcess::serve(&settings, "api,relay,projections,worker").unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let id = client.create_task("over TLS", "team-a").await.unwrap();
    // The read went through the relay, Kafka and the projection, each on its TLS connection.
    let task = eventually(Duration::from_secs(30), || {
        let client = client.clone();
        let id = id.clone();
        async move {
            Ok(
                match client
                    .send(
                        "query($id: ID!) { task(id: $id) { title } }",
                        json!({"id": id}),
                    )
                    .await
                {
                    Answer::Data(data) if !data["task"].is_null() => Some(data),
                    _ => None,
                },
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(task["task"]["title"], "over TLS");

    // Every connection of the service's database is encrypted.
    let connections: Vec<(bool,)> = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = 'chronicle' AND a.pid <> pg_backend_pid()",
    )
    .fetch_all(&mut required)
    .await
    .unwrap();
    assert!(!connections.is_empty());
    assert!(connections.iter().all(|(ssl,)| *ssl), "{connections:?}");
    drop(service);
}
