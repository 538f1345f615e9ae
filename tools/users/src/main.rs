//! `dialer-users`: manage API users in the configured store (DynamoDB by default,
//! `CALLS_TABLE`/`USERS_TABLE`, region and endpoint from the usual AWS variables;
//! PostgreSQL with `DATABASE_URL` when built with `--features postgres`).

use std::process::ExitCode;

use dialer_boot::settings::{ProcessEnv, StoreSettings, UsersSettings};
use dialer_boot::{Platform, dynamo_store};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match UsersSettings::from_env(&ProcessEnv) {
        Ok(settings) => settings,
        Err(e) => return fail(&e.to_string()),
    };
    let platform = Platform::from_env().await;
    let result = if args.first().map(String::as_str) == Some("create-tables") {
        create_tables(&settings.store, &platform).await
    } else {
        let (store, hasher) = match dialer_boot::user_admin(&settings, &platform).await {
            Ok(parts) => parts,
            Err(e) => return fail(&e.to_string()),
        };
        let stdin = std::io::stdin();
        users::run(
            &args,
            &*store,
            &*hasher,
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

async fn create_tables(store: &StoreSettings, platform: &Platform) -> Result<(), String> {
    let StoreSettings::Dynamo {
        calls_table,
        users_table,
        call_retention_days,
    } = store
    else {
        return Err(
            "create-tables makes DynamoDB tables; DATABASE_URL or DISABLE_DB is set".into(),
        );
    };
    let store = dynamo_store(platform, calls_table, users_table, *call_retention_days)
        .map_err(|e| e.to_string())?;
    store.create_tables().await.map_err(|e| e.to_string())?;
    println!("created {calls_table} and {users_table}");
    Ok(())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}
