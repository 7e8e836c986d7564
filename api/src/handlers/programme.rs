use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::money::format_micros;
use voucherd_domain::Money;

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub amount: Money,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub reference: String,
}

/// The optional `Idempotency-Key` header: a retried deposit with the same key is not counted
/// twice; the same key with a different amount is refused.
pub(crate) fn idempotency_key(
    req: &HttpRequest,
) -> Result<Option<crate::service::IdempotencyKey>, ApiError> {
    req.headers()
        .get("idempotency-key")
        .map(|v| crate::service::IdempotencyKey::parse(v.to_str().unwrap_or("")))
        .transpose()
}

pub async fn deposit(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<DepositRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.amount.is_zero() {
        return Err(ApiError::field("amount", "must be more than 0"));
    }
    let reference = body.reference.trim().to_string();
    if reference.is_empty() {
        return Err(ApiError::field("reference", "must not be blank"));
    }
    let transfer_id = match idempotency_key(&req)? {
        Some(k) => format!("deposit-{k}"),
        None => format!("deposit-{}", uuid::Uuid::now_v7()),
    };
    let t = state
        .store
        .deposit(transfer_id, body.amount, reference, user.id)
        .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": t.id,
        "amount": format_micros(t.amount),
        "reference": t.memo,
        "created_at": views::time(t.created_at),
    })))
}

pub async fn overview(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = state.store.programme_totals().await?;
    let lines: Vec<_> = state
        .store
        .budget_lines()
        .await?
        .iter()
        .map(|(l, f)| crate::handlers::budget::line_json(l, f))
        .collect();
    let fund = p.fund.totals();
    let usage = p.usage.totals();
    let f = p.flows;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "currency": p.fund.currency,
        // The fund's money by where it came from and went: deposits from the funding source,
        // returns from lines and challenge pools, transfers out to them, grants to
        // organisations straight from the fund. balance = deposited + returned -
        // transferred_to_lines - transferred_to_pools - granted (less anything held).
        "fund": {
            "balance": format_micros(fund.available()),
            "deposited": format_micros(f.deposited),
            "returned": format_micros(f.returned),
            "transferred_to_lines": format_micros(f.to_lines),
            "transferred_to_pools": format_micros(f.to_pools),
            "granted": format_micros(f.granted_from_fund),
        },
        // Granted to organisations from any pot (the fund, budget lines, challenge pools).
        "granted": {
            "total": format_micros(f.granted()),
            "vouchers": format_micros(f.granted_vouchers),
            "milestone_bonuses": format_micros(f.granted_bonuses),
            "challenge_awards": format_micros(f.granted_awards),
        },
        "vouchers_issued": p.vouchers_issued,
        "consumed": format_micros(usage.credits_posted),
        "held": format_micros(usage.credits_pending),
        // Voucher remainders returned at expiry.
        "forfeited": format_micros(p.forfeited.totals().credits_posted),
        "budget_lines": lines,
    })))
}

#[derive(Debug, Deserialize, Validate)]
pub struct AuditQuery {
    #[validate(length(min = 1, max = 40, message = "must be 1 to 40 characters"))]
    pub subject_type: Option<String>,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub subject_id: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

/// The audit trail of one subject (an application, a key, a price, a transfer), oldest first;
/// or, with no subject, the latest entries of all, newest first.
pub async fn audit(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: AuditQuery = crate::handlers::query(&req)?;
    let rows = match (q.subject_type, q.subject_id) {
        (Some(t), Some(id)) => state.store.audit_for(t, id).await?,
        (None, None) => {
            state
                .store
                .audit_recent(q.limit.unwrap_or(100), q.offset.unwrap_or(0))
                .await?
        }
        (None, Some(_)) => {
            return Err(ApiError::field(
                "subject_type",
                "must be given with subject_id",
            ))
        }
        (Some(_), None) => {
            return Err(ApiError::field(
                "subject_id",
                "must be given with subject_type",
            ))
        }
    };
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "actor_id": r.actor_id,
                "action": r.action,
                "subject_type": r.subject_type,
                "subject_id": r.subject_id,
                "reason": r.reason,
                "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or_default(),
                "created_at": views::time(r.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}
