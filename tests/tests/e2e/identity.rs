//! Tokens from an identity provider: keys fetched from its JWKS endpoint by `kid`, rotated
//! without a restart, never fetched more often than the floor allows. The provider here is a
//! JWKS server the test runs; keys are made with the `openssl` command.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chronicle_api::settings::{AuthSettings, JwksSettings, JwtSettings};
use chronicle_infrastructure::secret::Secret;
use chronicle_tests::{Answer, TestApp, TEST_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The test's identity provider: the key set it publishes, and how often it was asked.
#[derive(Clone, Default)]
struct Provider {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn publish(&self, jwk: Value) {
        self.keys.lock().unwrap().push(jwk);
    }

    fn withdraw(&self, kid: &str) {
        self.keys.lock().unwrap().retain(|jwk| jwk["kid"] != kid);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Serves `/jwks.json` on a port of its own; its URL.
    async fn serve(&self) -> String {
        async fn jwks(State(provider): State<Provider>) -> Json<Value> {
            provider.fetches.fetch_add(1, Ordering::SeqCst);
            Json(json!({"keys": *provider.keys.lock().unwrap()}))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

/// A signing key made with openssl: its private PEM and its public JWK under `kid`.
struct SigningKey {
    algorithm: Algorithm,
    private_pem: Vec<u8>,
    jwk: Value,
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
    output.stdout
}

impl SigningKey {
    fn rsa(kid: &str) -> Self {
        let dir = tempdir();
        openssl(
            &dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "key.pem",
            ],
        );
        let modulus = String::from_utf8(openssl(
            &dir,
            &["rsa", "-in", "key.pem", "-noout", "-modulus"],
        ))
        .unwrap();
        let modulus = hex_bytes(modulus.trim().trim_start_matches("Modulus="));
        Self {
            algorithm: Algorithm::RS256,
            private_pem: std::fs::read(dir.join("key.pem")).unwrap(),
            jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                        "n": URL_SAFE_NO_PAD.encode(modulus), "e": "AQAB"}),
        }
    }

    fn es256(kid: &str) -> Self {
        let dir = tempdir();
        openssl(
            &dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "key.pem",
            ],
        );
        // The public key's DER ends with the uncompressed point: 0x04, x (32 bytes), y (32).
        let der = openssl(
            &dir,
            &["pkey", "-in", "key.pem", "-pubout", "-outform", "DER"],
        );
        let point = &der[der.len() - 64..];
        Self {
            algorithm: Algorithm::ES256,
            private_pem: std::fs::read(dir.join("key.pem")).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])}),
        }
    }

    /// A token for member `u-idp` of team-a, signed by this key, naming `kid`, for `aud`.
    fn token(&self, kid: &str, aud: Value) -> String {
        let key = match self.algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&self.private_pem).unwrap(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_owned());
        let claims = json!({
            "sub": "u-idp", "aud": aud,
            "exp": chrono::Utc::now().timestamp() + 600,
            "realm_access": {"roles": ["member"]}, "teams": ["team-a"],
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("chronicle-keys-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// What a member's read answers with `token`: `Ok` with data, or the error code.
async fn read_as(app: &TestApp, token: &str) -> Result<Value, String> {
    match app
        .client(Some(token))
        .send(
            "{ tasks(filter: {teamId: \"team-a\"}) { totalCount } }",
            json!({}),
        )
        .await
    {
        Answer::Data(data) => Ok(data),
        Answer::Error { code, message } => Err(format!("{code}: {message}")),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn tokens_verify_with_the_providers_keys_by_kid_and_rotate_without_a_restart() {
    let provider = Provider::default();
    let url = provider.serve().await;
    let current = SigningKey::rsa("current");
    let impostor = SigningKey::rsa("current");
    let next = SigningKey::rsa("next");
    let elliptic = SigningKey::es256("elliptic");
    provider.publish(current.jwk.clone());
    provider.publish(elliptic.jwk.clone());
    let floor = Duration::from_secs(2);
    let refresh = Duration::from_secs(3);
    let app = TestApp::spawn_with_api(|api| {
        api.auth = AuthSettings::Jwt(JwtSettings {
            // HS256 keeps working beside the provider's keys (the harness's admin uses it).
            hs256_secret: Some(Secret::new(TEST_SECRET)),
            rs256_public_keys: None,
            jwks: Some(JwksSettings {
                min_interval: floor,
                refresh,
                ..JwksSettings::new(url)
            }),
            issuer: None,
            audience: Some("chronicle".to_owned()),
            // Keycloak's layout.
            roles_claim: "realm_access.roles".to_owned(),
            teams_claim: "teams".to_owned(),
        });
    })
    .await
    .unwrap();

    // A published key verifies; `aud` as an array containing ours is accepted.
    let data = read_as(
        &app,
        &current.token("current", json!(["account", "chronicle"])),
    )
    .await
    .unwrap();
    assert_eq!(data["tasks"]["totalCount"], 0);
    assert!(
        read_as(&app, &elliptic.token("elliptic", json!("chronicle")))
            .await
            .is_ok()
    );
    // Another key under the published kid does not; nor does another audience.
    let forged = read_as(&app, &impostor.token("current", json!("chronicle"))).await;
    assert!(forged.unwrap_err().starts_with("UNAUTHENTICATED"));
    let elsewhere = read_as(&app, &current.token("current", json!(["account"]))).await;
    assert!(elsewhere.unwrap_err().starts_with("UNAUTHENTICATED"));
    // An ES256 key cannot verify a token claiming RS256 under its kid.
    let confused = read_as(&app, &current.token("elliptic", json!("chronicle"))).await;
    assert!(confused.unwrap_err().starts_with("UNAUTHENTICATED"));
    // HS256 tokens still work beside the provider's keys.
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u-local", "aud": "chronicle", "exp": chrono::Utc::now().timestamp() + 600,
                "realm_access": {"roles": ["member"]}, "teams": ["team-a"]}),
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(read_as(&app, &hs256).await.is_ok());

    // The provider rotates: a key it publishes later works without a restart.
    let early = read_as(&app, &next.token("next", json!("chronicle"))).await;
    assert!(early.unwrap_err().contains("no key"), "not yet published");
    provider.publish(next.jwk.clone());
    tokio::time::sleep(floor).await;
    assert!(read_as(&app, &next.token("next", json!("chronicle")))
        .await
        .is_ok());

    // A flood of made-up kids costs the provider at most one fetch per floor.
    let before = provider.fetches();
    let started = Instant::now();
    for n in 0..40 {
        let refused = read_as(
            &app,
            &current.token(&format!("made-up-{n}"), json!("chronicle")),
        )
        .await;
        assert!(refused.is_err());
    }
    let allowed = 1 + (started.elapsed().as_secs_f64() / floor.as_secs_f64()) as usize;
    let fetched = provider.fetches() - before;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 40 unknown kids in {:?}",
        started.elapsed()
    );

    // The provider withdraws a key: once the set is fetched again, its tokens are refused,
    // even one that verified a moment ago (the service answers only tokens of its configured
    // keys from memory, never a provider's).
    let withdrawn = current.token("current", json!("chronicle"));
    assert!(read_as(&app, &withdrawn).await.is_ok());
    provider.withdraw("current");
    tokio::time::sleep(refresh).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match read_as(&app, &withdrawn).await {
            Err(refused) if refused.starts_with("UNAUTHENTICATED") => break,
            _ => assert!(
                Instant::now() < deadline,
                "a token of a withdrawn key still verifies after the set was fetched again"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
