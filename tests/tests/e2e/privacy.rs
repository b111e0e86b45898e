//! The keys personal data is sealed under, in Postgres: one per data subject however many
//! requests race to make it, and gone from the database once destroyed, so what was sealed
//! under it can no longer be read (docs/privacy.md).

use chronicle_application::ports::subject_keys::SubjectKeys;
use chronicle_application::privacy::seal::{open, seal, SealError};
use chronicle_infrastructure::db;
use chronicle_infrastructure::subject_keys::PgSubjectKeys;

#[tokio::test]
async fn a_subject_has_one_key_and_a_destroyed_key_leaves_nothing_to_open_with() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 10).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let keys = PgSubjectKeys::new(pool.clone());

    // Eight first uses at once: every caller seals under the one key that was kept.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key_for("u-7").await.unwrap() })
        })
        .collect();
    let mut made = Vec::new();
    for racer in racers {
        made.push(racer.await.unwrap());
    }
    assert!(made.iter().all(|key| *key == made[0]), "one key for u-7");
    let maria = made.remove(0);
    let other = keys.key_for("u-8").await.unwrap();
    assert_ne!(other.pseudonym, maria.pseudonym);

    let place = "event 1 /TaskCreated/title";
    let sealed = seal(&maria.key, &maria.pseudonym, "Call Maria Keller", place);
    let found = keys.by_pseudonym(&maria.pseudonym).await.unwrap().unwrap();
    assert_eq!(found.subject_id, "u-7");
    assert_eq!(
        open(&found.key, &sealed, place).as_deref(),
        Ok("Call Maria Keller")
    );

    assert_eq!(
        keys.destroy("u-7").await.unwrap(),
        Some(maria.pseudonym.clone())
    );
    assert_eq!(keys.by_pseudonym(&maria.pseudonym).await.unwrap(), None);
    let (rows, key_bytes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM subject_keys WHERE subject_id = 'u-7'),
                (SELECT count(*) FROM subject_keys WHERE data_key = $1)",
    )
    .bind(maria.key.expose().as_slice())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rows, key_bytes), (0, 0), "no visible row holds the key");
    assert_eq!(keys.destroy("u-7").await.unwrap(), None);
    assert_eq!(
        keys.find("u-7").await.unwrap(),
        None,
        "a search makes no key"
    );
    assert_eq!(keys.find("u-8").await.unwrap(), Some(other.clone()));
    assert_eq!(
        keys.by_pseudonym(&other.pseudonym).await.unwrap(),
        Some(other.clone()),
        "another subject's key is untouched"
    );

    // New data of the same person is sealed under a new key: the old text stays unreadable.
    let again = keys.key_for("u-7").await.unwrap();
    assert_ne!(again.pseudonym, maria.pseudonym);
    assert_eq!(
        open(&again.key, &sealed, place),
        Err(SealError::DoesNotOpen)
    );
}
