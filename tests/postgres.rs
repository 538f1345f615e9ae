//! PostgreSQL specifics: migrations applied at start are safe to run again, and the
//! local server runs whole calls on PostgreSQL (see also `calls_e2e::on_postgres`).

use dialer_core::domain::{CallPolicy, CallRequest, now};
use dialer_core::store::{CallReads, CallStore};
use dialer_store_postgres::PgStore;
use uuid::Uuid;

#[tokio::test]
async fn migrations_run_twice_and_a_second_start_keeps_the_data() {
    let schema = integration::pg::fresh_schema().await;
    let url = schema.url.clone();
    let first = PgStore::connect(&url, 2)
        .await
        .expect("first start migrates");
    let call = CallRequest {
        phone_number: "+15550010001".into(),
        ..CallRequest::default()
    }
    .validate(&CallPolicy::default(), "alice", Uuid::new_v4(), now())
    .expect("valid");
    first.insert_call(&call).await.expect("insert");
    first.migrate().await.expect("migrating again is a no-op");
    let second = PgStore::connect(&url, 2)
        .await
        .expect("second start migrates again");
    assert_eq!(second.get_call(call.id).await.expect("get"), Some(call));
}

#[tokio::test]
async fn a_missing_database_is_named_with_what_to_do_postgres() {
    let base = integration::pg::database_url();
    let (root, _) = base.rsplit_once('/').expect("a database in the URL");
    let missing = format!("{root}/dialer_missing_{}", uuid::Uuid::new_v4().simple());
    let error = PgStore::connect(&missing, 1)
        .await
        .err()
        .expect("no such database");
    let text = error.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("CREATE DATABASE"), "{text}");
}

/// The plan PostgreSQL runs for a page of one user's calls among many, read with
/// `EXPLAIN ANALYZE`: the rows it reads, not the time it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_users_calls_reads_its_length_not_the_users_history_postgres() {
    use dialer_core::domain::{CallPolicy, CallRequest};
    use dialer_core::store::CallStore;
    let (store, schema) = integration::pg::pg_store().await;
    let request = CallRequest {
        phone_number: "+15550020001".into(),
        ..CallRequest::default()
    };
    for n in 0..2_500 {
        let owner = if n % 5 == 0 { "bob" } else { "alice" };
        let call = request
            .validate(
                &CallPolicy::default(),
                owner,
                uuid::Uuid::new_v4(),
                chrono::Utc::now(),
            )
            .expect("valid");
        store.insert_call(&call).await.expect("insert");
    }
    let pool = sqlx::PgPool::connect(&schema.url).await.expect("connects");
    sqlx::query("ANALYZE calls")
        .execute(&pool)
        .await
        .expect("analyze");
    let cursor: (chrono::DateTime<chrono::Utc>, uuid::Uuid) = sqlx::query_as(
        "SELECT created_at, call_id FROM calls WHERE owner = 'alice'
         ORDER BY created_at DESC, call_id DESC OFFSET 1000 LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("a cursor");
    for (before, label) in [(None, "first page"), (Some(cursor), "a page further on")] {
        let explain = format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {}",
            dialer_store_postgres::PAGE_OF_CALLS
        );
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .bind("alice")
            .bind(before.map(|(at, _)| at))
            .bind(before.map_or(uuid::Uuid::nil(), |(_, id)| id))
            .bind(2_i64)
            .fetch_one(&pool)
            .await
            .expect("a plan");
        let mut nodes = Vec::new();
        collect_nodes(&plan[0]["Plan"], &mut nodes);
        for node in &nodes {
            let kind = node["Node Type"].as_str().unwrap_or_default();
            assert!(
                kind != "Sort" && kind != "Seq Scan" && kind != "Bitmap Heap Scan",
                "{label}: {kind} reads the whole history: {plan}"
            );
            let rows = node["Actual Rows"].as_f64().unwrap_or(0.0);
            let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
            assert!(
                rows * loops <= 2.0,
                "{label}: {kind} read {rows} rows × {loops}: {plan}"
            );
            assert!(
                node["Rows Removed by Filter"].as_f64().unwrap_or(0.0) == 0.0,
                "{label}: {kind} filtered rows out: {plan}"
            );
        }
    }
}

fn collect_nodes<'a>(node: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
    into.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_nodes(child, into);
    }
}
