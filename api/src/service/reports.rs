//! Kept reports, for administrators: the list, each report's data and its printable page.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::Timestamp;
use serde::Serialize;
use voucherd_store::reports::ReportRow;

/// The reporting period, first and last day.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodView {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
}

/// A kept report, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    pub id: String,
    pub kind: String,
    pub period: PeriodView,
    pub generated_at: Timestamp,
    pub generated_by: String,
    pub schema_version: i32,
    pub content_hash: String,
    pub draft: bool,
}

impl ReportView {
    fn new(r: &ReportRow) -> ReportView {
        ReportView {
            id: r.id.clone(),
            kind: r.kind.clone(),
            period: PeriodView {
                from: r.period_from,
                to: r.period_to,
            },
            generated_at: Timestamp(r.generated_at),
            generated_by: r.generated_by.clone(),
            schema_version: r.schema_version,
            content_hash: r.content_hash.clone(),
            draft: r.draft,
        }
    }
}

/// The latest 200 reports, newest first.
pub async fn list(state: &AppState) -> Result<Vec<ReportView>, ApiError> {
    let rows = state.store.reports(200).await?;
    Ok(rows.iter().map(ReportView::new).collect())
}

/// A report's data: the document the worker made (its own schema, versioned by
/// `schema_version`).
pub async fn content(state: &AppState, id: &str) -> Result<serde_json::Value, ApiError> {
    let r = state.store.report(id.to_string()).await?;
    serde_json::from_str(&r.content).map_err(|e| ApiError::Internal(format!("stored report: {e}")))
}

/// A report's printable page, as the worker rendered it.
pub async fn html(state: &AppState, id: &str) -> Result<String, ApiError> {
    Ok(state.store.report(id.to_string()).await?.html)
}
