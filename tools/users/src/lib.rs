//! The user-management commands, over any [`UserStore`]. Passwords are read from the
//! input (one line), never from the command line, where they would land in shell
//! history and process lists.

use std::io::{BufRead, Write};

use dialer_core::auth::PasswordHasher;
use dialer_core::domain::pacing::{CONCURRENT_CALLS_RANGE, QUEUED_CALLS_RANGE};
use dialer_core::domain::user::{new_webhook_secret, valid_username};
use dialer_core::domain::webhook::CallbackUrl;
use dialer_core::domain::{Password, User, UserLimits};
use dialer_core::store::{StoreError, UserStore};

pub const USAGE: &str = "usage: dialer-users <command>
  create USERNAME           create a user; the password is read from standard input
  reset-password USERNAME   set a new password, read from standard input; ends every
                            token issued before
  revoke-tokens USERNAME    end every token issued to the user so far
  disable USERNAME          refuse the user's logins and tokens at once; ends for
                            good every token issued before
  enable USERNAME           allow the user's logins again (tokens issued before the
                            disable stay ended)
  list                      list users, whether they are enabled, and their limits
  set-webhook USERNAME URL  the status_callback the user's calls take when a request
                            names none (https, unless WEBHOOK_ALLOW_INSECURE=true where
                            the calls are placed)
  clear-webhook USERNAME    the user's calls send events only where a request says
  webhook-secret USERNAME   print the secret the user's webhook events are signed with
  rotate-webhook-secret USERNAME
                            a new secret; events carry a signature under the old one
                            too for 24 hours
  set-limits USERNAME [--max-concurrent-calls N|none] [--max-queued-calls N|none]
                            the user's share of the trunk: calls dialing or up at once
                            (1 to 5000) and calls waiting in the queue (1 to 100000);
                            `none` lifts a limit, a limit left out stays as it is
  create-tables             create the DynamoDB tables (CALLS_TABLE, USERS_TABLE)";

/// Runs one user command. `create-tables` is handled by the binary, which knows the
/// store's concrete kind.
pub async fn run(
    args: &[String],
    users: &dyn UserStore,
    hasher: &dyn PasswordHasher,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["create", name] => {
            check_name(name)?;
            let password_hash = hash(hasher, &read_password(input)?)?;
            let user = User::new(*name, password_hash);
            match users.insert_user(&user).await {
                Ok(()) => say(out, &format!("created {name}")),
                Err(StoreError::Conflict) => Err(format!("user {name} already exists")),
                Err(e) => Err(e.to_string()),
            }
        }
        ["reset-password", name] => {
            let mut user = existing(users, name).await?;
            user.password_hash = hash(hasher, &read_password(input)?)?;
            user.revoke_tokens();
            save(users, &user).await?;
            say(
                out,
                &format!("password of {name} reset; earlier tokens no longer work"),
            )
        }
        ["revoke-tokens", name] => {
            let mut user = existing(users, name).await?;
            user.revoke_tokens();
            save(users, &user).await?;
            say(
                out,
                &format!("every token issued to {name} so far is revoked"),
            )
        }
        ["disable", name] => {
            let mut user = existing(users, name).await?;
            user.disable();
            save(users, &user).await?;
            say(
                out,
                &format!("{name} disabled; earlier tokens no longer work, even after enable"),
            )
        }
        ["enable", name] => {
            let mut user = existing(users, name).await?;
            user.enable();
            save(users, &user).await?;
            say(out, &format!("{name} enabled"))
        }
        ["set-webhook", name, url] => {
            let mut user = existing(users, name).await?;
            // The shape is checked here; https, and where the host resolves to, are
            // checked each time a call takes it, under that deployment's settings.
            let url = CallbackUrl::from_record(url).map_err(|e| e.to_string())?;
            user.webhook_url = Some(url.as_str().to_owned());
            save(users, &user).await?;
            say(
                out,
                &format!("{name}'s calls send their events to {}", url.as_str()),
            )
        }
        ["clear-webhook", name] => {
            let mut user = existing(users, name).await?;
            user.webhook_url = None;
            save(users, &user).await?;
            say(out, &format!("{name} has no default webhook"))
        }
        ["webhook-secret", name] => {
            let mut user = existing(users, name).await?;
            if user.webhook_secret.is_none() {
                user.webhook_secret = Some(new_webhook_secret());
                save(users, &user).await?;
            }
            say(out, user.webhook_secret.as_deref().unwrap_or_default())
        }
        ["rotate-webhook-secret", name] => {
            let mut user = existing(users, name).await?;
            user.rotate_webhook_secret(chrono::Utc::now());
            save(users, &user).await?;
            say(out, user.webhook_secret.as_deref().unwrap_or_default())
        }
        ["set-limits", name, options @ ..] => {
            // Every option is checked before the user is read: a bad one changes nothing.
            let changes = limit_changes(options)?;
            let mut user = existing(users, name).await?;
            for change in changes {
                change.apply(&mut user.limits);
            }
            save(users, &user).await?;
            say(
                out,
                &format!("limits of {name}: {}", describe_limits(&user.limits)),
            )
        }
        ["list"] => {
            let all = users.list_users().await.map_err(|e| e.to_string())?;
            for user in all {
                let state = if user.disabled { "disabled" } else { "enabled" };
                say(
                    out,
                    &format!(
                        "{}\t{state}\t{}",
                        user.username,
                        describe_limits(&user.limits)
                    ),
                )?;
            }
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// One `set-limits` option: which limit, and its new value (`None`: no limit).
enum LimitChange {
    Concurrent(Option<u32>),
    Queued(Option<u32>),
}

impl LimitChange {
    fn apply(&self, limits: &mut UserLimits) {
        match *self {
            LimitChange::Concurrent(value) => limits.max_concurrent_calls = value,
            LimitChange::Queued(value) => limits.max_queued_calls = value,
        }
    }
}

const SET_LIMITS_USAGE: &str = "usage: dialer-users set-limits USERNAME \
     [--max-concurrent-calls N|none] [--max-queued-calls N|none]";

fn limit_changes(options: &[&str]) -> Result<Vec<LimitChange>, String> {
    if options.is_empty() {
        return Err(format!("name a limit to set\n{SET_LIMITS_USAGE}"));
    }
    let mut changes = Vec::new();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let (flag, inline) = match option.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (*option, None),
        };
        let range = match flag {
            "--max-concurrent-calls" => CONCURRENT_CALLS_RANGE,
            "--max-queued-calls" => QUEUED_CALLS_RANGE,
            _ => return Err(format!("unknown option {option}\n{SET_LIMITS_USAGE}")),
        };
        let value = inline
            .or_else(|| rest.next().copied())
            .ok_or_else(|| format!("{flag} needs a value: a number or none"))?;
        let limit = parse_limit(flag, value, &range)?;
        changes.push(if flag == "--max-concurrent-calls" {
            LimitChange::Concurrent(limit)
        } else {
            LimitChange::Queued(limit)
        });
    }
    Ok(changes)
}

fn parse_limit(
    flag: &str,
    value: &str,
    range: &std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, String> {
    if value == "none" {
        return Ok(None);
    }
    value
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{flag} must be a whole number from {} to {}, or none (no limit); got {value:?}",
                range.start(),
                range.end()
            )
        })
}

fn describe_limits(limits: &UserLimits) -> String {
    let show = |limit: Option<u32>| limit.map_or_else(|| "none".to_owned(), |n| n.to_string());
    format!(
        "max_concurrent_calls={} max_queued_calls={}",
        show(limits.max_concurrent_calls),
        show(limits.max_queued_calls)
    )
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_username(name) {
        Ok(())
    } else {
        Err("a username is 1 to 64 of: letters, digits, . _ @ -".into())
    }
}

async fn existing(users: &dyn UserStore, name: &str) -> Result<User, String> {
    users
        .get_user(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {name}"))
}

async fn save(users: &dyn UserStore, user: &User) -> Result<(), String> {
    match users.update_user(user).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("no user {}", user.username)),
        Err(e) => Err(e.to_string()),
    }
}

fn read_password(input: &mut dyn BufRead) -> Result<Password, String> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|e| e.to_string())?;
    Password::parse(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| format!("the password (one line on standard input) {}", e.message))
}

fn hash(hasher: &dyn PasswordHasher, password: &Password) -> Result<String, String> {
    hasher.hash(password.expose()).map_err(|e| e.to_string())
}

fn say(out: &mut dyn Write, line: &str) -> Result<(), String> {
    writeln!(out, "{line}").map_err(|e| e.to_string())
}
