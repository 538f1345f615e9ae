//! Builds the adapters a deployed binary runs on from its configuration: the store
//! (DynamoDB, or in process with `DISABLE_DB=true`), the secrets (Secrets Manager by id,
//! or the environment), and the ARI client. Lambdas, the bridge and the user command
//! all start here, once per process.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;

use crate::ari::AriClient;
use crate::config::{Config, SecretSetting};
use crate::secrets::aws::SecretsManagerSecret;
use crate::secrets::{Fixed, SecretSource};
use crate::store::dynamo::DynamoStore;
use crate::store::{MemoryStore, Store};

/// The adapters of one process.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub signing_key: Arc<dyn SecretSource>,
    pub ari: AriClient,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WiringError(pub String);

/// Reads the AWS configuration (region, credentials, `AWS_ENDPOINT_URL`) the usual way.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

pub async fn adapters(config: &Config) -> Result<Adapters, WiringError> {
    adapters_with(config, &aws_config().await).await
}

/// The same, with an AWS configuration built by the caller (tests point it at moto).
pub async fn adapters_with(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Adapters, WiringError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let ttl = Duration::from_secs(config.secrets_ttl_seconds);
    let signing_key: Arc<dyn SecretSource> = match &config.secret_key {
        SecretSetting::Value(key) => Arc::new(Fixed(key.clone())),
        SecretSetting::SecretId(id) => {
            Arc::new(SecretsManagerSecret::new(secrets.clone(), id.clone(), ttl))
        }
    };
    let ari_password: Arc<dyn SecretSource> = match &config.ari_password_secret_id {
        Some(id) => Arc::new(SecretsManagerSecret::new(secrets, id.clone(), ttl)),
        None => Arc::new(Fixed(config.ari.password.clone())),
    };
    let ari = AriClient::with_password_source(config.ari.clone(), ari_password)
        .map_err(|e| WiringError(e.to_string()))?;
    Ok(Adapters {
        store: store(config, aws).await?,
        signing_key,
        ari,
    })
}

pub fn dynamodb_client(aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(aws)
}

/// The store the configuration selects: in process with `DISABLE_DB=true`, PostgreSQL
/// when `DATABASE_URL` is set, DynamoDB otherwise.
pub async fn store(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Arc<dyn Store>, WiringError> {
    if config.disable_db {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if let Some(url) = &config.database_url {
        return crate::store::postgres(url, config.database_pool_size)
            .await
            .map_err(|e| WiringError(format!("DATABASE_URL: {e}")));
    }
    Ok(Arc::new(DynamoStore::new(
        dynamodb_client(aws),
        config.calls_table.clone(),
        config.users_table.clone(),
        config.call_retention_days,
    )))
}
