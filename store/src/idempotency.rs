//! Idempotent proxy requests: the first request with a key's `Idempotency-Key` claims it; a
//! retry gets the stored answer instead of being forwarded and billed again.

use crate::db::{now, Store};
use crate::error::{is_unique_violation, StoreResult};
use crate::schema::idempotent_requests as ir;
use chrono::NaiveDateTime;
use diesel::prelude::*;

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
    status: String,
    response_status: Option<i32>,
    response_content_type: Option<String>,
    response_body: Option<String>,
    created_at: NaiveDateTime,
}

impl Store {
    /// Claims `(api_key_id, idempotency_key)` for a request whose body hashes to `hash`. A
    /// claim left in progress since before `stale_before` (its process died) is taken over.
    pub async fn claim_idempotency(
        &self,
        api_key_id: String,
        idempotency_key: String,
        hash: String,
        stale_before: NaiveDateTime,
    ) -> StoreResult<Claim> {
        self.write(move |c| {
            let existing: Option<ClaimRow> = ir::table
                .find((&api_key_id, &idempotency_key))
                .select(ClaimRow::as_select())
                .first(c)
                .optional()?;
            match existing {
                None => {
                    let inserted = diesel::insert_into(ir::table)
                        .values((
                            ir::api_key_id.eq(&api_key_id),
                            ir::idempotency_key.eq(&idempotency_key),
                            ir::request_hash.eq(&hash),
                            ir::status.eq("in_progress"),
                            ir::created_at.eq(now()),
                        ))
                        .execute(c);
                    match inserted {
                        Ok(_) => Ok(Claim::New),
                        Err(e) if is_unique_violation(&e) => Ok(Claim::InProgress),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(r) if r.request_hash != hash => Ok(Claim::Mismatch),
                Some(ClaimRow {
                    status,
                    response_status: Some(code),
                    response_content_type,
                    response_body,
                    ..
                }) if status == "completed" => Ok(Claim::Replay {
                    status: code,
                    content_type: response_content_type
                        .unwrap_or_else(|| "application/json".into()),
                    body: response_body,
                }),
                Some(r) if r.created_at < stale_before => {
                    diesel::update(ir::table.find((&api_key_id, &idempotency_key)))
                        .set(ir::created_at.eq(now()))
                        .execute(c)?;
                    Ok(Claim::New)
                }
                Some(_) => Ok(Claim::InProgress),
            }
        })
        .await
    }

    /// Stores the answer of a claimed request. `body` is `None` when it was too large to keep.
    pub async fn complete_idempotency(
        &self,
        api_key_id: String,
        idempotency_key: String,
        status: i32,
        content_type: String,
        body: Option<String>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(ir::table.find((&api_key_id, &idempotency_key)))
                .set((
                    ir::status.eq("completed"),
                    ir::response_status.eq(Some(status)),
                    ir::response_content_type.eq(Some(content_type)),
                    ir::response_body.eq(body),
                    ir::completed_at.eq(Some(now())),
                ))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Gives a claim up (the request failed before it was served), so a retry may run.
    pub async fn abandon_idempotency(
        &self,
        api_key_id: String,
        idempotency_key: String,
    ) -> StoreResult<()> {
        self.write(move |c| {
            diesel::delete(
                ir::table
                    .find((&api_key_id, &idempotency_key))
                    .filter(ir::status.eq("in_progress")),
            )
            .execute(c)?;
            Ok(())
        })
        .await
    }
}
