//! Idempotent proxy requests: the first request with a key's `Idempotency-Key` claims it; a
//! retry gets the stored answer instead of being forwarded and billed again.

use crate::db::{now, Store};
use crate::error::{is_unique_violation, StoreResult};
use crate::schema::idempotent_requests as ir;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::states::ClaimState;
use voucherd_domain::ApiKeyId;

/// An `Idempotency-Key` as the proxy keeps it: the key a client chose, under the API key that
/// sent it (a client's key is unique only among its own API key's requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySlot {
    pub api_key_id: ApiKeyId,
    pub key: String,
}

/// A request's answer, kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub status: i32,
    pub content_type: String,
    /// `None` when it was too large to keep.
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead, then complete or abandon the claim.
    New,
    /// Done before: answer with this.
    Replay {
        status: i32,
        content_type: String,
        body: Option<String>,
    },
    /// A request with this key is still being served.
    InProgress,
    /// The key was used with a different request body.
    Mismatch,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ir)]
struct ClaimRow {
    request_hash: String,
    status: ClaimState,
    response_status: Option<i32>,
    response_content_type: Option<String>,
    response_body: Option<String>,
    created_at: NaiveDateTime,
}

impl Store {
    /// Claims `slot` for a request whose body hashes to `request_hash`. A claim left in
    /// progress since before `stale_before` (its process died) is taken over.
    pub async fn claim_idempotency(
        &self,
        slot: IdempotencySlot,
        request_hash: String,
        stale_before: NaiveDateTime,
    ) -> StoreResult<Claim> {
        self.write(move |c| {
            let IdempotencySlot { api_key_id, key } = &slot;
            let existing: Option<ClaimRow> = ir::table
                .find((api_key_id, key))
                .select(ClaimRow::as_select())
                .first(c)
                .optional()?;
            match existing {
                None => {
                    let inserted = diesel::insert_into(ir::table)
                        .values((
                            ir::api_key_id.eq(api_key_id),
                            ir::idempotency_key.eq(key),
                            ir::request_hash.eq(&request_hash),
                            ir::status.eq(ClaimState::InProgress),
                            ir::created_at.eq(now()),
                        ))
                        .execute(c);
                    match inserted {
                        Ok(_) => Ok(Claim::New),
                        Err(e) if is_unique_violation(&e) => Ok(Claim::InProgress),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(r) if r.request_hash != request_hash => Ok(Claim::Mismatch),
                Some(ClaimRow {
                    status: ClaimState::Completed,
                    response_status: Some(code),
                    response_content_type,
                    response_body,
                    ..
                }) => Ok(Claim::Replay {
                    status: code,
                    content_type: response_content_type
                        .unwrap_or_else(|| "application/json".into()),
                    body: response_body,
                }),
                Some(r) if r.created_at < stale_before => {
                    diesel::update(ir::table.find((api_key_id, key)))
                        .set(ir::created_at.eq(now()))
                        .execute(c)?;
                    Ok(Claim::New)
                }
                Some(_) => Ok(Claim::InProgress),
            }
        })
        .await
    }

    /// Keeps the answer of `slot`'s request for replay.
    pub async fn complete_idempotency(
        &self,
        slot: IdempotencySlot,
        answer: KeptAnswer,
    ) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(ir::table.find((&slot.api_key_id, &slot.key)))
                .set((
                    ir::status.eq(ClaimState::Completed),
                    ir::response_status.eq(Some(answer.status)),
                    ir::response_content_type.eq(Some(answer.content_type)),
                    ir::response_body.eq(answer.body),
                    ir::completed_at.eq(Some(now())),
                ))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Gives `slot` up (its request failed before it was served), so a retry may run.
    pub async fn abandon_idempotency(&self, slot: IdempotencySlot) -> StoreResult<()> {
        self.write(move |c| {
            diesel::delete(
                ir::table
                    .find((&slot.api_key_id, &slot.key))
                    .filter(ir::status.eq(ClaimState::InProgress)),
            )
            .execute(c)?;
            Ok(())
        })
        .await
    }
}
