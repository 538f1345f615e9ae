//! A handler that panics answers a JSON 500 and the process keeps serving.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use dialer_core::domain::{Annotation, Call, FailureCount, Pacing, Transition, User};
use dialer_core::metrics::Metrics;
use dialer_core::store::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, PacingStore, QueuedCall,
    StoreError, ThrottleStore, TransitionResult, UserReads, UserStore, Versioned,
};
use dialer_http::Routes;
use http::Request;
use tower::ServiceExt;
use uuid::Uuid;

use integration::recording::RecordingPbx;

/// A store with a bug: reading a call panics.
struct BrokenStore;

#[async_trait]
impl CallReads for BrokenStore {
    async fn get_call(&self, _: Uuid) -> Result<Option<Call>, StoreError> {
        panic!("the store fell over")
    }

    async fn calls_of(
        &self,
        _: &str,
        _: Option<dialer_core::store::PageCursor>,
        _: usize,
    ) -> Result<CallPage, StoreError> {
        Ok(CallPage::default())
    }
}

#[async_trait]
impl CallStore for BrokenStore {
    async fn insert_call(&self, _: &Call) -> Result<(), StoreError> {
        Ok(())
    }

    async fn transition(&self, _: Uuid, _: &Transition) -> Result<TransitionResult, StoreError> {
        Ok(TransitionResult::NotFound)
    }

    async fn annotate(&self, _: Uuid, _: &Annotation) -> Result<Option<Call>, StoreError> {
        Ok(None)
    }

    async fn claim_idempotency_key(
        &self,
        _: &str,
        _: &str,
        _: &IdempotencyBinding,
        _: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        Ok(None)
    }

    async fn idempotency_binding(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl CallBacklog for BrokenStore {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        Ok(Vec::new())
    }

    async fn record_delivery(
        &self,
        _: Uuid,
        _: u32,
        _: &dialer_core::domain::webhook::Delivery,
    ) -> Result<Option<Call>, StoreError> {
        Ok(None)
    }

    async fn claim_due_calls(
        &self,
        _: chrono::DateTime<chrono::Utc>,
        _: chrono::Duration,
        _: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(Vec::new())
    }

    async fn release_call(&self, _: Uuid) -> Result<(), StoreError> {
        Ok(())
    }

    async fn due_calls(
        &self,
        _: chrono::DateTime<chrono::Utc>,
        _: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        Ok(Vec::new())
    }

    async fn due_calls_of(
        &self,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
        _: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl PacingStore for BrokenStore {
    async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError> {
        Ok(vec![Versioned::default(); keys.len()])
    }
    async fn save_pacing(&self, _: &[(String, Versioned<Pacing>)]) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[async_trait]
impl UserReads for BrokenStore {
    async fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(Some(User::new(name, "no password")))
    }
}

#[async_trait]
impl UserStore for BrokenStore {
    async fn insert_user(&self, _: &User) -> Result<(), StoreError> {
        Ok(())
    }
    async fn update_user(&self, _: &User) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ThrottleStore for BrokenStore {
    async fn failures(
        &self,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
        _: chrono::Duration,
    ) -> Result<Option<FailureCount>, StoreError> {
        Ok(None)
    }
    async fn record_failure(
        &self,
        _: &str,
        now: chrono::DateTime<chrono::Utc>,
        _: chrono::Duration,
    ) -> Result<FailureCount, StoreError> {
        Ok(FailureCount {
            failures: 1,
            last_at: now,
        })
    }
    async fn clear_failures(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_json_500_and_the_router_keeps_serving() {
    let token = integration::tokens()
        .issue("alice", 0)
        .await
        .expect("token");
    let router = integration::router(
        Arc::new(BrokenStore),
        Arc::new(RecordingPbx::default()),
        Arc::new(Metrics::new()),
        &Routes::ALL,
    );
    let request = || {
        Request::get(format!("/api/v2/status/{}", Uuid::new_v4()))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    for _ in 0..2 {
        let response = router.clone().oneshot(request()).await.expect("answered");
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["detail"], "internal error");
    }
    let health = router
        .oneshot(
            Request::get("/health")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert_eq!(health.status(), 200);
}
