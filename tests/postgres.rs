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
