//! PostgreSQL in tests: a real server at `DATABASE_URL` (`./scripts/test` points it at
//! the machine's server under `CI=true`). Each test gets a schema of its own, so runs
//! and tests never see each other's rows; under `CI=true` a missing or unreachable
//! server fails the test instead of skipping it.

use dialer_store_postgres::PgStore;
use sqlx::Connection;
use uuid::Uuid;

/// `DATABASE_URL`, or `None` (with a note) when these tests may be skipped.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but DATABASE_URL is not set: run the tests with ./scripts/test"
            );
            eprintln!("skipped: DATABASE_URL is not set");
            None
        }
    }
}

/// A URL for a new, empty schema on the test server. Schemas left by runs more than
/// an hour old are dropped on the way.
pub async fn fresh_schema_url() -> Option<String> {
    let base = database_url()?;
    let now = chrono::Utc::now().timestamp();
    let schema = format!(
        "dialer_test_{now}_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let mut connection = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL is not reachable: {e}"));
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'dialer\\_test\\_%'",
    )
    .fetch_all(&mut connection)
    .await
    .expect("schemas listed");
    for stale in old
        .iter()
        .filter(|name| created_at(name).is_none_or(|t| now - t > 3600))
    {
        // Another run may drop it at the same moment: that is fine.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {stale} CASCADE"
        )))
        .execute(&mut connection)
        .await;
    }
    // The name is ours (digits and hex): nothing from outside reaches this statement.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut connection)
        .await
        .expect("schema created");
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}

/// A PostgreSQL store in a fresh schema, migrations applied.
pub async fn pg_store() -> Option<PgStore> {
    let url = fresh_schema_url().await?;
    Some(
        PgStore::connect(&url, 8)
            .await
            .expect("PostgreSQL store connects and migrates"),
    )
}

fn created_at(schema: &str) -> Option<i64> {
    schema
        .strip_prefix("dialer_test_")?
        .split('_')
        .next()?
        .parse()
        .ok()
}
