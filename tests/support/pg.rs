//! PostgreSQL in tests: a real server at `DATABASE_URL` (`./scripts/test` points it at
//! the machine's server under `CI=true`). Each test gets a schema of its own, so runs
//! and tests never see each other's rows. A test that needs PostgreSQL has `postgres`
//! in its name and fails without it; `./scripts/test` leaves such tests out (and says so)
//! when `DATABASE_URL` is not set.

use dialer_store_postgres::PgStore;
use sqlx::Connection;
use uuid::Uuid;

/// `DATABASE_URL`; a test without one fails, never passes unrun.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs PostgreSQL: set DATABASE_URL (./scripts/test does under CI=true), or leave tests named postgres out"
        ),
    }
}

/// A new, empty schema on the test server, dropped when this is dropped (at the end of
/// the test, passed or failed).
pub struct Schema {
    pub url: String,
    base: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop cannot await: a thread of its own, with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut connection)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!(
                "schema {} was not dropped; a later run sweeps it",
                self.name
            );
        }
    }
}

/// A fresh schema and a URL that works in it. Schemas left by runs more than an hour
/// old (a killed run) are dropped on the way.
pub async fn fresh_schema() -> Schema {
    let base = database_url();
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
    Schema {
        url: format!("{base}{separator}options=-c%20search_path%3D{schema}"),
        base,
        name: schema,
    }
}

/// A PostgreSQL store in a fresh schema, migrations applied; keep the schema for as
/// long as the store is used.
pub async fn pg_store() -> (PgStore, Schema) {
    let schema = fresh_schema().await;
    let store = PgStore::connect(&schema.url, 8)
        .await
        .expect("PostgreSQL store connects and migrates");
    (store, schema)
}

fn created_at(schema: &str) -> Option<i64> {
    schema
        .strip_prefix("dialer_test_")?
        .split('_')
        .next()?
        .parse()
        .ok()
}
