//! What every harness of this crate shares: the secret test tokens are signed with, and
//! polling until a condition holds.

use std::time::Duration;

use anyhow::bail;

/// The JWT secret of test services.
pub const TEST_SECRET: &str = "chronicle-test-secret-0123456789abcdef";

/// A token of the test secret for the admin `u-admin` of `team-a`, for services started as
/// processes (a [`crate::TestApp`] has its own).
pub fn admin_token() -> String {
    chronicle_api::auth::Authenticator::hs256(TEST_SECRET)
        .issue(
            "u-admin",
            vec!["admin".into()],
            vec!["team-a".into()],
            chrono::Duration::hours(1),
        )
        .expect("sign a token")
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads an `auditTrail` answer until its first event shows. The trail shows an event once
/// every transaction older than it has ended, in the whole cluster (other tests' included),
/// so one just written can be missing for a moment.
pub async fn settled_trail<F, Fut>(read: F) -> anyhow::Result<serde_json::Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    eventually(Duration::from_secs(20), || async {
        let answer = read().await?;
        Ok(answer["auditTrail"]["edges"][0]
            .is_object()
            .then_some(answer))
    })
    .await
}
