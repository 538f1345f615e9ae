//! The infrastructure template agrees with the code: every route the code serves
//! behind API Gateway is routed to the function that serves it (and nothing else is),
//! every function is a binary of this workspace built with cargo-lambda, every
//! variable a deployed binary requires is set for it, and the notify function is fed
//! by the calls table's stream and its retry queue, failures going to a dead-letter
//! queue. `cfn-lint` checks the rest (`./scripts/test` runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use dialer_boot::settings::DEPLOYED_ENV;
use dialer_http::ROUTES;
use serde_json::Value as Json;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text =
        std::fs::read_to_string(root().join("infra/template.yaml")).expect("infra/template.yaml");
    serde_yaml::from_str(&text).expect("the template is YAML")
}

fn cargo_metadata() -> Json {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata JSON")
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap_or_default().to_owned(), r))
        .collect()
}

/// (method, path, function) of every route API Gateway exposes, from the code's table.
fn served_by_lambdas() -> BTreeSet<(String, String, String)> {
    ROUTES
        .iter()
        .filter_map(|r| Some((r.method.to_owned(), r.path.to_owned(), r.lambda?.to_owned())))
        .collect()
}

fn binary_of(function: &Value) -> String {
    function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .expect("BuildProperties.Binary")
        .to_owned()
}

fn keys(mapping: &Value) -> BTreeSet<String> {
    mapping
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_route_the_code_serves_is_routed_to_its_function_and_nothing_else() {
    let template = template();
    let mut routed = BTreeSet::new();
    for (_, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        let binary = binary_of(function);
        // notify has no events of its own: its event source mappings are resources.
        for (_, event) in function["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            assert_eq!(event["Type"].as_str(), Some("HttpApi"));
            let method = event["Properties"]["Method"]
                .as_str()
                .expect("Method")
                .to_owned();
            let path = event["Properties"]["Path"]
                .as_str()
                .expect("Path")
                .to_owned();
            assert!(
                routed.insert((method, path, binary.clone())),
                "routed twice"
            );
        }
    }
    assert_eq!(routed, served_by_lambdas());
}

#[test]
fn every_function_is_a_workspace_binary_built_with_cargo_lambda() {
    let metadata = cargo_metadata();
    let binaries: BTreeSet<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let template = template();
    let functions = resources_of_type(&template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 4);
    for (name, function) in functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some(".."),
            "{name}: the workspace root"
        );
        assert!(
            binaries.contains(&binary_of(function)),
            "{name}: {} is not a binary here",
            binary_of(function)
        );
    }
    assert_eq!(
        template["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
    // Lambdas are served by their own routes only.
    let lambdas: BTreeSet<&str> = ROUTES.iter().filter_map(|r| r.lambda).collect();
    assert_eq!(lambdas, ["originate", "status", "token"].into());
}

#[test]
fn every_variable_a_deployed_binary_requires_is_set_for_it() {
    let template = template();
    let globals = keys(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let mut set_for: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        let own = keys(&function["Properties"]["Environment"]["Variables"]);
        set_for.insert(binary_of(function), globals.union(&own).cloned().collect());
    }
    for (_, task) in resources_of_type(&template, "AWS::ECS::TaskDefinition") {
        for container in task["Properties"]["ContainerDefinitions"]
            .as_sequence()
            .expect("containers")
        {
            let names = container["Environment"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|e| e["Name"].as_str().map(str::to_owned))
                .collect();
            set_for.insert(container["Name"].as_str().expect("Name").to_owned(), names);
        }
    }
    for (binary, required) in DEPLOYED_ENV {
        let set = set_for
            .get(*binary)
            .unwrap_or_else(|| panic!("{binary} is not deployed by the template"));
        for var in *required {
            assert!(set.contains(*var), "{binary} needs {var}");
        }
    }
}

#[test]
fn exactly_one_bridge_runs_and_deployments_never_run_two() {
    let template = template();
    let services = resources_of_type(&template, "AWS::ECS::Service");
    assert_eq!(services.len(), 1);
    let service = &services[0].1["Properties"];
    assert_eq!(service["DesiredCount"].as_i64(), Some(1));
    assert_eq!(
        service["DeploymentConfiguration"]["MaximumPercent"].as_i64(),
        Some(100)
    );
    assert_eq!(service["LaunchType"].as_str(), Some("FARGATE"));
}

#[test]
fn cargo_lambda_watch_routes_the_same_paths_to_the_same_functions() {
    let metadata = cargo_metadata();
    let router = &metadata["metadata"]["lambda"]["watch"]["router"];
    let mut routed = BTreeSet::new();
    for (path, target) in router
        .as_object()
        .expect("[workspace.metadata.lambda.watch.router]")
    {
        match target {
            Json::String(function) => {
                for route in ROUTES.iter().filter(|r| r.path == path) {
                    routed.insert((route.method.to_owned(), path.clone(), function.clone()));
                }
            }
            Json::Array(by_method) => {
                for entry in by_method {
                    let method = entry["method"].as_str().expect("method").to_owned();
                    let function = entry["function"].as_str().expect("function").to_owned();
                    routed.insert((method, path.clone(), function));
                }
            }
            other => panic!("{path}: {other}"),
        }
    }
    assert_eq!(routed, served_by_lambdas());
}

#[test]
fn the_bridge_image_is_multi_stage_small_and_not_root() {
    let dockerfile =
        std::fs::read_to_string(root().join("functions/bridge/Dockerfile")).expect("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage");
    assert!(dockerfile.contains("cargo build --release --locked -p bridge"));
    assert!(dockerfile.contains("distroless"), "a small final image");
    assert!(
        dockerfile.lines().any(|l| l.starts_with("USER nonroot")),
        "not root"
    );
}

/// Where a statement's resources name `needle` (a tagged `!GetAtt …` is matched by text).
fn statements_on<'a>(function: &'a Value, needle: &str) -> Vec<&'a Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|policy| policy["Statement"].as_sequence().into_iter().flatten())
        .filter(|statement| format!("{:?}", statement["Resource"]).contains(needle))
        .collect()
}

#[test]
fn every_function_reads_the_user_and_the_token_function_touches_only_throttle_items_of_calls() {
    let template = template();
    for (name, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        let reads_users = statements_on(function, "UsersTable.Arn")
            .iter()
            .any(|s| format!("{:?}", s["Action"]).contains("dynamodb:GetItem"));
        assert!(
            reads_users,
            "{name}: tokens are checked against the user, so it needs GetItem on the users table"
        );
    }
    let token = &template["Resources"]["TokenFunction"];
    let on_calls = statements_on(token, "CallsTable.Arn");
    assert_eq!(on_calls.len(), 1, "one statement on the calls table");
    let keys = &on_calls[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
    assert_eq!(
        keys.as_sequence().map(Vec::as_slice),
        Some([Value::from("throttle#*")].as_slice()),
        "the token function may reach only the login throttle's items"
    );
}

/// The resource a `!GetAtt Name.Attribute` or `!Ref Name` names.
fn named(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) => tagged.value.as_str()?.split('.').next(),
        _ => None,
    }
}

#[test]
fn notify_is_fed_by_the_calls_stream_with_bisect_and_a_dead_letter_queue_and_by_its_retry_queue() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(
        resources["CallsTable"]["Properties"]["StreamSpecification"]["StreamViewType"].as_str(),
        Some("KEYS_ONLY")
    );
    let notify = &resources["NotifyFunction"];
    assert_eq!(binary_of(notify), "notify");
    assert!(
        notify["Properties"]["VpcConfig"].is_null(),
        "notify posts to the internet: not in the VPC"
    );
    let mappings: Vec<&Value> = resources_of_type(&template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .map(|(_, m)| &m["Properties"])
        .filter(|m| named(&m["FunctionName"]) == Some("NotifyFunction"))
        .collect();
    assert_eq!(mappings.len(), 2, "the stream and the retry queue");
    let from = |source: &str| {
        mappings
            .iter()
            .copied()
            .find(|m| named(&m["EventSourceArn"]) == Some(source))
            .unwrap_or_else(|| panic!("no mapping from {source}"))
    };
    let reports_items = |m: &Value| {
        m["FunctionResponseTypes"]
            .as_sequence()
            .is_some_and(|t| t.contains(&Value::from("ReportBatchItemFailures")))
    };

    let stream = from("CallsTable");
    assert!(format!("{:?}", stream["EventSourceArn"]).contains("StreamArn"));
    assert_eq!(stream["BisectBatchOnFunctionError"].as_bool(), Some(true));
    let retries = stream["MaximumRetryAttempts"]
        .as_i64()
        .expect("bounded retries");
    assert!((0..=10).contains(&retries), "{retries} retries");
    assert!(
        stream["MaximumRecordAgeInSeconds"]
            .as_i64()
            .is_some_and(|age| age > 0)
    );
    assert!(reports_items(stream), "stream: ReportBatchItemFailures");
    let dead_letters = named(&stream["DestinationConfig"]["OnFailure"]["Destination"])
        .expect("an on-failure destination");
    assert_eq!(
        resources[dead_letters]["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );

    let queue = from("WebhookRetryQueue");
    assert!(reports_items(queue), "retry queue: ReportBatchItemFailures");
    let retry_queue = &resources["WebhookRetryQueue"]["Properties"];
    assert_eq!(
        named(&retry_queue["RedrivePolicy"]["deadLetterTargetArn"]),
        Some(dead_letters),
        "retry messages that keep failing go to the same dead-letter queue"
    );
    let timeout = notify["Properties"]["Timeout"].as_i64().expect("Timeout");
    assert!(
        retry_queue["VisibilityTimeout"].as_i64() >= Some(timeout),
        "a message stays hidden while notify works on it"
    );
    assert_eq!(
        named(&notify["Properties"]["Environment"]["Variables"]["WEBHOOK_RETRY_QUEUE_URL"]),
        Some("WebhookRetryQueue")
    );

    // Least privilege: the queues and the stream by name, nothing account-wide.
    let allows = |needle: &str, action: &str| {
        statements_on(notify, needle)
            .iter()
            .any(|s| format!("{:?}", s["Action"]).contains(action))
    };
    assert!(allows("WebhookRetryQueue.Arn", "sqs:SendMessage"));
    assert!(allows("WebhookRetryQueue.Arn", "sqs:ReceiveMessage"));
    assert!(allows(&format!("{dead_letters}.Arn"), "sqs:SendMessage"));
    assert!(allows("/stream/", "dynamodb:GetRecords"));
    assert!(allows("CallsTable.Arn", "dynamodb:PutItem"));
    for statement in statements_on(notify, "*") {
        assert_ne!(statement["Resource"].as_str(), Some("*"), "{statement:?}");
    }
}

/// The statements of an IAM role's inline policies.
fn role_statements(role: &Value) -> Vec<&Value> {
    role["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|policy| {
            policy["PolicyDocument"]["Statement"]
                .as_sequence()
                .into_iter()
                .flatten()
        })
        .collect()
}

fn allows(statements: &[&Value], resource: &str, action: &str) -> bool {
    statements.iter().any(|s| {
        format!("{:?}", s["Resource"]).contains(resource)
            && format!("{:?}", s["Action"]).contains(action)
    })
}

/// The statements limited to items whose key starts with `prefix`.
fn on_items<'a>(statements: &[&'a Value], prefix: &str) -> Vec<&'a Value> {
    statements
        .iter()
        .copied()
        .filter(|s| {
            s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                .as_sequence()
                .is_some_and(|keys| keys.contains(&Value::from(prefix)))
        })
        .collect()
}

#[test]
fn the_calls_table_has_the_queue_indexes_the_store_queries() {
    use dialer_store_dynamo::{
        OWNER_QUEUE_INDEX, OWNER_QUEUE_INDEX_ATTRIBUTES, QUEUE_INDEX, QUEUE_INDEX_ATTRIBUTES,
    };
    let template = template();
    let table = &template["Resources"]["CallsTable"]["Properties"];
    for (name, partition, attributes) in [
        (QUEUE_INDEX, "queue", &QUEUE_INDEX_ATTRIBUTES[..]),
        (
            OWNER_QUEUE_INDEX,
            "owner",
            &OWNER_QUEUE_INDEX_ATTRIBUTES[..],
        ),
    ] {
        let index = table["GlobalSecondaryIndexes"]
            .as_sequence()
            .expect("GlobalSecondaryIndexes")
            .iter()
            .find(|i| i["IndexName"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} on the calls table"));
        let key: Vec<(&str, &str)> = index["KeySchema"]
            .as_sequence()
            .expect("KeySchema")
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap_or_default(),
                    k["KeyType"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(key, [(partition, "HASH"), ("queue_at", "RANGE")], "{name}");
        assert_eq!(
            index["Projection"]["ProjectionType"].as_str(),
            Some("INCLUDE"),
            "{name}"
        );
        let projected: BTreeSet<&str> = index["Projection"]["NonKeyAttributes"]
            .as_sequence()
            .expect("NonKeyAttributes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(projected, attributes.iter().copied().collect(), "{name}");
    }
    let defined: BTreeSet<&str> = table["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .filter(|a| a["AttributeType"].as_str() == Some("S"))
        .filter_map(|a| a["AttributeName"].as_str())
        .collect();
    for attribute in ["queue", "queue_at", "owner"] {
        assert!(defined.contains(attribute), "{attribute} is defined");
    }
}

#[test]
fn originate_and_the_bridge_get_the_pacing_limits_and_may_use_the_pacing_state() {
    let template = template();
    let resources = &template["Resources"];
    let originate = &resources["OriginateFunction"];
    let variables = &originate["Properties"]["Environment"]["Variables"];
    let bridge_env: BTreeMap<String, &Value> =
        resources["BridgeTask"]["Properties"]["ContainerDefinitions"][0]["Environment"]
            .as_sequence()
            .expect("bridge environment")
            .iter()
            .filter_map(|e| Some((e["Name"].as_str()?.to_owned(), &e["Value"])))
            .collect();
    for (var, parameter) in [
        ("MAX_CALLS_PER_SECOND", "MaxCallsPerSecond"),
        ("MAX_CONCURRENT_CALLS", "MaxConcurrentCalls"),
    ] {
        assert_eq!(
            named(&variables[var]),
            Some(parameter),
            "originate: {var} from the {parameter} parameter"
        );
        assert_eq!(
            bridge_env.get(var).and_then(|v| named(v)),
            Some(parameter),
            "bridge: {var} from the {parameter} parameter"
        );
        assert_eq!(
            template["Parameters"][parameter]["Default"].as_str(),
            Some(""),
            "{parameter}: unlimited unless set"
        );
    }
    for (var, parameter) in [
        ("DEFAULT_MAX_QUEUED_CALLS", "DefaultMaxQueuedCalls"),
        ("MAX_QUEUED_CALLS", "MaxQueuedCalls"),
    ] {
        assert_eq!(
            named(&variables[var]),
            Some(parameter),
            "originate, which queues new calls: {var} from the {parameter} parameter"
        );
        assert_eq!(
            template["Parameters"][parameter]["Default"].as_str(),
            Some(""),
            "{parameter}: the built-in bound unless set"
        );
    }

    let originate_statements = statements_on(originate, "CallsTable.Arn");
    let originate_pace = on_items(&originate_statements, "pace#*");
    // Reads and saves of a head and its shards: TransactGetItems is authorized as its
    // gets, a TransactWriteItems as its puts and deletes (of a shard left empty).
    for action in [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    ] {
        assert!(
            allows(&originate_pace, "CallsTable.Arn", action),
            "originate: {action} on pace# items"
        );
    }

    let bridge = role_statements(&resources["BridgeTaskRole"]);
    assert!(
        allows(&bridge, "/index/queue-index", "dynamodb:Query"),
        "the dispatcher lists the queue"
    );
    assert!(
        allows(&bridge, "/index/owner-queue-index", "dynamodb:Query"),
        "the dispatcher lists each user's queue"
    );
    assert!(
        allows(&bridge, "CallsTable.Arn", "dynamodb:PutItem"),
        "call writes (a claim, a status) are conditional puts"
    );
    let bridge_pace = on_items(&bridge, "pace#*");
    for action in [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    ] {
        assert!(
            allows(&bridge_pace, "CallsTable.Arn", action),
            "bridge: {action} on pace# items (TransactGetItems and TransactWriteItems are authorized by them)"
        );
    }
    assert!(
        allows(&bridge, "UsersTable.Arn", "dynamodb:GetItem"),
        "the dispatcher reads each user's limits"
    );
}
