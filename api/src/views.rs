//! Response shapes. Money leaves as decimal strings in major units; times as RFC 3339 UTC.

use crate::error::ApiError;
use chrono::{NaiveDateTime, Utc};
use serde::Serialize;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use voucherd_domain::eligibility::{RuleResult, SubsidyDeclaration};
use voucherd_domain::ledger::{Totals, TransferCode};
use voucherd_domain::money::{Amount, Money};
use voucherd_domain::ownership::Ownership;
use voucherd_domain::schema;
use voucherd_domain::ApiKeyId;
use voucherd_domain::{
    AccountStatus, ApplicationId, KeyMode, KeyStatus, VoucherId, VoucherState, VoucherStatus,
};
use voucherd_domain::{CompanyNumber, UserId};
use voucherd_store::applications::ApplicationRow;
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::ledger::{AccountRow, TransferRow};
use voucherd_store::lifecycle::Withdrawn;
use voucherd_store::statement::StatementLine;
use voucherd_store::usage::UsageRow;
use voucherd_store::users::UserRow;
use voucherd_store::vouchers::VoucherRow;

pub fn time(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn opt_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(time)
}

#[derive(Serialize)]
pub struct List<T: Serialize> {
    pub data: Vec<T>,
}

/// A list is named after what it holds: a list of `Voucher` is `VoucherList`.
impl<T: Serialize + ToSchema> utoipa::PartialSchema for List<T> {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref};
        ObjectBuilder::new()
            .property(
                "data",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("data")
            .into()
    }
}

impl<T: Serialize + ToSchema> ToSchema for List<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        format!("{}List", T::name()).into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// The process is up (`GET /healthz`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = health_status)]
    pub status: &'static str,
}

fn health_status() -> RefOr<Schema> {
    schema::one_of(&[" Always `ok`."], &[("ok", &[])])
}

/// The process can serve: its database answers (`GET /readyz`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(schema_with = readiness_status)]
    pub status: &'static str,
    /// The database it serves from.
    #[schema(schema_with = backend)]
    pub database: &'static str,
}

fn readiness_status() -> RefOr<Schema> {
    schema::one_of(&[" Always `ready`."], &[("ready", &[])])
}

fn backend() -> RefOr<Schema> {
    schema::one_of(
        &[" The database it serves from."],
        &[
            ("sqlite", &[" The embedded default."]),
            ("postgres", &[" PostgreSQL, for production."]),
        ],
    )
}

/// A nullable list of model names, as the document's `ModelName` states them.
fn model_names() -> RefOr<Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Type};
    OneOfBuilder::new()
        .item(ArrayBuilder::new().items(Ref::from_schema_name("ModelName")))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The only models the key may use; null when it may use every priced model.",
        ))
        .into()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// Time-ordered UUID (v7).
    pub id: UserId,
    #[schema(format = Email)]
    pub email: String,
    pub full_name: String,
    pub role: voucherd_domain::Role,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    /// Whether the email address is confirmed; an unconfirmed applicant may not apply.
    pub email_verified: bool,
    pub status: AccountStatus,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            role: u.role,
            created_at: time(u.created_at),
            email_verified: u.email_verified_at.is_some(),
            status: match (u.disabled_at, u.password_hash.is_empty()) {
                (Some(_), _) => AccountStatus::Disabled,
                (None, true) => AccountStatus::Invited,
                (None, false) => AccountStatus::Active,
            },
        }
    }
}

/// The first approval of an application that needed two, and its outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SecondApproval)]
pub struct SecondApprovalView {
    /// The administrator who approved first.
    pub requested_by: UserId,
    pub requested_at: Timestamp,
    pub reason: String,
    /// The amount approved, before incentives.
    #[schema(value_type = Money)]
    pub amount: Amount,
    /// The voucher's value with incentives, as evaluated at the first approval.
    #[schema(value_type = Money)]
    pub total: Amount,
    pub valid_days: i32,
    #[schema(required)]
    pub decided_by: Option<UserId>,
    /// What the second administrator decided; null until then.
    #[schema(required)]
    pub outcome: Option<voucherd_domain::SecondApprovalOutcome>,
    #[schema(required)]
    pub decided_at: Option<Timestamp>,
    /// Who `requested_by` is, "Full Name (email)" (administrators' views).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub requested_by_name: Option<String>,
    /// Who `decided_by` is, "Full Name (email)"; absent until decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub decided_by_name: Option<String>,
}

impl SecondApprovalView {
    pub fn new(s: &voucherd_store::applications::SecondApprovalRow) -> SecondApprovalView {
        SecondApprovalView {
            requested_by: s.requested_by.clone(),
            requested_at: at(s.requested_at),
            reason: s.reason.clone(),
            amount: Amount(s.amount_micros),
            total: Amount(s.total_micros),
            valid_days: s.valid_days,
            decided_by: s.decided_by.clone(),
            outcome: s.outcome,
            decided_at: opt_at(s.decided_at),
            requested_by_name: None,
            decided_by_name: None,
        }
    }
}

/// Whether the applicant owns the company the application names. Anyone can type a company
/// number, so an application starts `unconfirmed` and does not hold the number: several
/// unconfirmed applications may name one company. An administrator confirms or refuses
/// ownership (`POST /api/v1/applications/{id}/ownership`); an approval of an unconfirmed
/// application confirms it (the approver's check, recorded then). `refused`: the application
/// cannot be approved unless ownership is confirmed later.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Ownership)]
pub struct OwnershipView {
    #[schema(schema_with = ownership_state)]
    pub state: &'static str,
    /// How it was settled; null while unconfirmed.
    #[schema(required, schema_with = ownership_method)]
    pub method: Option<String>,
    /// User id of the administrator who settled it.
    #[schema(required)]
    pub by: Option<String>,
    /// Who that is, "Full Name (email)"; in administrators' views only, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub by_name: Option<String>,
    #[schema(required)]
    pub at: Option<Timestamp>,
    /// What the administrator checked (for an approval, its reason).
    #[schema(required)]
    pub note: Option<String>,
}

fn ownership_state() -> RefOr<Schema> {
    let states: Vec<(&str, &[&str])> = Ownership::STATES.iter().map(|s| (*s, &[][..])).collect();
    schema::one_of(&[], &states)
}

fn ownership_method() -> RefOr<Schema> {
    let methods: Vec<(&str, &[&str])> = voucherd_domain::ownership::Method::ALL
        .iter()
        .map(|m| (m.as_str(), &[][..]))
        .collect();
    schema::nullable(schema::one_of(
        &["How it was settled; null while unconfirmed."],
        &methods,
    ))
}

impl OwnershipView {
    fn new(o: &Ownership) -> OwnershipView {
        let check = o.check();
        OwnershipView {
            state: o.state(),
            method: check.map(|c| c.method.as_str().to_string()),
            by: check.map(|c| c.by.clone()),
            by_name: None,
            at: check.map(|c| at(c.at)),
            note: check.map(|c| c.note.clone()),
        }
    }
}

/// The result of every eligibility rule at submission.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Eligibility)]
pub struct EligibilityView {
    /// Whether every check passed.
    pub eligible: bool,
    pub checks: Vec<RuleResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Decision)]
pub struct DecisionView {
    /// User id of the administrator.
    #[schema(required)]
    pub decided_by: Option<UserId>,
    pub decided_at: Timestamp,
    #[schema(required)]
    pub reason: Option<String>,
}

/// An application as its applicant and the programme see it, with its rule results.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Application)]
pub struct ApplicationView {
    pub id: ApplicationId,
    /// The short reference people read out and type (Crockford base 32), such as
    /// `APP-7K2M9Q`; the voucher granted on the application has the same code after `VCH-`.
    #[schema(pattern = "^APP-[0-9A-HJKMNP-TV-Z]{6}$")]
    pub reference: String,
    pub status: voucherd_domain::ApplicationStatus,
    pub applicant_id: UserId,
    #[schema(value_type = CompanyNumber)]
    pub company_number: String,
    pub company_name: String,
    pub employees: i32,
    #[schema(value_type = Money)]
    pub annual_turnover: Amount,
    #[schema(value_type = Money)]
    pub balance_sheet_total: Amount,
    #[schema(value_type = voucherd_domain::Region)]
    pub region: String,
    #[schema(value_type = voucherd_domain::SicCode)]
    pub sic_code: String,
    pub trading_since: chrono::NaiveDate,
    pub use_case: String,
    /// The company is a university spin-off.
    pub university_spin_off: bool,
    pub subsidy_declarations: Vec<SubsidyDeclaration>,
    pub eligibility: EligibilityView,
    pub ownership: OwnershipView,
    /// Whether the application holds its company's number now, so that no other application
    /// for the company can be confirmed or submitted (one live application or voucher per
    /// company). Only a confirmed application that is pending, or approved with a voucher not
    /// yet expired, holds it.
    pub holds_company_number: bool,
    #[schema(required)]
    pub decision: Option<DecisionView>,
    /// The voucher granted on approval.
    #[schema(required)]
    pub voucher_id: Option<VoucherId>,
    /// The reference of the voucher granted on approval (the application's code).
    #[schema(required, pattern = "^VCH-[0-9A-HJKMNP-TV-Z]{6}$")]
    pub voucher_reference: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Administrators only, and only when the approval needed a second administrator.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub second_approval: Option<SecondApprovalView>,
}

impl ApplicationView {
    pub fn new(
        a: &ApplicationRow,
        voucher_id: Option<&VoucherId>,
    ) -> Result<ApplicationView, ApiError> {
        Ok(ApplicationView {
            id: a.id.clone(),
            reference: a.reference.clone(),
            status: a.status,
            applicant_id: a.applicant_id.clone(),
            company_number: a.company_number.clone(),
            company_name: a.company_name.clone(),
            employees: a.employees,
            annual_turnover: Amount(a.annual_turnover),
            balance_sheet_total: Amount(a.balance_sheet_total),
            region: a.region.clone(),
            sic_code: a.sic_code.clone(),
            trading_since: a.trading_since,
            use_case: a.use_case.clone(),
            university_spin_off: a.university_spin_off,
            subsidy_declarations: serde_json::from_str(&a.subsidy_declarations).unwrap_or_default(),
            eligibility: EligibilityView {
                eligible: a.eligible,
                checks: serde_json::from_str(&a.checks).unwrap_or_default(),
            },
            ownership: OwnershipView::new(&a.ownership()?),
            holds_company_number: a.live_company_number.is_some(),
            decision: a.decided_at.map(|t| DecisionView {
                decided_by: a.decided_by.clone(),
                decided_at: at(t),
                reason: a.decision_reason.clone(),
            }),
            voucher_id: voucher_id.cloned(),
            voucher_reference: voucher_id.and_then(|_| {
                voucherd_domain::Reference::parse(&a.reference)
                    .ok()
                    .map(|r| {
                        r.as_kind(voucherd_domain::ReferenceKind::Voucher)
                            .to_string()
                    })
            }),
            created_at: at(a.created_at),
            updated_at: at(a.updated_at),
            second_approval: None,
        })
    }
}

/// A voucher's status as its owner sees it: a stored `active` voucher past its expiry is
/// `expired` even before the expiry job has moved its remainder.
pub fn voucher_status(v: &VoucherRow, totals: &Totals) -> VoucherStatus {
    if v.status == VoucherState::Expired || v.expires_at <= Utc::now().naive_utc() {
        VoucherStatus::Expired
    } else if v.suspended_at.is_some() {
        VoucherStatus::Suspended
    } else if v.awaiting_contribution() {
        VoucherStatus::AwaitingContribution
    } else if totals.available() <= 0 && totals.debits_pending == 0 {
        VoucherStatus::Exhausted
    } else {
        VoucherStatus::Active
    }
}

/// A time on the wire: RFC 3339 in UTC with microseconds, as [`time`] writes it. Pages read
/// the time itself and format it for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub NaiveDateTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time(self.0))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
        schema::string("RFC 3339, UTC.")
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

fn at(t: NaiveDateTime) -> Timestamp {
    Timestamp(t)
}

fn opt_at(t: Option<NaiveDateTime>) -> Option<Timestamp> {
    t.map(Timestamp)
}

/// Why and since when an administrator suspended the voucher.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = VoucherSuspension)]
pub struct SuspensionView {
    pub at: Timestamp,
    #[schema(required)]
    pub reason: Option<String>,
}

/// The SME's co-funding share of the voucher.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = VoucherContribution)]
pub struct ContributionView {
    #[schema(value_type = Money)]
    pub amount: Amount,
    /// Null until paid, and again after the payment is refunded.
    #[schema(required)]
    pub paid_at: Option<Timestamp>,
}

/// A voucher and its balance. `spent` is usage only: a remainder forfeited at expiry and
/// credit taken back by a refund are shown apart.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Voucher)]
pub struct VoucherView {
    pub id: VoucherId,
    /// The short reference people read out and type (Crockford base 32), such as
    /// `VCH-7K2M9Q`; its application's reference has the same code after `APP-`.
    #[schema(pattern = "^VCH-[0-9A-HJKMNP-TV-Z]{6}$")]
    pub reference: String,
    pub status: VoucherStatus,
    #[schema(examples("GBP"))]
    pub currency: String,
    #[schema(value_type = Money)]
    pub granted: Amount,
    /// Usage only (including usage recorded under leases not yet posted).
    #[schema(value_type = Money)]
    pub spent: Amount,
    /// The remainder moved to the forfeited account at expiry; not spent.
    #[schema(value_type = Money)]
    pub forfeited: Amount,
    /// Credit taken back when a payment was refunded; not spent.
    #[schema(value_type = Money)]
    pub refunded: Amount,
    /// Held for proxied requests in flight.
    #[schema(value_type = Money)]
    pub held: Amount,
    pub available: Amount,
    pub expires_at: Timestamp,
    #[schema(required)]
    pub suspension: Option<SuspensionView>,
    /// Null when the voucher asks for no co-funding contribution.
    #[schema(required)]
    pub contribution: Option<ContributionView>,
    pub application_id: ApplicationId,
    #[schema(value_type = CompanyNumber)]
    pub company_number: String,
    /// The company's name, as its application gave it.
    pub company_name: String,
    pub created_at: Timestamp,
}

impl VoucherView {
    /// `unposted` is usage already recorded under leases that have not closed yet: it counts
    /// as spent at once, not as held.
    pub fn new(
        v: &VoucherRow,
        a: &AccountRow,
        company_name: &str,
        unposted: i64,
        withdrawn: Withdrawn,
    ) -> VoucherView {
        let mut t = a.totals();
        t.debits_posted += unposted;
        t.debits_pending -= unposted;
        let spent = t.debits_posted - withdrawn.forfeited_micros - withdrawn.refunded_micros;
        VoucherView {
            id: v.id.clone(),
            reference: v.reference.clone(),
            status: voucher_status(v, &t),
            currency: v.currency.clone(),
            granted: Amount(t.credits_posted),
            spent: Amount(spent),
            forfeited: Amount(withdrawn.forfeited_micros),
            refunded: Amount(withdrawn.refunded_micros),
            held: Amount(t.debits_pending),
            available: Amount(t.available()),
            expires_at: at(v.expires_at),
            suspension: v.suspended_at.map(|t| SuspensionView {
                at: at(t),
                reason: v.suspension_reason.clone(),
            }),
            contribution: (v.contribution_micros > 0).then(|| ContributionView {
                amount: Amount(v.contribution_micros),
                paid_at: opt_at(v.contribution_paid_at),
            }),
            application_id: v.application_id.clone(),
            company_number: v.company_number.clone(),
            company_name: company_name.to_string(),
            created_at: at(v.created_at),
        }
    }
}

/// What a statement line is, in words.
fn statement_kind(kind: TransferCode) -> &'static str {
    match kind {
        TransferCode::Usage => "API request",
        TransferCode::VoucherGrant => "Voucher granted",
        TransferCode::IncentiveMilestone => "Milestone bonus",
        TransferCode::ChallengeAward => "Challenge award",
        TransferCode::TopUp => "Credit bought",
        TransferCode::Refund => "Refund: credit taken back",
        TransferCode::Expiry => "Remainder forfeited at expiry",
        TransferCode::UsageOverrun => "Usage above a request's hold (not charged)",
        // Codes that never touch a voucher's own accounts; named all the same should one do.
        TransferCode::Deposit
        | TransferCode::TestAllowance
        | TransferCode::Test
        | TransferCode::ChallengePool
        | TransferCode::ChallengeReturn
        | TransferCode::BudgetMove
        | TransferCode::ConsultingGrant
        | TransferCode::ConsultingSession
        | TransferCode::Contribution => "Other",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatementLineView {
    pub at: Timestamp,
    pub id: String,
    pub kind: TransferCode,
    pub description: &'static str,
    pub detail: String,
    pub source: &'static str,
    pub amount: Amount,
    pub balance: Amount,
}

impl StatementLineView {
    pub fn new(l: &StatementLine, balance_micros: i64) -> StatementLineView {
        StatementLineView {
            at: at(l.at),
            id: l.id.clone(),
            kind: l.kind,
            description: statement_kind(l.kind),
            detail: l.detail.clone(),
            source: l.source,
            amount: Amount(l.amount_micros),
            balance: Amount(balance_micros),
        }
    }
}

/// One page of a voucher's statement, oldest first, with the running balance.
#[derive(Debug, Clone, Serialize)]
pub struct StatementView {
    pub opening_balance: Amount,
    pub closing_balance: Amount,
    pub data: Vec<StatementLineView>,
    /// The cursor of the next page (`?after=`), while more lines follow.
    pub next: Option<String>,
}

/// Which way a transfer moved money for the account it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Debit,
    Credit,
}

/// One ledger transfer as an account sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Transaction)]
pub struct TransferView {
    pub id: String,
    pub kind: voucherd_domain::ledger::TransferKind,
    pub code: voucherd_domain::ledger::TransferCode,
    /// Direction for the voucher's account.
    pub direction: Direction,
    #[schema(value_type = Money)]
    pub amount: Amount,
    /// The hold a post or void resolves.
    #[schema(required)]
    pub pending_id: Option<String>,
    pub memo: String,
    /// When a hold voids if not resolved.
    #[schema(required)]
    pub timeout_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl TransferView {
    pub fn new(t: &TransferRow, account_id: &str) -> TransferView {
        TransferView {
            id: t.id.clone(),
            kind: t.kind,
            code: t.code,
            direction: if t.debit_account_id == account_id {
                Direction::Debit
            } else {
                Direction::Credit
            },
            amount: Amount(t.amount),
            pending_id: t.pending_id.clone(),
            memo: t.memo.clone(),
            timeout_at: opt_at(t.timeout_at),
            created_at: at(t.created_at),
        }
    }
}

pub fn key_status(k: &ApiKeyRow) -> KeyStatus {
    if k.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if k.suspended_at.is_some() {
        KeyStatus::Suspended
    } else if k.expires_at.is_some_and(|e| e <= Utc::now().naive_utc()) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

/// An API key as its owner and the programme see it (never the key itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub struct KeyView {
    /// Time-ordered UUID (v7).
    pub id: ApiKeyId,
    pub voucher_id: VoucherId,
    pub name: String,
    /// The key's first 12 characters, to tell keys apart.
    #[schema(examples("vk_live_3f9a", "vk_test_8c21"))]
    pub prefix: String,
    pub status: KeyStatus,
    pub mode: KeyMode,
    #[schema(required, schema_with = model_names)]
    pub allowed_models: Option<Vec<String>>,
    /// Requests per minute; null when unlimited.
    #[schema(required)]
    pub rpm: Option<i32>,
    /// Tokens per minute; null when unlimited.
    #[schema(required)]
    pub tpm: Option<i32>,
    /// Requests in flight at once; null when unlimited.
    #[schema(required)]
    pub max_concurrent: Option<i32>,
    /// The most the key may spend in a calendar month; null when uncapped.
    #[schema(required, value_type = Option<Money>)]
    pub monthly_spend_cap: Option<Amount>,
    /// When the key stops working; null when it lasts as long as its voucher.
    #[schema(required)]
    pub expires_at: Option<Timestamp>,
    /// The id of the key that replaced this one, once rotated.
    #[schema(required)]
    pub rotated_to: Option<ApiKeyId>,
    pub created_at: Timestamp,
    #[schema(required)]
    pub last_used_at: Option<Timestamp>,
    #[schema(required)]
    pub revoked_at: Option<Timestamp>,
    /// When the programme suspended the key; null when it is not suspended.
    #[schema(required)]
    pub suspended_at: Option<Timestamp>,
    /// Why the key is suspended.
    #[schema(required)]
    pub suspension_reason: Option<String>,
}

impl KeyView {
    pub fn new(k: &ApiKeyRow) -> KeyView {
        KeyView {
            id: k.id.clone(),
            voucher_id: k.voucher_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            status: key_status(k),
            mode: k.mode,
            allowed_models: k
                .allowed_models
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            rpm: k.rpm,
            tpm: k.tpm,
            max_concurrent: k.max_concurrent,
            monthly_spend_cap: k.monthly_spend_cap.map(Amount),
            expires_at: opt_at(k.expires_at),
            rotated_to: k.rotated_to.clone(),
            created_at: at(k.created_at),
            last_used_at: opt_at(k.last_used_at),
            revoked_at: opt_at(k.revoked_at),
            suspended_at: opt_at(k.suspended_at),
            suspension_reason: k.suspension_reason.clone(),
        }
    }

    /// Whether the key works now: active and not replaced by a rotation.
    pub fn usable(&self) -> bool {
        self.status == KeyStatus::Active && self.rotated_to.is_none()
    }
}

/// A key just minted: its view and the key itself, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = CreatedApiKey)]
pub struct NewKeyView {
    #[serde(flatten)]
    pub view: KeyView,
    /// The secret key. Shown once, in this response only.
    #[schema(pattern = "^vk_(live|test)_[0-9a-f]{64}$")]
    pub key: String,
}

/// The price version a request was billed at.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = UsagePrice)]
pub struct PriceSnapshot {
    pub version: String,
    #[schema(value_type = Money)]
    pub input_per_million: Amount,
    #[schema(value_type = Money)]
    pub cached_input_per_million: Amount,
    #[schema(value_type = Money)]
    pub output_per_million: Amount,
}

/// One metered request with the price it was charged at.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Usage)]
pub struct UsageView {
    /// Time-ordered UUID (v7).
    pub id: String,
    /// The metered request's billing id.
    pub request_id: String,
    pub key_id: ApiKeyId,
    pub model: String,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    #[schema(value_type = Money)]
    pub cost: Amount,
    pub price: PriceSnapshot,
    /// The hold the cost was reserved under (the request's own, or the proxy's lease on the
    /// voucher).
    pub hold_id: String,
    /// The request's own posted transfer; null for a request served from a lease, whose cost
    /// is posted by the transfer resolving `hold_id` when the lease closes.
    #[schema(required)]
    pub transfer_id: Option<String>,
    pub created_at: Timestamp,
}

impl UsageView {
    pub fn new(u: &UsageRow) -> UsageView {
        UsageView {
            id: u.id.clone(),
            request_id: u.request_id.clone(),
            key_id: u.api_key_id.clone(),
            model: u.model.clone(),
            prompt_tokens: u.prompt_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            completion_tokens: u.completion_tokens,
            cost: Amount(u.cost),
            price: PriceSnapshot {
                version: u.price_id.clone(),
                input_per_million: Amount(u.input_per_million),
                cached_input_per_million: Amount(u.cached_input_per_million),
                output_per_million: Amount(u.output_per_million),
            },
            hold_id: u.hold_id.clone(),
            transfer_id: u.post_id.clone(),
            created_at: at(u.created_at),
        }
    }
}
