//! The worker's record, for administrators: job runs, reconciliation results and the
//! notification outbox with its delivery state.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
pub struct RunsQuery {
    #[validate(length(min = 1, max = 40, message = "must be 1 to 40 characters"))]
    pub job: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

fn json_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Job runs, newest first.
pub async fn runs(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: RunsQuery = crate::handlers::query(&req)?;
    let rows = state.store.job_runs(q.job, q.limit.unwrap_or(100)).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "job": r.job,
                "trigger": r.trigger_kind,
                "scheduled_at": views::time(r.scheduled_at),
                "worker_id": r.worker_id,
                "attempts": r.attempts,
                "started_at": views::time(r.started_at),
                "finished_at": views::opt_time(r.finished_at),
                "outcome": r.outcome,
                "summary": json_text(&r.summary),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
pub struct LimitQuery {
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

/// Reconciliation results, newest first.
pub async fn reconciliations(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: LimitQuery = crate::handlers::query(&req)?;
    let rows = state.store.reconciliations(q.limit.unwrap_or(100)).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "checked_at": views::time(r.checked_at),
                "balanced": r.balanced,
                "accounts_checked": r.accounts_checked,
                "transfers_checked": r.transfers_checked,
                "differences": json_text(&r.differences),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
pub struct OutboxQuery {
    #[validate(email(message = "must be an email address"))]
    pub recipient: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

/// Notifications and their delivery state, newest first (what was said, to whom, whether it
/// arrived).
pub async fn outbox(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: OutboxQuery = crate::handlers::query(&req)?;
    let rows = state
        .store
        .outbox(
            q.recipient.map(|r| r.to_lowercase()),
            q.limit.unwrap_or(100),
        )
        .await?;
    let data: Vec<_> = rows
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "recipient": m.recipient,
                "template": m.template,
                "data": json_text(&m.data),
                "status": m.status,
                "attempts": m.attempts,
                "next_attempt_at": views::time(m.next_attempt_at),
                "last_error": m.last_error,
                "created_at": views::time(m.created_at),
                "sent_at": views::opt_time(m.sent_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}
