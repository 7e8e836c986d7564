//! Vouchers and their API keys: balances, statements, usage, suspension and expiry, minting,
//! rotating and revoking keys.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::handlers::Page;
use crate::keys;
use crate::state::AppState;
use crate::views::{
    self, KeyView, NewKeyView, StatementLineView, StatementView, TransferView, UsageView,
    VoucherView,
};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::money::Amount;
use voucherd_domain::ErrorCode;
use voucherd_domain::{ApiKeyId, KeyMode, Money, VoucherId, VoucherStatus};
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::ledger::AccountRow;
use voucherd_store::vouchers::{VoucherFilter, VoucherRow};

/// A voucher the caller may see: its owner's, or any for an administrator. Others get 404.
pub(crate) async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
) -> Result<(VoucherRow, AccountRow), ApiError> {
    let (v, a) = state.store.voucher(id.clone()).await?;
    if !user.is_admin() && v.owner_id != user.id {
        return Err(ApiError::NotFound("voucher"));
    }
    Ok((v, a))
}

/// The voucher as the API shows it, with its unposted usage and what left it otherwise.
pub(crate) async fn view(
    state: &AppState,
    v: &VoucherRow,
    a: &AccountRow,
) -> Result<VoucherView, ApiError> {
    let name = state.store.company_name(v.application_id.clone()).await?;
    named_view(state, v, a, &name).await
}

/// [`view`] when the company's name is already at hand (a list read it with the vouchers).
async fn named_view(
    state: &AppState,
    v: &VoucherRow,
    a: &AccountRow,
    company_name: &str,
) -> Result<VoucherView, ApiError> {
    let unposted = state.store.unposted_usage(a.id.clone()).await?;
    let withdrawn = state.store.withdrawn(a.id.clone()).await?;
    Ok(VoucherView::new(v, a, company_name, unposted, withdrawn))
}

#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct VoucherQuery {
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
    /// Only this company's vouchers (normalised as Companies House writes it).
    pub company_number: Option<voucherd_domain::CompanyNumber>,
    /// Only vouchers of companies whose name holds this, in any case.
    #[validate(length(min = 1, max = 160, message = "must be 1 to 160 characters"))]
    pub company_name: Option<String>,
    /// Only the voucher with this reference (`VCH-7K2M9Q`, typed in any case).
    pub reference: Option<voucherd_domain::Reference>,
}

/// The caller's vouchers (every voucher for an administrator), newest first.
pub async fn list(
    state: &AppState,
    user: &AuthUser,
    q: VoucherQuery,
) -> Result<Vec<VoucherView>, ApiError> {
    let owner = (!user.is_admin()).then(|| user.id.clone());
    let rows = state
        .store
        .find_vouchers(VoucherFilter {
            owner_id: owner,
            company_number: q.company_number.map(|n| n.as_str().to_string()),
            company_name_contains: q.company_name.map(|n| n.trim().to_string()),
            reference: q.reference.map(|r| {
                r.as_kind(voucherd_domain::ReferenceKind::Voucher)
                    .to_string()
            }),
            limit: q.limit.unwrap_or(100),
            offset: q.offset.unwrap_or(0),
        })
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for f in &rows {
        data.push(named_view(state, &f.voucher, &f.account, &f.company_name).await?);
    }
    Ok(data)
}

pub async fn get(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
) -> Result<VoucherView, ApiError> {
    let (v, a) = visible(state, user, id).await?;
    view(state, &v, &a).await
}

/// The voucher's ledger entries, newest first.
pub async fn transactions(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
    page: Page,
) -> Result<Vec<TransferView>, ApiError> {
    let (v, _) = visible(state, user, id).await?;
    let rows = state
        .store
        .account_transfers(v.account_id.clone(), page.limit(), page.offset())
        .await?;
    Ok(rows
        .iter()
        .map(|t| TransferView::new(t, &v.account_id))
        .collect())
}

#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    #[validate(range(min = 1, max = 1000, message = "must be between 1 and 1000"))]
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    #[validate(length(max = 200, message = "is not a statement cursor"))]
    pub after: Option<String>,
}

/// A statement cursor: the last line's time (microseconds since the epoch) and id.
fn parse_cursor(cursor: &str) -> Result<(chrono::NaiveDateTime, String), ApiError> {
    let bad = || ApiError::field("after", "is not a statement cursor");
    let (micros, id) = cursor.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(bad)?
        .naive_utc();
    if id.is_empty() {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}

/// The voucher's statement, oldest first: one line per request (its settled cost), grants,
/// bonuses, top-ups, refunds and the forfeit, each with the running balance. Paged by cursor
/// (`next`), so the whole statement can be read however long it is.
pub async fn statement(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
    q: StatementQuery,
) -> Result<StatementView, ApiError> {
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let (v, _) = visible(state, user, id).await?;
    let page = state
        .store
        .statement(v.id, after, q.limit.unwrap_or(100))
        .await?;
    let mut balance = page.opening_micros;
    let data: Vec<_> = page
        .lines
        .iter()
        .map(|l| {
            balance += l.amount_micros;
            StatementLineView::new(l, balance)
        })
        .collect();
    let next = match (page.more, page.lines.last()) {
        (true, Some(l)) => Some(format!("{}.{}", l.at.and_utc().timestamp_micros(), l.id)),
        _ => None,
    };
    Ok(StatementView {
        opening_balance: Amount(page.opening_micros),
        closing_balance: Amount(balance),
        data,
        next,
    })
}

/// Metered requests against the voucher, newest first, each with its price snapshot.
pub async fn usage(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
    page: Page,
) -> Result<Vec<UsageView>, ApiError> {
    let (v, _) = visible(state, user, id).await?;
    let rows = state
        .store
        .usage_for_voucher(v.id, page.limit(), page.offset())
        .await?;
    Ok(rows.iter().map(UsageView::new).collect())
}

fn valid_models(models: &[String]) -> Result<(), validator::ValidationError> {
    if models
        .iter()
        .all(|m| crate::handlers::prices::valid_model(m))
    {
        Ok(())
    } else {
        let mut e = validator::ValidationError::new("model");
        e.message = Some("each must be 1 to 100 letters, digits or - . _ :".into());
        Err(e)
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateApiKeyRequest)]
pub struct CreateKeyRequest {
    /// Not blank once trimmed.
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `test` keys call the sandbox and spend the organisation's free test allowance.
    #[serde(default)]
    #[schema(default = "live")]
    pub mode: KeyMode,
    /// Restricts the key to these models; every priced model when absent.
    #[validate(
        length(min = 1, max = 50, message = "must list 1 to 50 models"),
        custom(function = "valid_models")
    )]
    #[schema(min_items = 1, max_items = 50, value_type = Option<Vec<crate::service::prices::ModelName>>)]
    pub allowed_models: Option<Vec<String>>,
    /// Requests per minute; unlimited when absent.
    #[validate(range(min = 1, max = 100_000, message = "must be between 1 and 100000"))]
    #[schema(minimum = 1, maximum = 100_000)]
    pub rpm: Option<i32>,
    /// Tokens per minute; unlimited when absent.
    #[validate(range(
        min = 1,
        max = 100_000_000,
        message = "must be between 1 and 100000000"
    ))]
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub tpm: Option<i32>,
    /// Requests in flight at once; unlimited when absent.
    #[validate(range(min = 1, max = 1_000, message = "must be between 1 and 1000"))]
    #[schema(minimum = 1, maximum = 1_000)]
    pub max_concurrent: Option<i32>,
    /// More than 0. The most the key may spend in a calendar month; uncapped when absent.
    pub monthly_spend_cap: Option<Money>,
    /// In the future and within 1098 days; the key lasts as long as its voucher when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The most that a key's own expiry may lie ahead.
const MAX_KEY_DAYS: i64 = 3 * 366;

/// Mints a key for the caller's own active voucher. The key is in this answer only.
pub async fn create_key(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &VoucherId,
    body: CreateKeyRequest,
) -> Result<NewKeyView, ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::field("name", "must not be blank"));
    }
    if body.monthly_spend_cap.is_some_and(Money::is_zero) {
        return Err(ApiError::field("monthly_spend_cap", "must be more than 0"));
    }
    let now = voucherd_store::now();
    let expires_at = match body.expires_at.map(|t| t.naive_utc().trunc_subsecs(6)) {
        Some(t) if t <= now => return Err(ApiError::field("expires_at", "must be in the future")),
        Some(t) if t > now + chrono::Duration::days(MAX_KEY_DAYS) => {
            return Err(ApiError::field(
                "expires_at",
                format!("must be within {MAX_KEY_DAYS} days"),
            ))
        }
        other => other,
    };
    let (v, a) = visible(state, user, voucher_id).await?;
    if views::voucher_status(&v, &a.totals()) == VoucherStatus::Expired {
        return Err(ApiError::conflict(
            ErrorCode::VoucherExpired,
            "keys cannot be created for an expired voucher",
        ));
    }
    if body.mode == KeyMode::Test {
        // Granted once per organisation, the first time it makes a test key.
        state
            .store
            .ensure_test_allowance(v.owner_id.clone(), state.config.test_allowance)
            .await?;
    }
    let minted = keys::mint(body.mode == KeyMode::Test);
    let row = ApiKeyRow {
        id: keys::new_id(),
        voucher_id: v.id,
        name,
        prefix: minted.prefix.clone(),
        key_hash: minted.hash.clone(),
        created_by: user.id.clone(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        mode: body.mode,
        allowed_models: body
            .allowed_models
            .map(|m| serde_json::to_string(&m).unwrap_or_default()),
        rpm: body.rpm,
        tpm: body.tpm,
        max_concurrent: body.max_concurrent,
        monthly_spend_cap: body.monthly_spend_cap.map(Money::micros),
        expires_at,
        rotated_to: None,
        suspended_at: None,
        suspension_reason: None,
    };
    let row = state.store.create_key(row).await?;
    Ok(NewKeyView {
        view: KeyView::new(&row),
        key: minted.secret,
    })
}

#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working, so deployments can switch over (default 1 hour).
    #[validate(range(max = 604_800, message = "must be at most 604800 (7 days)"))]
    pub grace_seconds: Option<u32>,
}

/// Issues a replacement with the same settings; the old key stops after the grace period.
pub async fn rotate_key(
    state: &AppState,
    user: &AuthUser,
    key_id: &str,
    body: RotateKeyRequest,
) -> Result<NewKeyView, ApiError> {
    let (old, v) = state.store.key(ApiKeyId::new(key_id)).await?;
    if v.owner_id != user.id {
        return Err(ApiError::NotFound("key"));
    }
    let minted = keys::mint(old.mode == KeyMode::Test);
    let now = voucherd_store::now();
    let new = ApiKeyRow {
        id: keys::new_id(),
        prefix: minted.prefix.clone(),
        key_hash: minted.hash.clone(),
        created_by: user.id.clone(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        rotated_to: None,
        suspended_at: None,
        suspension_reason: None,
        ..old.clone()
    };
    let grace = chrono::Duration::seconds(i64::from(body.grace_seconds.unwrap_or(3_600)));
    let row = state
        .store
        .rotate_key(old.id.clone(), new, now + grace, user.id.clone())
        .await
        .map_err(|e| match e {
            voucherd_store::StoreError::KeyNotRotatable => ApiError::conflict(
                ErrorCode::KeyNotRotatable,
                "a revoked or already rotated key cannot be rotated",
            ),
            other => other.into(),
        })?;
    state.key_cache.forget(old.id.as_str());
    Ok(NewKeyView {
        view: KeyView::new(&row),
        key: minted.secret,
    })
}

pub async fn list_keys(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &VoucherId,
) -> Result<Vec<KeyView>, ApiError> {
    let (v, _) = visible(state, user, voucher_id).await?;
    let rows = state.store.keys_for_voucher(v.id).await?;
    Ok(rows.iter().map(KeyView::new).collect())
}

/// Revokes a key. Repeating it is harmless and records nothing new.
pub async fn revoke_key(state: &AppState, user: &AuthUser, key_id: &str) -> Result<(), ApiError> {
    let (k, v) = state.store.key(ApiKeyId::new(key_id)).await?;
    if !user.is_admin() && v.owner_id != user.id {
        return Err(ApiError::NotFound("key"));
    }
    state
        .store
        .revoke_key(k.id.clone(), user.id.clone())
        .await?;
    // Here at once; other instances within their key cache's time to live.
    state.key_cache.forget(k.id.as_str());
    Ok(())
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SuspensionRequest {
    pub reason: crate::extract::Reason,
}

/// Suspends a voucher (`suspend`) or reinstates it: while suspended its keys are refused (on
/// every instance within the key cache's second). Audited with the reason.
pub async fn set_suspension(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
    body: SuspensionRequest,
    suspend: bool,
) -> Result<VoucherView, ApiError> {
    state
        .store
        .set_suspension(
            id.clone(),
            suspend,
            body.reason.into_inner(),
            user.id.clone(),
        )
        .await?;
    // At once on this instance; other instances' caches expire within their second.
    state.key_cache.forget_voucher(id);
    let (v, a) = state.store.voucher(id.clone()).await?;
    view(state, &v, &a).await
}

/// Expires a voucher now (an administrator's decision, audited with the reason): its keys
/// stop at once, its company may apply again, and its remainder is forfeited as soon as no
/// request holds part of it.
pub async fn expire_now(
    state: &AppState,
    user: &AuthUser,
    id: &VoucherId,
    body: SuspensionRequest,
) -> Result<VoucherView, ApiError> {
    state
        .store
        .expire_voucher_now(
            id.clone(),
            user.id.clone(),
            body.reason.into_inner(),
            state.clock.now(),
        )
        .await?;
    // At once on this instance; other instances' caches expire within their second.
    state.key_cache.forget_voucher(id);
    let (v, a) = state.store.voucher(id.clone()).await?;
    view(state, &v, &a).await
}
