//! The user-management command against every store: create, log in, disable, enable,
//! reset a password, list.

use std::io::Cursor;

use dialer_core::auth::accepts;
use dialer_core::store::{MemoryStore, UserStore};
use dialer_passwords::Bcrypt;

async fn run(store: &dyn UserStore, args: &[&str], input: &str) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut out = Vec::new();
    users::run(
        &args,
        store,
        &Bcrypt::new(4),
        &mut Cursor::new(input.as_bytes()),
        &mut out,
    )
    .await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

async fn login_ok(store: &dyn UserStore, name: &str, password: &str) -> bool {
    let user = store.get_user(name).await.expect("get");
    accepts(&Bcrypt::new(4), user.as_ref(), password)
}

async fn manage_users(store: &dyn UserStore) {
    run(store, &["create", "carol"], "first-password\n")
        .await
        .expect("create");
    assert!(login_ok(store, "carol", "first-password").await);
    assert!(
        run(store, &["create", "carol"], "another-password\n")
            .await
            .is_err(),
        "exists"
    );
    assert!(
        run(store, &["create", "bad name"], "whatever-password\n")
            .await
            .is_err()
    );
    assert!(
        run(store, &["create", "dave"], "short\n").await.is_err(),
        "password too short"
    );
    run(store, &["disable", "carol"], "")
        .await
        .expect("disable");
    assert!(!login_ok(store, "carol", "first-password").await);
    assert!(
        run(store, &["list"], "")
            .await
            .expect("list")
            .contains("carol\tdisabled")
    );
    run(store, &["enable", "carol"], "").await.expect("enable");
    run(store, &["reset-password", "carol"], "second-password\n")
        .await
        .expect("reset");
    assert!(!login_ok(store, "carol", "first-password").await);
    assert!(login_ok(store, "carol", "second-password").await);
    assert!(
        run(store, &["list"], "")
            .await
            .expect("list")
            .contains("carol\tenabled")
    );
    assert!(run(store, &["disable", "nobody"], "").await.is_err());
    assert!(
        run(store, &["frobnicate"], "")
            .await
            .expect_err("usage")
            .contains("usage")
    );
}

#[tokio::test]
async fn users_are_managed_in_the_in_process_store() {
    manage_users(&MemoryStore::new()).await;
}

#[tokio::test]
async fn users_are_managed_in_dynamodb() {
    let (store, _, _) = integration::aws::dynamo_store().await;
    manage_users(&store).await;
}

#[tokio::test]
async fn users_are_managed_in_postgres() {
    let (store, _schema) = integration::pg::pg_store().await;
    manage_users(&store).await;
}
