//! AWS in tests: moto in server mode, reached by the real AWS SDK through an endpoint
//! override. `./scripts/test` starts moto and sets `DIALER_TEST_AWS_ENDPOINT`; under
//! `CI=true` a missing endpoint fails the test instead of skipping it.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use dialer_store_dynamo::DynamoStore;
use uuid::Uuid;

/// The moto endpoint, or `None` (with a note) when these tests may be skipped.
pub fn endpoint() -> Option<String> {
    match std::env::var("DIALER_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but DIALER_TEST_AWS_ENDPOINT is not set: run the tests with ./scripts/test, which starts moto"
            );
            eprintln!("skipped: no moto endpoint (./scripts/test starts one)");
            None
        }
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

/// A DynamoDB store on moto with its own new tables; `None` when moto is not there.
pub async fn dynamo_store() -> Option<(DynamoStore, Tables, SdkConfig)> {
    let endpoint = endpoint()?;
    let aws = sdk_config(&endpoint).await;
    let tables = Tables::unique();
    let platform = dialer_boot::Platform::with_aws(aws.clone());
    let store = dialer_boot::dynamo_store(&platform, &tables.calls, &tables.users, 30)
        .expect("DynamoDB store");
    store.create_tables().await.expect("tables created on moto");
    Some((store, tables, aws))
}
