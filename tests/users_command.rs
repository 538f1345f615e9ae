//! The user-management command against every store: create, log in, disable (which
//! ends earlier tokens for good), enable, reset a password, list.

use std::io::Cursor;

use dialer_core::auth::accepts;
use dialer_core::domain::UserLimits;
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

async fn token_version(store: &dyn UserStore, name: &str) -> u64 {
    let user = store.get_user(name).await.expect("get").expect("exists");
    user.token_version
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
    let before_disable = token_version(store, "carol").await;
    run(store, &["disable", "carol"], "")
        .await
        .expect("disable");
    assert!(!login_ok(store, "carol", "first-password").await);
    let disabled_at = token_version(store, "carol").await;
    assert!(
        disabled_at > before_disable,
        "a disable ends carol's earlier tokens for good"
    );
    assert!(
        run(store, &["list"], "")
            .await
            .expect("list")
            .contains("carol\tdisabled")
    );
    run(store, &["enable", "carol"], "").await.expect("enable");
    assert_eq!(
        token_version(store, "carol").await,
        disabled_at,
        "an enable brings no earlier token back"
    );
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

async fn set_limits(store: &dyn UserStore) {
    run(store, &["create", "erin"], "erin-password\n")
        .await
        .expect("create");
    let out = run(
        store,
        &[
            "set-limits",
            "erin",
            "--max-concurrent-calls",
            "5",
            "--max-queued-calls=1000",
        ],
        "",
    )
    .await
    .expect("set-limits");
    assert!(
        out.contains("max_concurrent_calls=5 max_queued_calls=1000"),
        "{out}"
    );
    let user = store.get_user("erin").await.expect("get").expect("erin");
    assert_eq!(
        user.limits,
        UserLimits {
            max_concurrent_calls: Some(5),
            max_queued_calls: Some(1000),
        }
    );
    assert!(
        run(store, &["list"], "")
            .await
            .expect("list")
            .contains("erin\tenabled\tmax_concurrent_calls=5 max_queued_calls=1000")
    );

    // A limit not named keeps its value; `none` lifts one.
    run(
        store,
        &["set-limits", "erin", "--max-concurrent-calls", "none"],
        "",
    )
    .await
    .expect("set-limits");
    let user = store.get_user("erin").await.expect("get").expect("erin");
    assert_eq!(
        user.limits,
        UserLimits {
            max_concurrent_calls: None,
            max_queued_calls: Some(1000),
        }
    );
    assert!(
        run(store, &["list"], "")
            .await
            .expect("list")
            .contains("erin\tenabled\tmax_concurrent_calls=none max_queued_calls=1000")
    );

    // Bad values are refused with a message naming the option and its range, and
    // change nothing, even when another option in the same command is good.
    for (args, says) in [
        (
            vec!["--max-concurrent-calls", "0"],
            "--max-concurrent-calls must be a whole number from 1 to 5000",
        ),
        (vec!["--max-concurrent-calls", "5001"], "from 1 to 5000"),
        (
            vec!["--max-queued-calls", "100001"],
            "--max-queued-calls must be a whole number from 1 to 100000",
        ),
        (vec!["--max-queued-calls", "-3"], "from 1 to 100000"),
        (vec!["--max-queued-calls", "lots"], "or none"),
        (
            vec!["--max-concurrent-calls", "7", "--max-queued-calls", "0"],
            "from 1 to 100000",
        ),
        (vec!["--max-queued-calls"], "needs a value"),
        (vec!["--max-calls", "3"], "unknown option --max-calls"),
        (vec![], "name a limit"),
    ] {
        let mut command = vec!["set-limits", "erin"];
        command.extend(args.iter().copied());
        let err = run(store, &command, "").await.expect_err("refused");
        assert!(err.contains(says), "{command:?}: {err}");
    }
    let user = store.get_user("erin").await.expect("get").expect("erin");
    assert_eq!(
        user.limits,
        UserLimits {
            max_concurrent_calls: None,
            max_queued_calls: Some(1000),
        },
        "refused commands changed nothing"
    );
    let err = run(
        store,
        &["set-limits", "nobody", "--max-queued-calls", "5"],
        "",
    )
    .await
    .expect_err("no such user");
    assert!(err.contains("no user nobody"), "{err}");
}

#[tokio::test]
async fn set_limits_sets_and_lifts_a_users_limits_in_the_in_process_store() {
    set_limits(&MemoryStore::new()).await;
}

#[tokio::test]
async fn set_limits_sets_and_lifts_a_users_limits_in_dynamodb() {
    let (store, _, _) = integration::aws::dynamo_store().await;
    set_limits(&store).await;
}

#[tokio::test]
async fn set_limits_sets_and_lifts_a_users_limits_in_postgres() {
    let (store, _schema) = integration::pg::pg_store().await;
    set_limits(&store).await;
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
