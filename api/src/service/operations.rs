//! The programme's operations, for administrators: the worker's job runs, reconciliation
//! results and notification outbox, and overrun (usage the provider billed above what its
//! request held) with the way back for a key suspended for it.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::vouchers::SuspensionRequest;
use crate::state::AppState;
use crate::views::{KeyView, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;
use voucherd_domain::money::Amount;
use voucherd_domain::{ApiKeyId, JobTrigger, NotificationStatus, RunOutcome};
use voucherd_store::ledger::Difference;

fn json_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct RunsQuery {
    #[validate(length(min = 1, max = 40, message = "must be 1 to 40 characters"))]
    pub job: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

/// One run of a worker job.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = JobRun)]
pub struct RunView {
    pub id: String,
    #[schema(examples(
        "hold-timeouts",
        "voucher-expiry",
        "low-balance",
        "reconciliation",
        "outbox",
        "housekeeping"
    ))]
    pub job: String,
    pub trigger: JobTrigger,
    pub scheduled_at: Timestamp,
    pub worker_id: String,
    /// More than 1 when the run was taken over from a worker that died.
    pub attempts: i32,
    pub started_at: Timestamp,
    #[schema(required)]
    pub finished_at: Option<Timestamp>,
    pub outcome: RunOutcome,
    /// What the run did, per job (for example `holds_resolved`, `forfeited_micros`, `sent`).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

/// Job runs, newest first.
pub async fn runs(state: &AppState, q: RunsQuery) -> Result<Vec<RunView>, ApiError> {
    let rows = state.store.job_runs(q.job, q.limit.unwrap_or(100)).await?;
    Ok(rows
        .into_iter()
        .map(|r| RunView {
            summary: json_text(&r.summary),
            id: r.id,
            job: r.job,
            trigger: r.trigger_kind,
            scheduled_at: Timestamp(r.scheduled_at),
            worker_id: r.worker_id,
            attempts: r.attempts,
            started_at: Timestamp(r.started_at),
            finished_at: r.finished_at.map(Timestamp),
            outcome: r.outcome,
        })
        .collect())
}

/// One job's runs on record, and how its latest went.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job: String,
    pub runs: i64,
    pub failed: i64,
    pub last_started_at: Option<Timestamp>,
    pub last_outcome: Option<RunOutcome>,
}

/// Every job the worker has run, by name, with its latest outcome.
pub async fn jobs(state: &AppState) -> Result<Vec<JobView>, ApiError> {
    let summary = state.store.job_summary().await?;
    let mut out = Vec::with_capacity(summary.len());
    for s in summary {
        let last = state.store.job_runs(Some(s.job.clone()), 1).await?;
        out.push(JobView {
            last_outcome: last.into_iter().next().map(|r| r.outcome),
            job: s.job,
            runs: s.runs,
            failed: s.failed,
            last_started_at: s.last_started_at.map(Timestamp),
        });
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct LimitQuery {
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

/// One check that the ledger adds up.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Reconciliation)]
pub struct ReconciliationView {
    pub id: String,
    pub checked_at: Timestamp,
    pub balanced: bool,
    pub accounts_checked: i64,
    pub transfers_checked: i64,
    /// What did not add up.
    pub differences: Vec<Difference>,
}

/// Reconciliation results, newest first.
pub async fn reconciliations(
    state: &AppState,
    q: LimitQuery,
) -> Result<Vec<ReconciliationView>, ApiError> {
    let rows = state.store.reconciliations(q.limit.unwrap_or(100)).await?;
    rows.into_iter()
        .map(|r| {
            Ok(ReconciliationView {
                differences: serde_json::from_str(&r.differences).map_err(|e| {
                    ApiError::Internal(format!("reconciliation {}: differences: {e}", r.id))
                })?,
                id: r.id,
                checked_at: Timestamp(r.checked_at),
                balanced: r.balanced,
                accounts_checked: r.accounts_checked,
                transfers_checked: r.transfers_checked,
            })
        })
        .collect()
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct OutboxQuery {
    #[validate(email(message = "must be an email address"))]
    pub recipient: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
}

/// A notification and its delivery state.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationView {
    pub id: String,
    #[schema(format = Email)]
    pub recipient: String,
    #[schema(examples(
        "application_received",
        "application_approved",
        "key_created",
        "low_balance",
        "reconciliation_alert"
    ))]
    pub template: String,
    /// What the template is rendered with.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub status: NotificationStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    #[schema(required)]
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    #[schema(required)]
    pub sent_at: Option<Timestamp>,
}

/// Notifications and their delivery state, newest first (what was said, to whom, whether it
/// arrived).
pub async fn outbox(state: &AppState, q: OutboxQuery) -> Result<Vec<NotificationView>, ApiError> {
    let rows = state
        .store
        .outbox(
            q.recipient.map(|r| r.to_lowercase()),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| NotificationView {
            data: json_text(&m.data),
            id: m.id,
            recipient: m.recipient,
            template: m.template,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: Timestamp(m.next_attempt_at),
            last_error: m.last_error,
            created_at: Timestamp(m.created_at),
            sent_at: m.sent_at.map(Timestamp),
        })
        .collect())
}

/// Overrun of one key on one model.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = KeyModelOverrun)]
pub struct OverrunView {
    pub api_key_id: ApiKeyId,
    pub key_name: String,
    pub key_prefix: String,
    pub key_suspended: bool,
    pub voucher_id: voucherd_domain::VoucherId,
    #[schema(value_type = voucherd_domain::CompanyNumber)]
    pub company_number: String,
    #[schema(value_type = crate::service::prices::ModelName)]
    pub model: String,
    /// Requests of this key on this model whose usage was above their hold.
    pub requests: i64,
    /// Usage above those requests' holds, booked to the overrun-loss account (never to the
    /// voucher).
    #[schema(value_type = voucherd_domain::Money)]
    pub overrun: Amount,
    pub last_at: Timestamp,
}

/// Overrun per key and model, largest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Overruns)]
pub struct OverrunsView {
    pub data: Vec<OverrunView>,
    #[schema(value_type = voucherd_domain::Money)]
    pub total: Amount,
    /// A key whose overrun passes this is suspended.
    #[schema(value_type = voucherd_domain::Money)]
    pub suspend_threshold: Amount,
}

/// Overrun per key and model, largest first.
pub async fn overruns(state: &AppState) -> Result<OverrunsView, ApiError> {
    let rows = state.store.overruns().await?;
    let total: i64 = rows
        .iter()
        .fold(0i64, |a, r| a.saturating_add(r.overrun_micros));
    Ok(OverrunsView {
        data: rows
            .into_iter()
            .map(|r| OverrunView {
                api_key_id: r.api_key_id,
                key_name: r.key_name,
                key_prefix: r.key_prefix,
                key_suspended: r.key_suspended_at.is_some(),
                voucher_id: r.voucher_id,
                company_number: r.company_number,
                model: r.model,
                requests: r.requests,
                overrun: Amount(r.overrun_micros),
                last_at: Timestamp(r.last_at),
            })
            .collect(),
        total: Amount(total),
        suspend_threshold: state.config.overrun_suspend_threshold.into(),
    })
}

/// Lifts the suspension of a key (the programme suspends one whose overrun passes the
/// threshold), with the reason; audited.
pub async fn reinstate_key(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: SuspensionRequest,
) -> Result<KeyView, ApiError> {
    state
        .store
        .reinstate_key(ApiKeyId::new(id), user.id.clone(), body.reason.into_inner())
        .await?;
    // At once here; other instances within their key cache's time to live.
    state.key_cache.forget(id);
    let (k, _) = state.store.key(ApiKeyId::new(id)).await?;
    Ok(KeyView::new(&k))
}
