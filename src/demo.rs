//! `serve --demo`: a small programme to click through on a fresh machine — a funded
//! programme, an administrator and an applicant (their passwords are printed at start-up), an
//! approved voucher with a live key, and the built-in sandbox answering in place of the
//! provider, so nothing real is spent.

use crate::config::Config;
use anyhow::Context;
use voucherd_api::keys;
use voucherd_domain::eligibility::ApplicationFacts;
use voucherd_domain::{
    ApplicationId, ApplicationStatus, CompanyNumber, KeyMode, Money, Region, Role, SicCode, UserId,
    VoucherId,
};
use voucherd_store::applications::{ApplicationRow, Decision, Verdict};
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::users::UserRow;
use voucherd_store::vouchers::VoucherRow;
use voucherd_store::Store;

pub const ADMIN_EMAIL: &str = "admin@demo.voucherd.test";
pub const APPLICANT_EMAIL: &str = "owner@demo.voucherd.test";

/// What the demo seeded, for the start-up log.
pub struct Seeded {
    pub admin_password: String,
    pub applicant_password: String,
    pub voucher_id: VoucherId,
    pub live_key: String,
}

fn password() -> String {
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn user(
    store: &Store,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
) -> anyhow::Result<UserRow> {
    let hash = voucherd_api::auth::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store
        .create_user(UserRow {
            id: keys::new_id::<UserId>(),
            email: email.into(),
            password_hash: hash,
            full_name: name.into(),
            role,
            created_at: voucherd_store::now(),
            email_verified_at: Some(voucherd_store::now()),
            disabled_at: None,
        })
        .await?)
}

/// Seeds an empty database; leaves one with users alone and returns `None`.
pub async fn seed(store: &Store, config: &Config) -> anyhow::Result<Option<Seeded>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let admin_password = password();
    let applicant_password = password();
    let admin = user(
        store,
        ADMIN_EMAIL,
        "Demo administrator",
        Role::Admin,
        &admin_password,
    )
    .await?;
    let owner = user(
        store,
        APPLICANT_EMAIL,
        "Demo SME owner",
        Role::Applicant,
        &applicant_password,
    )
    .await?;
    store
        .deposit(
            "deposit-demo".into(),
            Money::from_major(1_000_000)?,
            "Demo programme allocation".into(),
            admin.id.clone(),
        )
        .await?;

    let today = chrono::Utc::now().date_naive();
    let at = voucherd_store::now();
    let app = apply(store, config, &owner.id, today, at).await?;
    let voucher = approve(store, config, app.id, admin.id, at).await?;
    let live_key = live_key(store, &voucher.id, owner.id, at).await?;
    Ok(Some(Seeded {
        admin_password,
        applicant_password,
        voucher_id: voucher.id,
        live_key,
    }))
}

/// The demo company's application, submitted by its owner and checked against the rules.
async fn apply(
    store: &Store,
    config: &Config,
    owner_id: &UserId,
    today: chrono::NaiveDate,
    at: chrono::NaiveDateTime,
) -> anyhow::Result<ApplicationRow> {
    let facts = ApplicationFacts {
        company_number: CompanyNumber::parse("01234567").context("demo company number")?,
        employees: 14,
        annual_turnover: Money::from_major(1_200_000)?,
        balance_sheet_total: Money::from_major(400_000)?,
        region: Region::NorthEast,
        sic_code: SicCode::parse("62012").context("demo SIC code")?,
        trading_since: chrono::NaiveDate::from_ymd_opt(2018, 5, 1).context("demo date")?,
        subsidy_declarations: vec![],
        voucher_amount: config.standard_voucher,
    };
    let eligibility = config.eligibility.evaluate(&facts, today);
    Ok(store
        .submit_application(ApplicationRow {
            id: keys::new_id::<ApplicationId>(),
            applicant_id: owner_id.clone(),
            company_number: facts.company_number.as_str().into(),
            company_name: "Demo Analytics Ltd".into(),
            employees: 14,
            annual_turnover: facts.annual_turnover.micros(),
            balance_sheet_total: facts.balance_sheet_total.micros(),
            region: facts.region.as_str().into(),
            sic_code: facts.sic_code.as_str().into(),
            trading_since: facts.trading_since,
            use_case: "Summarise customer support tickets and draft first replies.".into(),
            subsidy_declarations: "[]".into(),
            eligible: eligibility.eligible,
            checks: serde_json::to_string(&eligibility.checks)?,
            status: if eligibility.eligible {
                ApplicationStatus::Submitted
            } else {
                ApplicationStatus::Ineligible
            },
            live_company_number: None,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            created_at: at,
            updated_at: at,
            university_spin_off: false,
            // The demo administrator's approval below confirms it.
            ownership: voucherd_store::applications::OwnershipColumns::of(
                &voucherd_domain::ownership::Ownership::Unconfirmed,
            ),
            // Drawn by the store.
            reference: String::new(),
        })
        .await?)
}

/// The demo administrator's approval of the application: the demo voucher.
async fn approve(
    store: &Store,
    config: &Config,
    application_id: ApplicationId,
    admin_id: UserId,
    at: chrono::NaiveDateTime,
) -> anyhow::Result<VoucherRow> {
    let (_, voucher) = store
        .decide_application(Decision {
            application_id,
            actor_id: admin_id,
            mfa_rules: config.eligibility.clone(),
            verdict: Verdict::Approve {
                voucher_id: keys::new_id::<VoucherId>(),
                amount: config.standard_voucher,
                expires_at: at + chrono::Duration::days(i64::from(config.default_valid_days)),
                consulting: voucherd_domain::consulting::Minutes::hours(config.consulting_hours)
                    .map_err(|e| anyhow::anyhow!("consulting_hours: {e}"))?,
                incentives: Vec::new(),
                // The demo voucher spends at once, whatever the co-funding rule.
                contribution: voucherd_domain::Money::ZERO,
            },
            reason: "Demo: eligible on every rule.".into(),
            stage: voucherd_store::applications::Stage::First,
        })
        .await?;
    voucher.context("the demo approval made no voucher")
}

/// A live key on the demo voucher; its secret.
async fn live_key(
    store: &Store,
    voucher_id: &VoucherId,
    owner_id: UserId,
    at: chrono::NaiveDateTime,
) -> anyhow::Result<String> {
    let minted = keys::mint(false);
    store
        .create_key(ApiKeyRow {
            id: keys::new_id(),
            voucher_id: voucher_id.clone(),
            name: "demo".into(),
            prefix: minted.prefix.clone(),
            key_hash: minted.hash.clone(),
            created_by: owner_id,
            created_at: at,
            last_used_at: None,
            revoked_at: None,
            mode: KeyMode::Live,
            allowed_models: None,
            rpm: None,
            tpm: None,
            max_concurrent: None,
            monthly_spend_cap: None,
            expires_at: None,
            rotated_to: None,
            suspended_at: None,
            suspension_reason: None,
        })
        .await?;
    Ok(minted.secret)
}
