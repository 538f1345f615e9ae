//! The route table (`dialer_http::ROUTES`) is what the router serves: each route by its
//! own set, and by no other.

use std::sync::Arc;

use axum::body::Body;
use dialer_core::metrics::Metrics;
use dialer_core::store::MemoryStore;
use dialer_http::{ROUTES, Routes};
use http::Request;
use tower::ServiceExt;

use integration::recording::RecordingPbx;

fn router(sets: &[Routes]) -> axum::Router {
    integration::router(
        Arc::new(MemoryStore::new()),
        Arc::new(RecordingPbx::default()),
        Arc::new(Metrics::new()),
        sets,
    )
}

async fn status_of(router: &axum::Router, method: &str, path: &str) -> u16 {
    let uri = path
        .replace("{number}", "+15550010001")
        .replace("{call_id}", "7d0c1f3e-0000-4000-8000-000000000001");
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    router
        .clone()
        .oneshot(request)
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_route_in_the_table_is_served_by_its_own_set_and_no_other() {
    for route in ROUTES {
        let own = router(&[route.set]);
        let status = status_of(&own, route.method, route.path).await;
        assert!(
            status != 404 && status != 405,
            "{} {} answered {status}",
            route.method,
            route.path
        );
        for other in Routes::ALL.into_iter().filter(|s| *s != route.set) {
            let status = status_of(&router(&[other]), route.method, route.path).await;
            assert!(
                status == 404 || status == 405,
                "{:?} also serves {} {}",
                other,
                route.method,
                route.path
            );
        }
    }
}
