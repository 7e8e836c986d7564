//! What a kept report is, as types: the internal report ([`Report`]) and its public summary
//! ([`PublicReport`]). The JSON the worker keeps is these types serialised, and the OpenAPI
//! document's schemas of them are generated from the same types, so the two cannot drift.
//!
//! Reports made before schema version 2 lack the fields marked not required; they are kept as
//! they were made and served unchanged.

use chrono::NaiveDate;
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use voucherd_domain::money::{format_pounds_2dp, Money};
use voucherd_domain::report_period::ReportKind;
use voucherd_domain::CompanyNumber;

/// An amount as a report shows it: pounds with two decimals (`"133820.00"`). On the wire and
/// in the document it is [`Money`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Pounds(String);

impl Pounds {
    pub fn of(micros: i64) -> Pounds {
        Pounds(format_pounds_2dp(micros))
    }
}

impl PartialSchema for Pounds {
    fn schema() -> RefOr<Schema> {
        Money::schema()
    }
}

impl ToSchema for Pounds {
    /// The same schema as [`Money`], so documented once under its name.
    fn name() -> Cow<'static, str> {
        Money::name()
    }
}

/// The days a report covers, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ReportPeriod)]
pub struct PeriodView {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A kept incentive and impact report, comparing its period with the one before.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub schema_version: i32,
    pub kind: ReportKind,
    /// Made before its period ended (schema version 2 on); never published.
    #[schema(required = false)]
    pub draft: bool,
    pub title: String,
    pub period: PeriodView,
    pub previous_period: PeriodView,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// What generated the report, a job (such as `job:report-monthly`) or `command line`.
    pub generated_by: String,
    /// Every table of the report by name, each with the JSON pointer of where it sits in the
    /// report; each downloads as CSV from `GET /api/v1/reports/{id}/csv?table={name}` (schema
    /// version 2 on).
    #[schema(required = false, example = json!({
        "applications": "/current/applications",
        "budget_lines": "/current/budget_lines",
        "by_model": "/current/usage/by_model"
    }))]
    pub tables: BTreeMap<String, String>,
    pub current: Figures,
    pub previous: Figures,
}

/// A report's figures for one period.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportFigures)]
pub struct Figures {
    pub applications: ApplicationFigures,
    /// Days from application to decision of the decisions made in the period (two decimals);
    /// each figure is null when there was no decision.
    #[schema(required = false)]
    pub decision_days: DecisionDays,
    /// Every budget line; allocated, spent and remaining as at the report's making, and what
    /// its vouchers spent in the period.
    #[schema(required = false)]
    pub budget_lines: Vec<BudgetLineFigures>,
    /// Incentives that took effect in the period (at an approval, or a milestone bonus
    /// granted), by rule.
    #[schema(required = false)]
    pub incentives_by_rule: Vec<IncentiveFigures>,
    /// Sessions booked in the period (not cancelled) and sessions held in it recorded as
    /// attended, with their hours (two decimals).
    #[schema(required = false)]
    pub consulting: ConsultingFigures,
    /// Per challenge, entries submitted in the period, how many won an award decided by its
    /// end, and the awards' total.
    #[schema(required = false)]
    pub challenge_outcomes: Vec<ChallengeOutcome>,
    pub vouchers: VoucherCounts,
    pub credit: CreditFigures,
    pub usage: UsageFigures,
    /// Organisations with metered usage in the period.
    pub organisations_active: usize,
    pub challenges: ChallengeCounts,
    /// Always null: contributions and top-ups are reported by the payments pages.
    #[schema(value_type = Option<Object>)]
    pub top_ups_and_co_funding: Option<()>,
    /// Minimal Financial Assistance awards over £100,000. Internal only: the law makes these
    /// public by name, so they never appear in a public summary.
    pub mfa_awards_over_100000: Vec<MfaAward>,
}

/// Applications received in the period and the decisions made in it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportApplications)]
pub struct ApplicationFigures {
    pub received: usize,
    pub eligible: usize,
    pub approved: usize,
    pub rejected: usize,
    /// Applications found ineligible, counted by the rule that failed.
    pub ineligible_by_rule: BTreeMap<String, usize>,
    pub decision_hours: DecisionHours,
}

/// Hours from application to decision; null when nothing was decided.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportDecisionHours)]
pub struct DecisionHours {
    #[schema(examples("26.5"))]
    pub median: Option<String>,
    #[schema(examples("70.0"))]
    pub p90: Option<String>,
}

/// Days from application to decision of the decisions made in the period (two decimals);
/// each figure is null when there was no decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportDecisionDays)]
pub struct DecisionDays {
    pub decisions: usize,
    pub median: Option<String>,
    pub p75: Option<String>,
    pub p90: Option<String>,
    pub max: Option<String>,
}

/// One budget line: allocated, spent and remaining as at the report's making, and what its
/// vouchers spent in the period.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportBudgetLine)]
pub struct BudgetLineFigures {
    pub name: String,
    pub financial_year: String,
    pub allocated: Pounds,
    pub spent: Pounds,
    pub remaining: Pounds,
    pub spent_in_period: Pounds,
}

/// Incentives of one rule that took effect in the period.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportIncentives)]
pub struct IncentiveFigures {
    pub rule_key: String,
    pub name: String,
    pub count: i64,
    pub value: Pounds,
}

/// Consulting sessions booked and delivered in the period, with their hours (two decimals).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportConsulting)]
pub struct ConsultingFigures {
    pub sessions_booked: i64,
    pub hours_booked: String,
    pub sessions_delivered: i64,
    pub hours_delivered: String,
}

/// One challenge's entries in the period, its winners and the awards' total.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportChallengeOutcome)]
pub struct ChallengeOutcome {
    pub challenge_id: String,
    pub title: String,
    pub entries: i64,
    pub winners: i64,
    pub awards: Pounds,
}

/// Vouchers issued in the period, and active, exhausted and expired at its end.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportVouchers)]
pub struct VoucherCounts {
    pub issued: usize,
    pub active: usize,
    pub exhausted: usize,
    pub expired: usize,
}

/// Credit granted, consumed, held and forfeited.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportCredit)]
pub struct CreditFigures {
    pub granted: Pounds,
    pub consumed: Pounds,
    pub held: Pounds,
    pub forfeited: Pounds,
    /// Credit consumed as a percentage of credit granted; null when none was granted.
    #[schema(examples("42.10"))]
    pub utilisation_percent: Option<String>,
    pub incentive_bonuses: Pounds,
}

/// Metered usage in the period, with its breakdowns.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportUsage)]
pub struct UsageFigures {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Pounds,
    pub by_model: Vec<BreakdownRow>,
    pub by_region: Vec<BreakdownRow>,
    pub by_sector: Vec<BreakdownRow>,
    pub by_size_band: Vec<BreakdownRow>,
    pub by_month: Vec<BreakdownRow>,
}

/// Usage of one key of a breakdown (a model, region, SIC section, size band or month).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportBreakdownRow)]
pub struct BreakdownRow {
    pub key: String,
    pub requests: i64,
    pub tokens: i64,
    pub cost: Pounds,
}

/// Challenge entries submitted in the period, and how they fared.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportChallenges)]
pub struct ChallengeCounts {
    pub entries: usize,
    pub assessed: usize,
    pub awarded: usize,
    pub pilot_places: usize,
    pub award_credit: Pounds,
}

/// One company's Minimal Financial Assistance over £100,000.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportMfaAward)]
pub struct MfaAward {
    pub company_name: String,
    #[schema(value_type = CompanyNumber)]
    pub company_number: String,
    pub amount: Pounds,
}

/// The public summary of a kept report, under disclosure control: only aggregate counts and
/// amounts; a cell covering fewer than k organisations (default 5) is `"[c]"`, counts are
/// rounded to the nearest 5, and further cells are suppressed so that none can be worked out
/// from totals. No names and no free text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicReport {
    pub schema_version: i32,
    pub kind: ReportKind,
    /// Made before its period ended; a draft's summary is never published.
    #[schema(required = false)]
    pub draft: bool,
    pub title: String,
    pub period: PeriodView,
    pub summary: PublicSummary,
}

/// The public summary's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicSummary {
    /// The disclosure-control rules applied, in words.
    pub disclosure_control: String,
    /// Rounded to the nearest 5.
    pub applications_received: PublicCount,
    /// Rounded to the nearest 5.
    pub applications_approved: PublicCount,
    /// Organisations by region and size band; the last row has region `all regions`.
    pub organisations_by_region_and_size: Vec<PublicCountRow>,
    /// Voucher spend by region and size band; the last row has region `all regions`.
    pub spend_by_region_and_size: Vec<PublicAmountRow>,
}

/// Organisations of one region (or `all regions`) by size band.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicCountRow {
    #[schema(examples("london", "all regions"))]
    pub region: String,
    pub micro: PublicCount,
    pub small: PublicCount,
    pub medium: PublicCount,
    pub total: PublicCount,
}

/// Voucher spend of one region (or `all regions`) by size band.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicAmountRow {
    #[schema(examples("london", "all regions"))]
    pub region: String,
    pub micro: PublicAmount,
    pub small: PublicAmount,
    pub medium: PublicAmount,
    pub total: PublicAmount,
}

/// What a suppressed cell shows.
pub const SUPPRESSED: &str = "[c]";

/// A count rounded to the nearest 5, or `"[c]"` where it is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicCount {
    Count(i64),
    Suppressed,
}

impl Serialize for PublicCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PublicCount::Count(n) => s.serialize_i64(*n),
            PublicCount::Suppressed => s.serialize_str(SUPPRESSED),
        }
    }
}

/// The schema of a value or of the suppression mark, `"[c]"`.
fn or_suppressed(value: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(value)
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([SUPPRESSED])),
        )
        .description(Some(description))
        .into()
}

impl PartialSchema for PublicCount {
    fn schema() -> RefOr<Schema> {
        or_suppressed(
            ObjectBuilder::new().schema_type(Type::Integer).into(),
            "A count rounded to the nearest 5, or `\"[c]\"` where it is suppressed.",
        )
    }
}

impl ToSchema for PublicCount {}

/// An amount in pounds, or `"[c]"` where it is suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicAmount {
    Amount(Pounds),
    Suppressed,
}

impl Serialize for PublicAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PublicAmount::Amount(p) => p.serialize(s),
            PublicAmount::Suppressed => s.serialize_str(SUPPRESSED),
        }
    }
}

impl PartialSchema for PublicAmount {
    fn schema() -> RefOr<Schema> {
        or_suppressed(
            RefOr::Ref(utoipa::openapi::Ref::from_schema_name(Money::name())),
            "An amount as Money, or `\"[c]\"` where it is suppressed.",
        )
    }
}

impl ToSchema for PublicAmount {
    fn schemas(all: &mut Vec<(String, RefOr<Schema>)>) {
        all.push((Money::name().into_owned(), Money::schema()));
    }
}
