//! The append-only audit log of administrative decisions: who, when, what, why.

use crate::db::{now, DbConn, Store};
use crate::error::StoreResult;
use crate::schema::audit_log;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: String,
    pub actor_id: Option<UserId>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub reason: Option<String>,
    /// JSON object.
    pub details: String,
    pub created_at: NaiveDateTime,
}

pub struct AuditEntry<'a> {
    pub actor_id: Option<&'a UserId>,
    pub action: &'a str,
    pub subject_type: &'a str,
    pub subject_id: &'a str,
    pub reason: Option<&'a str>,
    pub details: serde_json::Value,
}

/// Records an entry inside the caller's transaction, so the decision and its record commit
/// together or not at all.
/// Which entries of the log a list keeps: of one kind of subject, of one action, or all.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject_type: Option<String>,
    pub action: Option<String>,
}

fn filtered(
    f: &AuditFilter,
) -> audit_log::BoxedQuery<'static, <DbConn as diesel::Connection>::Backend> {
    let mut q = audit_log::table.into_boxed();
    if let Some(t) = &f.subject_type {
        q = q.filter(audit_log::subject_type.eq(t.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    q
}

pub fn record(c: &mut DbConn, e: AuditEntry<'_>) -> StoreResult<()> {
    let row = AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        actor_id: e.actor_id.cloned(),
        action: e.action.to_string(),
        subject_type: e.subject_type.to_string(),
        subject_id: e.subject_id.to_string(),
        reason: e.reason.map(str::to_string),
        details: e.details.to_string(),
        created_at: now(),
    };
    diesel::insert_into(audit_log::table)
        .values(&row)
        .execute(c)?;
    Ok(())
}

impl Store {
    /// The latest entries first, whatever their subject (the console's audit log).
    pub async fn audit_recent(
        &self,
        filter: AuditFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<AuditRow>> {
        self.read(move |c| {
            Ok(filtered(&filter)
                .order((audit_log::created_at.desc(), audit_log::id.desc()))
                .limit(limit)
                .offset(offset)
                .select(AuditRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// How many entries the audit log holds, of those the filter keeps.
    pub async fn audit_count(&self, filter: AuditFilter) -> StoreResult<i64> {
        self.read(move |c| Ok(filtered(&filter).count().get_result(c)?))
            .await
    }

    /// The kinds of subject and the actions the log holds, each sorted: what it can be
    /// filtered by.
    pub async fn audit_facets(&self) -> StoreResult<(Vec<String>, Vec<String>)> {
        self.read(move |c| {
            let types = audit_log::table
                .select(audit_log::subject_type)
                .distinct()
                .order(audit_log::subject_type)
                .load(c)?;
            let actions = audit_log::table
                .select(audit_log::action)
                .distinct()
                .order(audit_log::action)
                .load(c)?;
            Ok((types, actions))
        })
        .await
    }

    pub async fn audit_for(
        &self,
        subject_type: String,
        subject_id: String,
    ) -> StoreResult<Vec<AuditRow>> {
        self.read(move |c| {
            Ok(audit_log::table
                .filter(audit_log::subject_type.eq(subject_type))
                .filter(audit_log::subject_id.eq(subject_id))
                .order((audit_log::created_at.asc(), audit_log::id.asc()))
                .select(AuditRow::as_select())
                .load(c)?)
        })
        .await
    }
}
