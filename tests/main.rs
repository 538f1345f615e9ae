//! Cross-crate tests: recorded traces through the bridge core, the simulated PBX against
//! the traces, and the HTTP API end to end against the local server.

mod auth;
mod bad_input;
mod bridge_resilience;
mod call_truth;
mod calls_e2e;
mod content_types;
mod docs_page;
mod drain;
mod dynamo_pacing;
mod emf;
mod event_order;
mod handler_panics;
mod http_limits;
mod infra_template;
mod input_rules;
mod json_errors;
mod lambda_events;
mod login_safety;
mod notify_events;
mod operator_logs;
mod pbx_scenarios;
mod postgres;
mod queue;
mod queue_api;
mod queue_limits;
mod routes;
mod secrets_manager;
mod sim_matches_traces;
mod store_contract;
mod trace_replay;
mod users_command;
mod webhooks;
