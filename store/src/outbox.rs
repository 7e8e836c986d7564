//! The email outbox. A notification is written in the same transaction as the event that
//! causes it (so an event that rolls back notifies no one), keyed by a dedupe key (so an event
//! seen twice notifies once), and delivered later by the worker with retries.

use crate::db::{now, DbConn, Store};
use crate::error::StoreResult;
use crate::schema::{outbox, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::NotificationStatus;
use voucherd_domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: String,
    pub dedupe_key: String,
    pub recipient: String,
    pub template: String,
    /// The template's data, JSON.
    pub data: String,
    pub status: NotificationStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
}

/// A notification to write.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    /// Unique per event and recipient: the same key is written once.
    pub dedupe_key: String,
    pub recipient: &'a str,
    pub template: &'static str,
    pub data: serde_json::Value,
}

/// Writes a notification inside the caller's transaction; does nothing if its dedupe key was
/// written before. Returns whether it was new.
pub fn enqueue(c: &mut DbConn, n: Notification<'_>) -> StoreResult<bool> {
    let at = now();
    let row = OutboxRow {
        id: uuid::Uuid::now_v7().to_string(),
        dedupe_key: n.dedupe_key,
        recipient: n.recipient.to_string(),
        template: n.template.to_string(),
        data: n.data.to_string(),
        status: NotificationStatus::Pending,
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
        created_at: at,
        sent_at: None,
    };
    // ON CONFLICT DO NOTHING on both backends: a unique violation would abort a PostgreSQL
    // transaction, and with it the event this notification belongs to.
    let inserted = match c {
        DbConn::Sqlite(c) => diesel::insert_or_ignore_into(outbox::table)
            .values(&row)
            .execute(c)?,
        DbConn::Postgresql(c) => diesel::insert_into(outbox::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c)?,
    };
    Ok(inserted == 1)
}

/// The email address of a user.
pub fn user_email(c: &mut DbConn, user_id: &UserId) -> StoreResult<String> {
    Ok(users::table.find(user_id).select(users::email).first(c)?)
}

/// Every enabled administrator's email address.
pub fn admin_emails(c: &mut DbConn) -> StoreResult<Vec<String>> {
    Ok(users::table
        .filter(users::role.eq(voucherd_domain::Role::Admin))
        .filter(users::disabled_at.is_null())
        .order(users::email.asc())
        .select(users::email)
        .load(c)?)
}

/// Writes one notification to every administrator, keyed `{dedupe_prefix}:{email}` so each
/// hears of the event once.
pub fn notify_admins(
    c: &mut DbConn,
    dedupe_prefix: &str,
    template: &'static str,
    data: serde_json::Value,
) -> StoreResult<()> {
    for admin in admin_emails(c)? {
        enqueue(
            c,
            Notification {
                dedupe_key: format!("{dedupe_prefix}:{admin}"),
                recipient: &admin,
                template,
                data: data.clone(),
            },
        )?;
    }
    Ok(())
}

impl Store {
    /// Tells administrators that the AI provider refused the programme's own credentials
    /// (`status` 401 or 403): once an hour, however many requests it fails.
    pub async fn alert_upstream_auth(&self, status: u16, at: NaiveDateTime) -> StoreResult<()> {
        self.write(move |c| {
            notify_admins(
                c,
                &format!("upstream-auth:{status}:{}", at.format("%Y-%m-%dT%H")),
                "upstream_auth_failed",
                serde_json::json!({
                    "status": status,
                    "at": voucherd_domain::uk_time::date_time(at),
                }),
            )
        })
        .await
    }

    /// Claims up to `limit` messages due at `at` for delivery: each claimed message's next
    /// attempt moves to `at + claim_ms`, conditional on it not having moved, so two workers
    /// never send the same message at once, and one that crashed mid-send is retried after.
    pub async fn claim_outbox(
        &self,
        at: NaiveDateTime,
        limit: i64,
        claim_ms: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        self.write(move |c| {
            let due: Vec<OutboxRow> = outbox::table
                .filter(outbox::status.eq(NotificationStatus::Pending))
                .filter(outbox::next_attempt_at.le(at))
                .order(outbox::next_attempt_at.asc())
                .limit(limit)
                .select(OutboxRow::as_select())
                .load(c)?;
            let until = at + chrono::Duration::milliseconds(claim_ms);
            let mut claimed = Vec::with_capacity(due.len());
            for mut m in due {
                let n = diesel::update(
                    outbox::table
                        .filter(outbox::id.eq(&m.id))
                        .filter(outbox::status.eq(NotificationStatus::Pending))
                        .filter(outbox::next_attempt_at.eq(m.next_attempt_at)),
                )
                .set((
                    outbox::next_attempt_at.eq(until),
                    outbox::attempts.eq(m.attempts + 1),
                ))
                .execute(c)?;
                if n == 1 {
                    m.attempts += 1;
                    m.next_attempt_at = until;
                    claimed.push(m);
                }
            }
            Ok(claimed)
        })
        .await
    }

    /// Marks a claimed message sent, if the claim still holds (no other worker took it over
    /// after the claim lapsed).
    pub async fn outbox_sent(
        &self,
        id: String,
        claimed_until: NaiveDateTime,
        at: NaiveDateTime,
    ) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(
                outbox::table
                    .filter(outbox::id.eq(&id))
                    .filter(outbox::status.eq(NotificationStatus::Pending))
                    .filter(outbox::next_attempt_at.eq(claimed_until)),
            )
            .set((
                outbox::status.eq(NotificationStatus::Sent),
                outbox::sent_at.eq(Some(at)),
                outbox::last_error.eq(None::<String>),
            ))
            .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: retried at `retry_at`, or given up (`failed`) when `None`.
    pub async fn outbox_failed(
        &self,
        id: String,
        claimed_until: NaiveDateTime,
        error: String,
        retry_at: Option<NaiveDateTime>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            let q = diesel::update(
                outbox::table
                    .filter(outbox::id.eq(&id))
                    .filter(outbox::status.eq(NotificationStatus::Pending))
                    .filter(outbox::next_attempt_at.eq(claimed_until)),
            );
            match retry_at {
                Some(t) => q
                    .set((
                        outbox::next_attempt_at.eq(t),
                        outbox::last_error.eq(Some(error)),
                    ))
                    .execute(c)?,
                None => q
                    .set((
                        outbox::status.eq(NotificationStatus::Failed),
                        outbox::last_error.eq(Some(error)),
                    ))
                    .execute(c)?,
            };
            Ok(())
        })
        .await
    }

    /// Messages, newest first; only one recipient's when given.
    pub async fn outbox(
        &self,
        recipient: Option<String>,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        self.read(move |c| {
            let mut q = outbox::table.into_boxed();
            if let Some(r) = recipient {
                q = q.filter(outbox::recipient.eq(r));
            }
            Ok(q.order((outbox::created_at.desc(), outbox::id.desc()))
                .limit(limit)
                .select(OutboxRow::as_select())
                .load(c)?)
        })
        .await
    }
}
