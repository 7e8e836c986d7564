use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::{query, Page};
use crate::keys;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::ledger::AccountRow;
use voucherd_store::vouchers::VoucherRow;

/// A voucher the caller may see: its owner's, or any for an administrator. Others get 404.
async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: String,
) -> Result<(VoucherRow, AccountRow), ApiError> {
    let (v, a) = state.store.voucher(id).await?;
    if !user.is_admin() && v.owner_id != user.id {
        return Err(ApiError::NotFound("voucher"));
    }
    Ok((v, a))
}

pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page = query(&req)?;
    let owner = (!user.is_admin()).then_some(user.id);
    let rows = state
        .store
        .vouchers(owner, page.limit(), page.offset())
        .await?;
    let data: Vec<_> = rows.iter().map(|(v, a)| views::voucher(v, a)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (v, a) = visible(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(views::voucher(&v, &a)))
}

/// The voucher's ledger entries, newest first.
pub async fn transactions(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page = query(&req)?;
    let (v, _) = visible(&state, &user, path.into_inner()).await?;
    let rows = state
        .store
        .account_transfers(v.account_id.clone(), page.limit(), page.offset())
        .await?;
    let data: Vec<_> = rows
        .iter()
        .map(|t| views::transfer(t, &v.account_id))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// Metered requests against the voucher, newest first, each with its price snapshot.
pub async fn usage(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page = query(&req)?;
    let (v, _) = visible(&state, &user, path.into_inner()).await?;
    let rows = state
        .store
        .usage_for_voucher(v.id, page.limit(), page.offset())
        .await?;
    let data: Vec<_> = rows.iter().map(views::usage).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
pub struct CreateKeyRequest {
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    pub name: String,
}

/// Mints a key for the caller's own active voucher. The key is in this response only.
pub async fn create_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::field("name", "must not be blank"));
    }
    let (v, a) = visible(&state, &user, path.into_inner()).await?;
    if views::voucher_status(&v, &a.totals()) == "expired" {
        return Err(ApiError::conflict(
            "voucher_expired",
            "keys cannot be created for an expired voucher",
        ));
    }
    let minted = keys::mint();
    let row = state
        .store
        .create_key(ApiKeyRow {
            id: uuid::Uuid::now_v7().to_string(),
            voucher_id: v.id,
            name,
            prefix: minted.prefix.clone(),
            key_hash: minted.hash.clone(),
            created_by: user.id,
            created_at: voucherd_store::now(),
            last_used_at: None,
            revoked_at: None,
        })
        .await?;
    let mut json = views::key(&row);
    json["key"] = serde_json::Value::String(minted.secret);
    Ok(HttpResponse::Created().json(json))
}

pub async fn list_keys(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (v, _) = visible(&state, &user, path.into_inner()).await?;
    let rows = state.store.keys_for_voucher(v.id).await?;
    let data: Vec<_> = rows.iter().map(views::key).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// Revokes a key. Repeating it is harmless (204 again) and records nothing new.
pub async fn revoke_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (k, v) = state.store.key(path.into_inner()).await?;
    if !user.is_admin() && v.owner_id != user.id {
        return Err(ApiError::NotFound("key"));
    }
    state.store.revoke_key(k.id, user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
