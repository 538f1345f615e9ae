//! AWS in tests: moto in server mode, reached by the real AWS SDK through an endpoint
//! override. `./scripts/test` starts moto and sets `DIALER_TEST_AWS_ENDPOINT`. A test
//! that needs moto has `dynamodb` or `secrets_manager` in its name and fails without it;
//! `./scripts/test` leaves such tests out (and says so) when moto cannot be had.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use dialer_store_dynamo::DynamoStore;
use uuid::Uuid;

/// The moto endpoint; a test without one fails, never passes unrun.
pub fn endpoint() -> String {
    match std::env::var("DIALER_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "this test needs moto: run ./scripts/test (it starts one), or leave tests named dynamodb/secrets_manager out"
        ),
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// Fresh tables with unique names, so tests never see each other's data.
pub struct Tables {
    pub calls: String,
    pub users: String,
}

impl Tables {
    pub fn unique() -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        Self {
            calls: format!("calls-{suffix}"),
            users: format!("users-{suffix}"),
        }
    }
}

/// A DynamoDB store on moto with its own new tables.
pub async fn dynamo_store() -> (DynamoStore, Tables, SdkConfig) {
    let endpoint = endpoint();
    let aws = sdk_config(&endpoint).await;
    let tables = Tables::unique();
    let platform = dialer_boot::Platform::with_aws(aws.clone());
    let store = dialer_boot::dynamo_store(&platform, &tables.calls, &tables.users, 30)
        .expect("DynamoDB store");
    store.create_tables().await.expect("tables created on moto");
    (store, tables, aws)
}
