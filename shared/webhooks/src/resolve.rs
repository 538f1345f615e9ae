//! Turning a callback's host into addresses, and judging them.

use std::net::SocketAddr;
use std::time::Duration;

use dialer_core::domain::webhook::{CallbackHost, CallbackUrl, forbidden_address};

/// Why a callback's host cannot be used, worded to follow the field's name
/// (`status_callback: resolves to 127.0.0.1, a loopback address`).
#[derive(Debug)]
pub(crate) struct Unusable(pub(crate) String);

/// The addresses `url`'s host stands for: a literal address as it is, a name as the
/// system resolver answers it within `timeout`.
pub(crate) async fn resolve(
    url: &CallbackUrl,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Unusable> {
    let name = match url.host() {
        CallbackHost::Address(ip) => return Ok(vec![SocketAddr::new(*ip, url.port())]),
        CallbackHost::Name(name) => name,
    };
    let lookup = tokio::net::lookup_host((name.as_str(), url.port()));
    let found: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => {
            return Err(Unusable(format!(
                "names {name}, which did not resolve within {} ms",
                timeout.as_millis()
            )));
        }
        Ok(Err(e)) => {
            return Err(Unusable(format!(
                "names {name}, which does not resolve ({e})"
            )));
        }
        Ok(Ok(found)) => found.collect(),
    };
    // The resolver's order is kept: it is the order to try connecting in.
    let mut addresses = Vec::with_capacity(found.len());
    for address in found {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(Unusable(format!(
            "names {name}, which resolves to no address"
        )));
    }
    Ok(addresses)
}

/// Refuses the lot if any address is forbidden: a name with one public and one
/// private record is someone's way of reaching inside, not a mistake to work around.
pub(crate) fn check(url: &CallbackUrl, addresses: &[SocketAddr]) -> Result<(), Unusable> {
    let Some((ip, reason)) = addresses
        .iter()
        .find_map(|a| forbidden_address(a.ip()).map(|reason| (a.ip(), reason)))
    else {
        return Ok(());
    };
    Err(Unusable(match url.host() {
        CallbackHost::Name(_) => format!("resolves to {}, {reason}", ip),
        CallbackHost::Address(_) => format!("is {}, {reason}", ip),
    }))
}
