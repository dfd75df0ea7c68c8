//! `/healthz` (the process is up) and `/readyz` (the database answers). `/readyz` also
//! shows each delivery provider's circuit (`closed`, `open`, `half_open`) and the outbox's
//! backlog per channel (the periodic count behind `gardien_backend_outbox_due`) as detail:
//! neither makes the replica unready, since the API still works and the outbox keeps the
//! messages until a provider takes them. gardien's `/status` page shows these details.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn providers(state: &AppState) -> Value {
    Value::Object(
        state
            .circuits
            .snapshot()
            .into_iter()
            .map(|(name, circuit)| (name, json!({"circuit": circuit})))
            .collect(),
    )
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, Json(mut body)) = database(&state).await;
    state.metrics.database_up(status == StatusCode::OK);
    if let Value::Object(map) = &mut body {
        map.insert("providers".into(), providers(&state));
        map.insert("outbox".into(), state.metrics.outbox_backlog());
    }
    (status, Json(body))
}

async fn database(state: &AppState) -> (StatusCode, Json<Value>) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(
                json!({"status": "ready", "database": {"ok": true, "latency_ms": started.elapsed().as_millis() as u64}}),
            ),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({"status": "not_ready", "database": {"ok": false, "error": "query failed"}}),
                ),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "database": {"ok": false, "error": "no answer within 2s"}}),
            ),
        ),
    }
}
