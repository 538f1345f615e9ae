//! Secrets from Secrets Manager (moto): read by id, cached, and a rotation picked up
//! after the TTL without dropping the tokens signed just before it.

use std::sync::Arc;
use std::time::Duration;

use dialer_core::auth::{TokenSettings, Tokens};
use dialer_core::secrets::SecretSource;
use dialer_secrets_aws::SecretsManagerSecret;
use uuid::Uuid;

const TTL: Duration = Duration::from_millis(400);

async fn secret_on_moto(value: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let endpoint = integration::aws::endpoint();
    let aws = integration::aws::sdk_config(&endpoint).await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let name = format!("dialer/test/{}", Uuid::new_v4().simple());
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .expect("secret created on moto");
    (client, name)
}

async fn rotate(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("rotated");
}

#[tokio::test]
async fn a_rotated_secret_is_picked_up_after_the_ttl() {
    let (client, name) = secret_on_moto("first-value-0123456789").await;
    let source = SecretsManagerSecret::new(client.clone(), name.clone(), TTL);
    assert_eq!(
        source.current().await.expect("read").expose(),
        "first-value-0123456789"
    );
    rotate(&client, &name, "second-value-0123456789").await;
    assert_eq!(
        source.current().await.expect("cached").expose(),
        "first-value-0123456789",
        "cached within the TTL"
    );
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert_eq!(
        source.current().await.expect("read").expose(),
        "second-value-0123456789"
    );
    assert_eq!(
        source
            .previous()
            .await
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("first-value-0123456789")
    );
}

#[tokio::test]
async fn tokens_survive_a_signing_key_rotation() {
    let (client, name) = secret_on_moto("signing-key-one-0123456789").await;
    let source = Arc::new(SecretsManagerSecret::new(client.clone(), name.clone(), TTL));
    let settings = TokenSettings {
        issuer: None,
        audience: None,
        ttl_seconds: 600,
    };
    let tokens = Tokens::new(settings, source);
    let before = tokens.issue("alice", 0).await.expect("issue");
    rotate(&client, &name, "signing-key-two-0123456789").await;
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let after = tokens.issue("alice", 0).await.expect("issue");
    assert_eq!(
        tokens.verify(&after).await.expect("new key").username,
        "alice"
    );
    assert_eq!(
        tokens
            .verify(&before)
            .await
            .expect("previous key still accepted")
            .username,
        "alice"
    );
    rotate(&client, &name, "signing-key-three-0123456789").await;
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert!(
        tokens.verify(&before).await.is_err(),
        "two rotations later the first key is gone"
    );
}

#[tokio::test]
async fn a_missing_secret_is_an_error_and_a_failed_refresh_keeps_the_last_value() {
    let (client, name) = secret_on_moto("kept-value-0123456789").await;
    let missing =
        SecretsManagerSecret::new(client.clone(), "dialer/test/does-not-exist".into(), TTL);
    let error = missing.current().await.expect_err("no such secret");
    assert!(
        !error.to_string().contains("kept-value"),
        "errors never carry a secret"
    );
    let source = SecretsManagerSecret::new(client.clone(), name.clone(), Duration::from_millis(50));
    source.current().await.expect("read");
    client
        .delete_secret()
        .secret_id(&name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("deleted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        source.current().await.expect("stale value kept").expose(),
        "kept-value-0123456789"
    );
}
