//! Turning a callback's host into addresses, and judging them.

use std::net::SocketAddr;
use std::time::Duration;

use dialer_core::domain::webhook::{CallbackHost, CallbackUrl, forbidden_address};

use crate::dns_cache::Resolver;

/// Why a callback's host cannot be used, worded to follow the field's name
/// (`status_callback: resolves to 127.0.0.1, a loopback address`).
#[derive(Debug)]
pub(crate) struct Unusable(pub(crate) String);

/// The addresses `url`'s host stands for: a literal address as it is, a name as
/// `resolver` answers it within `budget`.
pub(crate) async fn resolve(
    url: &CallbackUrl,
    resolver: &Resolver,
    budget: Duration,
) -> Result<Vec<SocketAddr>, Unusable> {
    let name = match url.host() {
        CallbackHost::Address(ip) => return Ok(vec![SocketAddr::new(*ip, url.port())]),
        CallbackHost::Name(name) => name,
    };
    // The resolver's order is kept: it is the order to try connecting in.
    match resolver.resolve(name, budget).await {
        Ok(found) => Ok(found
            .iter()
            .map(|ip| SocketAddr::new(*ip, url.port()))
            .collect()),
        Err(why) => Err(Unusable(format!("names {name}, which {why}"))),
    }
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
