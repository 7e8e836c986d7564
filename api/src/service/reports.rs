//! Kept reports, for administrators: the list, each report's data and its printable page.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::Timestamp;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use validator::Validate;
use voucherd_domain::report_period::{Period, ReportKind};
use voucherd_domain::ErrorCode;
use voucherd_reports::document::PeriodView;
use voucherd_store::reports::ReportRow;

/// A kept report, as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ReportListing)]
pub struct ReportView {
    pub id: String,
    pub kind: ReportKind,
    pub period: PeriodView,
    pub generated_at: Timestamp,
    /// What generated the report, a job (such as `job:report-monthly`) or `command line`.
    #[schema(examples("job:report-monthly", "job:report-semi-annual", "command line"))]
    pub generated_by: String,
    /// Version of the report's JSON layout.
    pub schema_version: i32,
    /// SHA-256 of the report's JSON content, in lower-case hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub content_hash: String,
    /// Made before its period ended. A draft is kept and listed but never published, and never
    /// stands in the way of the period's final report.
    pub draft: bool,
}

impl ReportView {
    fn new(r: &ReportRow) -> ReportView {
        ReportView {
            id: r.id.clone(),
            kind: r.kind,
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

/// A report to make now: a whole calendar month or half of the financial year that has ended.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// `monthly` or `semi_annual`.
    pub kind: ReportKind,
    /// The period's first day.
    pub from: NaiveDate,
    /// The period's last day.
    pub to: NaiveDate,
}

/// Makes and keeps the final report of a period that has ended, as the schedule would
/// (docs/PROGRAMME.md, "Reports"), named as made by the administrator. A period still running
/// is refused: its report would be a draft, which only the command line makes. Refused with
/// `report_exists` when the period's final report is kept already.
pub async fn make(
    state: &AppState,
    user: &AuthUser,
    body: ReportRequest,
) -> Result<ReportView, ApiError> {
    let period =
        Period::fixed(body.kind, body.from, body.to).map_err(|e| ApiError::field("to", e))?;
    let at = state.clock.now();
    if !period.has_ended(at.date()) {
        let from = period.to().succ_opt().unwrap_or(period.to());
        return Err(ApiError::field(
            "to",
            format!("the period has not ended: its report can be made from {from}"),
        ));
    }
    let me = state.store.user(user.id.clone()).await?;
    let by = format!("{} ({})", me.full_name, me.email);
    let saved = voucherd_reports::generate(
        &state.store,
        period,
        &by,
        at,
        &state.config.disclosure,
        &|_| {},
    )
    .await?;
    match saved {
        Some(row) => Ok(ReportView::new(&row)),
        None => Err(ApiError::conflict(
            ErrorCode::ReportExists,
            format!(
                "the final {} report for {} to {} is kept already",
                period.kind(),
                period.from(),
                period.to()
            ),
        )),
    }
}

/// A period whose final report can be made now, and whether it is kept already.
#[derive(Debug, Clone, Serialize)]
pub struct MakeableView {
    pub kind: ReportKind,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub kept: bool,
}

/// How many ended periods of each kind the console offers: a year of months, two years of
/// halves.
const MAKEABLE: [(ReportKind, usize); 2] = [(ReportKind::Monthly, 12), (ReportKind::SemiAnnual, 4)];

/// The latest ended periods of each kind, newest first, each marked if its final report is
/// kept (so the console offers what [`make`] would accept).
pub async fn makeable(state: &AppState) -> Result<Vec<MakeableView>, ApiError> {
    let kept: std::collections::HashSet<(ReportKind, NaiveDate)> = state
        .store
        .reports(200)
        .await?
        .into_iter()
        .filter(|r| !r.draft)
        .map(|r| (r.kind, r.period_from))
        .collect();
    let today = state.clock.now().date();
    let mut out = Vec::new();
    for (kind, count) in MAKEABLE {
        let mut p = Period::last_before(kind, today);
        for _ in 0..count {
            out.push(MakeableView {
                kind,
                from: p.from(),
                to: p.to(),
                kept: kept.contains(&(kind, p.from())),
            });
            p = p.previous();
        }
    }
    Ok(out)
}
