//! A Lambda function's AWS configuration, read from the variables the Lambda runtime sets
//! for it: `AWS_REGION`, and the execution role's keys in `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`. That is all the SDK's default chain
//! (`aws-config`) ever finds in a function, so the functions leave it out: its profile
//! files, SSO, web identity, container and instance roles and the STS client they need
//! are ~300 KB of each function's binary (issue 9's size goal) and a few allocations at
//! every cold start. The bridge and `dialer-users`, which run on hosts and laptops, keep
//! the whole chain (`Platform::from_env` with the `aws-chain` feature).
//!
//! Endpoints honour the SDK's documented variables: `AWS_ENDPOINT_URL` for every service,
//! `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SQS`) for one. Retries,
//! timeouts and the behavior version are the SDK clients' own defaults (the
//! `behavior-version-latest` feature every SDK crate here is built with), as `aws-config`
//! gives them when no variable overrides them.

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

use crate::settings::{ConfigError, Env};

/// The configuration the environment describes, or the first variable a function
/// cannot do without, named. Values are never put into an error: a key is a secret.
pub fn lambda_config(env: &dyn Env) -> Result<SdkConfig, ConfigError> {
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .ok_or_else(|| missing("AWS_REGION", "the Lambda runtime sets it"))?;
    let key_id = env.get("AWS_ACCESS_KEY_ID").ok_or_else(|| {
        missing(
            "AWS_ACCESS_KEY_ID",
            "the Lambda runtime sets the role's keys",
        )
    })?;
    let secret = env.get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
        missing(
            "AWS_SECRET_ACCESS_KEY",
            "the Lambda runtime sets the role's keys",
        )
    })?;
    let credentials = Credentials::new(
        key_id,
        secret,
        env.get("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut config = SdkConfig::builder()
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .service_config(ServiceEndpoints::from_env(env));
    if let Some(url) = env.get("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    Ok(config.build())
}

/// The services the functions' clients talk to, by the SDK's service ids.
const SERVICES: [&str; 3] = ["DynamoDB", "Secrets Manager", "SQS"];

/// `AWS_ENDPOINT_URL_<SERVICE>`, read once with the rest and asked by each client as it
/// is built: the service id upper-cased, spaces as underscores (`Secrets Manager` →
/// `SECRETS_MANAGER`), as the SDK documents it.
#[derive(Debug)]
struct ServiceEndpoints(Vec<(String, String)>);

impl ServiceEndpoints {
    fn from_env(env: &dyn Env) -> Self {
        let given = SERVICES
            .iter()
            .map(|service| service_variable("AWS_ENDPOINT_URL", service))
            .filter_map(|var| env.get(&var).map(|url| (var, url)))
            .collect();
        Self(given)
    }
}

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let var = service_variable(key.env(), key.service_id());
        self.0
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, value)| value.clone())
    }
}

fn service_variable(variable: &str, service_id: &str) -> String {
    format!(
        "{variable}_{}",
        service_id.to_ascii_uppercase().replace([' ', '-'], "_")
    )
}

fn missing(var: &'static str, why: &str) -> ConfigError {
    ConfigError {
        var,
        problem: format!("is not set ({why}; a function reads AWS from its environment only)"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    struct Vars(HashMap<&'static str, &'static str>);

    impl Env for Vars {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    fn lambda_vars() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_SESSION_TOKEN", "session-token"),
        ])
    }

    #[tokio::test]
    async fn a_function_uses_the_region_and_role_keys_the_lambda_runtime_sets() {
        let config = lambda_config(&Vars(lambda_vars())).expect("config");
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), None);
        let credentials = config
            .credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "wJalrXUtnFEMI");
        assert_eq!(credentials.session_token(), Some("session-token"));
    }

    #[test]
    fn an_endpoint_override_reaches_every_client() {
        let mut vars = lambda_vars();
        vars.insert("AWS_ENDPOINT_URL", "http://127.0.0.1:5000");
        vars.remove("AWS_SESSION_TOKEN");
        let config = lambda_config(&Vars(vars)).expect("config");
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn the_region_may_come_from_the_older_default_region_variable() {
        let mut vars = lambda_vars();
        vars.remove("AWS_REGION");
        vars.insert("AWS_DEFAULT_REGION", "us-west-2");
        let config = lambda_config(&Vars(vars)).expect("config");
        assert_eq!(config.region().map(Region::as_ref), Some("us-west-2"));
    }

    #[test]
    fn a_missing_region_or_key_is_named_and_no_value_is_shown() {
        for var in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let mut vars = lambda_vars();
            vars.remove(var);
            let error = lambda_config(&Vars(vars)).expect_err(var);
            assert_eq!(error.var, var);
            let shown = error.to_string();
            assert!(
                !shown.contains("wJalrXUtnFEMI") && !shown.contains("AKIDEXAMPLE"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_service_endpoint_is_given_to_that_service_alone() {
        let mut vars = lambda_vars();
        vars.insert("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000");
        let config = lambda_config(&Vars(vars)).expect("config");
        let services = config.service_config().expect("service endpoints");
        let asked = |service_id| {
            services.load_config(
                ServiceConfigKey::builder()
                    .service_id(service_id)
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .expect("key"),
            )
        };
        assert_eq!(asked("DynamoDB").as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(asked("Secrets Manager"), None);
        assert_eq!(config.endpoint_url(), None);
    }

    #[test]
    fn a_service_endpoint_variable_is_named_as_the_sdk_documents_it() {
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "DynamoDB"),
            "AWS_ENDPOINT_URL_DYNAMODB"
        );
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "Secrets Manager"),
            "AWS_ENDPOINT_URL_SECRETS_MANAGER"
        );
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "SQS"),
            "AWS_ENDPOINT_URL_SQS"
        );
    }
}
