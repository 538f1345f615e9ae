//! `dialer-users`: manage API users in the configured store (DynamoDB by default,
//! `CALLS_TABLE`/`USERS_TABLE`, region and endpoint from the usual AWS variables).

use std::process::ExitCode;

use shared::auth::Hasher;
use shared::config::{Config, ProcessEnv};
use shared::secret::Secret;
use shared::store::dynamo::DynamoStore;
use shared::wiring;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This command signs no tokens: it needs no SECRET_KEY.
    let config = match Config::load_with(&ProcessEnv, Some(Secret::new("unused-by-dialer-users"))) {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string()),
    };
    let aws = wiring::aws_config().await;
    let result = if args.first().map(String::as_str) == Some("create-tables") {
        DynamoStore::new(
            shared::wiring::dynamodb_client(&aws),
            config.calls_table.clone(),
            config.users_table.clone(),
            config.call_retention_days,
        )
        .create_tables()
        .await
        .map(|()| println!("created {} and {}", config.calls_table, config.users_table))
        .map_err(|e| e.to_string())
    } else {
        let store = match wiring::store(&config, &aws).await {
            Ok(store) => store,
            Err(e) => return fail(&e.to_string()),
        };
        let stdin = std::io::stdin();
        users::run(
            &args,
            &*store,
            Hasher::new(config.bcrypt_cost),
            &mut stdin.lock(),
            &mut std::io::stdout(),
        )
        .await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}
