//! The size floor: one API Gateway handler that reads one DynamoDB item. Nothing else,
//! so that its release binary is what `lambda_http` and the DynamoDB client cost alone.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = std::env::var("TABLE").unwrap_or_else(|_| "floor".to_owned());
    run(service_fn(|request: Request| {
        let dynamo = &dynamo;
        let table = &table;
        async move {
            let id = request.uri().path().trim_start_matches('/').to_owned();
            let item = dynamo
                .get_item()
                .table_name(table)
                .key("id", AttributeValue::S(id))
                .send()
                .await?;
            let found = item.item().is_some();
            Ok::<_, Error>(
                Response::builder()
                    .status(if found { 200 } else { 404 })
                    .body(Body::from(if found { "found" } else { "not found" }))?,
            )
        }
    }))
    .await
}
