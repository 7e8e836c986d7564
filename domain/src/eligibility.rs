//! Eligibility of an applicant company, after docs/ARCHITECTURE.md, "Eligibility". Each rule yields passed/failed with a
//! human reason that is stored with the application and shown to administrators and the
//! applicant. Thresholds come from configuration; the defaults and their sources are below.

use crate::company::{CompanyNumber, CompanyPrefix};
use crate::money::Money;
use crate::region::Region;
use crate::sic::SicCode;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Thresholds of the rules. Defaults:
/// - headcount < 250 and (turnover ≤ £54m or balance sheet ≤ £27m): Companies Act 2006
///   s.465 medium-company limits for financial years from 6 April 2025;
/// - Minimal Financial Assistance ≤ £315,000 over the current and two previous financial
///   years, this voucher included: Subsidy Control Act 2022 ss.36–37;
/// - company numbers with an overseas prefix are not funded: `FC`, `SF`, `NF` (overseas
///   companies registered under Part 34 of the Companies Act 2006, `SF` and `NF` before 1
///   October 2009 in Scotland and Northern Ireland) and `OE` (Register of Overseas Entities,
///   Economic Crime (Transparency and Enforcement) Act 2022), after Companies House's list
///   of company number prefixes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EligibilityRules {
    /// Headcount must be strictly below this.
    pub max_employees_exclusive: u32,
    pub max_turnover: Money,
    pub max_balance_sheet_total: Money,
    pub mfa_limit: Money,
    /// Month (1–12) on which the financial year used for the MFA window starts (UK: April).
    pub financial_year_start_month: u32,
    pub eligible_regions: Vec<Region>,
    /// SIC 2007 divisions (first two digits) the programme does not fund.
    pub excluded_sic_divisions: Vec<u8>,
    /// Minimum days the company must have been trading at the date of application.
    pub min_trading_days: i64,
    /// Company number prefixes of registrations the programme does not fund, each with what
    /// it means ("an overseas company"), quoted in the reason.
    pub excluded_company_prefixes: Vec<ExcludedCompanyPrefix>,
    /// A challenge entry as a startup must show incorporation within this many years.
    pub startup_max_age_years: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludedCompanyPrefix {
    pub prefix: CompanyPrefix,
    /// What a number with this prefix is, as it reads after "is": "an overseas company".
    pub meaning: String,
}

impl ExcludedCompanyPrefix {
    fn new(prefix: &str, meaning: &str) -> Option<ExcludedCompanyPrefix> {
        Some(ExcludedCompanyPrefix {
            prefix: CompanyPrefix::parse(prefix).ok()?,
            meaning: meaning.to_string(),
        })
    }

    /// The default exclusions: registrations of companies incorporated outside the UK.
    pub fn defaults() -> Vec<ExcludedCompanyPrefix> {
        [
            ("FC", "an overseas company"),
            ("SF", "an overseas company registered in Scotland"),
            ("NF", "an overseas company registered in Northern Ireland"),
            ("OE", "an overseas entity"),
        ]
        .into_iter()
        .filter_map(|(prefix, meaning)| ExcludedCompanyPrefix::new(prefix, meaning))
        .collect()
    }
}

impl Default for EligibilityRules {
    fn default() -> Self {
        EligibilityRules {
            max_employees_exclusive: 250,
            max_turnover: Money::from_micros(54_000_000 * 1_000_000).unwrap_or(Money::ZERO),
            max_balance_sheet_total: Money::from_micros(27_000_000 * 1_000_000)
                .unwrap_or(Money::ZERO),
            mfa_limit: Money::from_micros(315_000 * 1_000_000).unwrap_or(Money::ZERO),
            financial_year_start_month: 4,
            eligible_regions: Region::ALL.to_vec(),
            excluded_sic_divisions: Vec::new(),
            min_trading_days: 0,
            excluded_company_prefixes: ExcludedCompanyPrefix::defaults(),
            startup_max_age_years: 5,
        }
    }
}

/// Public subsidy the company received, counted towards its Minimal Financial Assistance
/// limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubsidyDeclaration {
    pub provider: String,
    pub amount: Money,
    /// Not in the future.
    pub awarded_on: NaiveDate,
}

/// What the applicant declared, already parsed.
#[derive(Debug, Clone)]
pub struct ApplicationFacts {
    pub company_number: CompanyNumber,
    pub employees: u32,
    pub annual_turnover: Money,
    pub balance_sheet_total: Money,
    pub region: Region,
    pub sic_code: SicCode,
    pub trading_since: NaiveDate,
    pub subsidy_declarations: Vec<SubsidyDeclaration>,
    /// The voucher this application would receive; MFA counts it.
    pub voucher_amount: Money,
}

/// One eligibility rule's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleResult {
    /// company_type, sme_headcount, sme_financial, subsidy_control_mfa, region, sector or
    /// trading.
    pub rule: String,
    pub passed: bool,
    /// Human-readable explanation.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub eligible: bool,
    pub checks: Vec<RuleResult>,
}

/// A rule's name in plain English, for people ("sme_headcount" → "Size: number of employees").
pub fn rule_title(rule: &str) -> &'static str {
    match rule {
        "company_type" => "Type of company",
        "region" => "Where the business is based",
        "sector" => "Sector",
        "sme_financial" => "Size: turnover and balance sheet",
        "sme_headcount" => "Size: number of employees",
        "subsidy_control_mfa" => "Subsidy control: Minimal Financial Assistance",
        "trading" => "How long the business has traded",
        _ => "Other rule",
    }
}

fn result(rule: &str, passed: bool, reason: String) -> RuleResult {
    RuleResult {
        rule: rule.to_string(),
        passed,
        reason,
    }
}

/// "1 day", "2 days".
fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

fn employees(n: u32) -> String {
    if n == 1 {
        "1 employee".to_string()
    } else {
        format!("{n} employees")
    }
}

/// First day of the financial year containing `day`.
pub fn financial_year_start(day: NaiveDate, start_month: u32) -> NaiveDate {
    let month = start_month.clamp(1, 12);
    let year = if day.month() >= month {
        day.year()
    } else {
        day.year() - 1
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(day)
}

/// An award of Minimal Financial Assistance checked against the limit: what the organisation
/// received in the window (declared and from this programme), the award, and the verdict with a
/// reason quoting the figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaCheck {
    pub window_start: NaiveDate,
    pub received_micros: i64,
    pub award_micros: i64,
    pub limit_micros: i64,
    pub passed: bool,
    pub reason: String,
}

impl EligibilityRules {
    /// The first day of the MFA window containing `today`: the start of the financial year two
    /// before the current one.
    pub fn mfa_window_start(&self, today: NaiveDate) -> NaiveDate {
        let fy = financial_year_start(today, self.financial_year_start_month);
        NaiveDate::from_ymd_opt(fy.year() - 2, fy.month(), 1).unwrap_or(fy)
    }

    /// The MFA rule for any award (voucher, bonus, challenge award): what was received since
    /// `window_start` plus the award must be within the limit.
    pub fn check_mfa_award(
        &self,
        window_start: NaiveDate,
        received_micros: i64,
        award_micros: i64,
    ) -> MfaCheck {
        // Written as the application's rule writes it: UK date, pounds with separators.
        let fmt = crate::money::format_pounds_display;
        let limit_micros = self.mfa_limit.micros();
        let total = received_micros.saturating_add(award_micros);
        let passed = total <= limit_micros;
        let reason = format!(
            "Minimal Financial Assistance since {}: {} received plus this award {} {} {}",
            window_start.format("%-d %B %Y"),
            fmt(received_micros),
            fmt(award_micros),
            if passed { "is within" } else { "exceeds" },
            fmt(limit_micros)
        );
        MfaCheck {
            window_start,
            received_micros,
            award_micros,
            limit_micros,
            passed,
            reason,
        }
    }

    /// The start of the three-financial-year MFA window and the MFA declared within it.
    fn prior_mfa(&self, facts: &ApplicationFacts, today: NaiveDate) -> (NaiveDate, i64) {
        let window_start = self.mfa_window_start(today);
        let prior_micros: i64 = facts
            .subsidy_declarations
            .iter()
            .filter(|d| d.awarded_on >= window_start && d.awarded_on <= today)
            .map(|d| d.amount.micros())
            .sum();
        (window_start, prior_micros)
    }

    /// How much more Minimal Financial Assistance the organisation may receive now, in micros
    /// (never negative): the limit less what it declared within the window.
    pub fn mfa_headroom(&self, facts: &ApplicationFacts, today: NaiveDate) -> i64 {
        (self.mfa_limit.micros() - self.prior_mfa(facts, today).1).max(0)
    }

    pub fn evaluate(&self, facts: &ApplicationFacts, today: NaiveDate) -> Eligibility {
        let checks = vec![
            self.headcount(facts),
            self.financial(facts),
            self.mfa(facts, today),
            self.region(facts),
            self.sector(facts),
            self.trading(facts, today),
            self.company_type(facts),
        ];
        Eligibility {
            eligible: checks.iter().all(|c| c.passed),
            checks,
        }
    }

    fn headcount(&self, facts: &ApplicationFacts) -> RuleResult {
        let max = self.max_employees_exclusive;
        if facts.employees < max {
            result(
                "sme_headcount",
                true,
                format!("{} is below the limit of {max}", employees(facts.employees)),
            )
        } else {
            result(
                "sme_headcount",
                false,
                format!(
                    "{}: an SME has fewer than {max}",
                    employees(facts.employees)
                ),
            )
        }
    }

    fn financial(&self, facts: &ApplicationFacts) -> RuleResult {
        let turnover_ok = facts.annual_turnover <= self.max_turnover;
        let balance_ok = facts.balance_sheet_total <= self.max_balance_sheet_total;
        if turnover_ok {
            result(
                "sme_financial",
                true,
                format!(
                    "turnover £{} is within £{}",
                    facts.annual_turnover, self.max_turnover
                ),
            )
        } else if balance_ok {
            result(
                "sme_financial",
                true,
                format!(
                    "turnover £{} exceeds £{} but balance sheet total £{} is within £{}",
                    facts.annual_turnover,
                    self.max_turnover,
                    facts.balance_sheet_total,
                    self.max_balance_sheet_total
                ),
            )
        } else {
            result(
                "sme_financial",
                false,
                format!(
                    "turnover £{} exceeds £{} and balance sheet total £{} exceeds £{}",
                    facts.annual_turnover,
                    self.max_turnover,
                    facts.balance_sheet_total,
                    self.max_balance_sheet_total
                ),
            )
        }
    }

    fn mfa(&self, facts: &ApplicationFacts, today: NaiveDate) -> RuleResult {
        let (window_start, prior_micros) = self.prior_mfa(facts, today);
        let total_micros = prior_micros + facts.voucher_amount.micros();
        let passed = total_micros <= self.mfa_limit.micros();
        result(
            "subsidy_control_mfa",
            passed,
            format!(
                // Checked at application against the standard voucher and at approval against
                // the amount granted: "a voucher of", not "this voucher", holds for both.
                "Minimal Financial Assistance since {}: {} declared plus a voucher of {} {} {}",
                window_start.format("%-d %B %Y"),
                crate::money::format_pounds_display(prior_micros),
                crate::money::format_pounds_display(facts.voucher_amount.micros()),
                if passed { "is within" } else { "exceeds" },
                crate::money::format_pounds_display(self.mfa_limit.micros())
            ),
        )
    }

    fn region(&self, facts: &ApplicationFacts) -> RuleResult {
        let region = facts.region;
        let passed = self.eligible_regions.contains(&region);
        result(
            "region",
            passed,
            format!(
                "{} ({}) is {} participating region",
                region.name(),
                region.itl1_code(),
                if passed { "a" } else { "not a" }
            ),
        )
    }

    fn sector(&self, facts: &ApplicationFacts) -> RuleResult {
        let sic = &facts.sic_code;
        let division = sic.division();
        let passed = !self.excluded_sic_divisions.contains(&division);
        result(
            "sector",
            passed,
            format!(
                "SIC {} ({}) is in division {division:02}, which the programme {}",
                sic.as_str(),
                sic.description(),
                if passed { "funds" } else { "does not fund" }
            ),
        )
    }

    fn trading(&self, facts: &ApplicationFacts, today: NaiveDate) -> RuleResult {
        let since = facts.trading_since;
        let trading_days = (today - since).num_days();
        let min = self.min_trading_days;
        if trading_days < 0 {
            result(
                "trading",
                false,
                format!(
                    "trading since {since} is in the future: the company must already be trading"
                ),
            )
        } else if min <= 0 {
            result(
                "trading",
                true,
                format!("trading since {since}; no minimum trading period is required"),
            )
        } else if trading_days >= min {
            result(
                "trading",
                true,
                format!(
                    "trading since {since}: {}, at least the {} required",
                    days(trading_days),
                    days(min)
                ),
            )
        } else {
            result(
                "trading",
                false,
                format!(
                    "trading since {since}: {}, fewer than the {} required",
                    days(trading_days),
                    days(min)
                ),
            )
        }
    }

    fn company_type(&self, facts: &ApplicationFacts) -> RuleResult {
        let number = &facts.company_number;
        let excluded = number.prefix().and_then(|prefix| {
            self.excluded_company_prefixes
                .iter()
                .find(|e| e.prefix == prefix)
        });
        match excluded {
            Some(e) => result(
                "company_type",
                false,
                format!(
                    "company number {number} is {} (prefix {}), which the programme does not fund",
                    e.meaning, e.prefix
                ),
            ),
            None if self.excluded_company_prefixes.is_empty() => result(
                "company_type",
                true,
                format!("company number {number}: no kind of registration is excluded"),
            ),
            None => result(
                "company_type",
                true,
                format!(
                    "company number {number} has none of the excluded prefixes ({})",
                    self.excluded_company_prefixes
                        .iter()
                        .map(|e| e.prefix.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pounds(p: i64) -> Money {
        Money::from_major(p).unwrap()
    }

    fn facts() -> ApplicationFacts {
        ApplicationFacts {
            company_number: CompanyNumber::parse("01234567").unwrap(),
            employees: 12,
            annual_turnover: pounds(900_000),
            balance_sheet_total: pounds(300_000),
            region: Region::NorthEast,
            sic_code: SicCode::parse("62012").unwrap(),
            trading_since: NaiveDate::from_ymd_opt(2019, 3, 1).unwrap(),
            subsidy_declarations: vec![],
            voucher_amount: pounds(5_000),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    #[test]
    fn every_rule_has_a_plain_english_name() {
        let e = EligibilityRules::default().evaluate(&facts(), today());
        assert_eq!(e.checks.len(), 7);
        for c in &e.checks {
            assert_ne!(rule_title(&c.rule), "Other rule", "{}", c.rule);
        }
        assert_eq!(rule_title("sme_headcount"), "Size: number of employees");
    }

    fn check(rules: &EligibilityRules, f: &ApplicationFacts, rule: &str) -> (bool, String) {
        let e = rules.evaluate(f, today());
        let c = e.checks.iter().find(|c| c.rule == rule).unwrap();
        (c.passed, c.reason.clone())
    }

    fn default_check(f: &ApplicationFacts, rule: &str) -> (bool, String) {
        check(&EligibilityRules::default(), f, rule)
    }

    #[test]
    fn a_small_company_passes_every_rule_in_order() {
        let e = EligibilityRules::default().evaluate(&facts(), today());
        assert!(e.eligible, "{e:?}");
        let rules: Vec<&str> = e.checks.iter().map(|c| c.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "sme_headcount",
                "sme_financial",
                "subsidy_control_mfa",
                "region",
                "sector",
                "trading",
                "company_type"
            ]
        );
    }

    #[test]
    fn headcount_reasons() {
        let mut f = facts();
        assert_eq!(
            default_check(&f, "sme_headcount"),
            (true, "12 employees is below the limit of 250".into())
        );
        f.employees = 1;
        assert_eq!(
            default_check(&f, "sme_headcount"),
            (true, "1 employee is below the limit of 250".into())
        );
        f.employees = 249;
        assert!(default_check(&f, "sme_headcount").0);
        f.employees = 250;
        assert_eq!(
            default_check(&f, "sme_headcount"),
            (false, "250 employees: an SME has fewer than 250".into())
        );
    }

    #[test]
    fn financial_reasons_and_either_limit_is_enough() {
        let mut f = facts();
        assert_eq!(
            default_check(&f, "sme_financial"),
            (true, "turnover £900000.00 is within £54000000.00".into())
        );
        f.annual_turnover = pounds(60_000_000);
        f.balance_sheet_total = pounds(27_000_000);
        assert_eq!(
            default_check(&f, "sme_financial"),
            (
                true,
                "turnover £60000000.00 exceeds £54000000.00 but balance sheet total £27000000.00 is within £27000000.00".into()
            )
        );
        f.balance_sheet_total = pounds(27_000_001);
        assert_eq!(
            default_check(&f, "sme_financial"),
            (
                false,
                "turnover £60000000.00 exceeds £54000000.00 and balance sheet total £27000001.00 exceeds £27000000.00".into()
            )
        );
    }

    #[test]
    fn mfa_counts_three_financial_years_and_this_voucher() {
        let mut f = facts();
        // 1 April 2024 is the start of the window on 27 Nov 2026 (FY 2026/27 and two before).
        f.subsidy_declarations = vec![
            SubsidyDeclaration {
                provider: "Innovate UK".into(),
                amount: pounds(310_000),
                awarded_on: NaiveDate::from_ymd_opt(2024, 4, 1).unwrap(),
            },
            SubsidyDeclaration {
                provider: "Old grant".into(),
                amount: pounds(100_000),
                awarded_on: NaiveDate::from_ymd_opt(2024, 3, 31).unwrap(),
            },
        ];
        f.voucher_amount = pounds(5_000);
        assert_eq!(
            default_check(&f, "subsidy_control_mfa"),
            (
                true,
                "Minimal Financial Assistance since 1 April 2024: £310,000.00 declared plus a voucher of £5,000.00 is within £315,000.00".into()
            )
        );
        f.voucher_amount = Money::from_micros(pounds(5_000).micros() + 1).unwrap();
        assert_eq!(
            default_check(&f, "subsidy_control_mfa"),
            (
                false,
                "Minimal Financial Assistance since 1 April 2024: £310,000.00 declared plus a voucher of £5,000.00 exceeds £315,000.00".into()
            )
        );
    }

    #[test]
    fn region_reasons_name_the_region_and_its_code() {
        let mut f = facts();
        f.region = Region::Scotland;
        assert_eq!(
            default_check(&f, "region"),
            (true, "Scotland (TLM) is a participating region".into())
        );
        let wales_only = EligibilityRules {
            eligible_regions: vec![Region::Wales],
            ..EligibilityRules::default()
        };
        assert_eq!(
            check(&wales_only, &f, "region"),
            (false, "Scotland (TLM) is not a participating region".into())
        );
    }

    #[test]
    fn sector_reasons_describe_the_code() {
        let f = facts();
        assert_eq!(
            default_check(&f, "sector"),
            (
                true,
                "SIC 62012 (Business and domestic software development) is in division 62, which the programme funds".into()
            )
        );
        let no_software = EligibilityRules {
            excluded_sic_divisions: vec![62],
            ..EligibilityRules::default()
        };
        assert_eq!(
            check(&no_software, &f, "sector"),
            (
                false,
                "SIC 62012 (Business and domestic software development) is in division 62, which the programme does not fund".into()
            )
        );
        let mut farm = facts();
        farm.sic_code = SicCode::parse("01110").unwrap();
        assert!(check(&no_software, &farm, "sector")
            .1
            .contains("is in division 01, which the programme funds"));
    }

    #[test]
    fn trading_reasons_for_every_threshold() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let mut f = facts();
        assert_eq!(
            default_check(&f, "trading"),
            (
                true,
                "trading since 2019-03-01; no minimum trading period is required".into()
            )
        );
        f.trading_since = today();
        assert!(
            default_check(&f, "trading").0,
            "trading from today is enough"
        );
        f.trading_since = d(2026, 11, 28);
        assert_eq!(
            default_check(&f, "trading"),
            (
                false,
                "trading since 2026-11-28 is in the future: the company must already be trading"
                    .into()
            )
        );

        let a_year = EligibilityRules {
            min_trading_days: 365,
            ..EligibilityRules::default()
        };
        assert_eq!(
            check(&a_year, &f, "trading"),
            (
                false,
                "trading since 2026-11-28 is in the future: the company must already be trading"
                    .into()
            )
        );
        f.trading_since = d(2025, 11, 27);
        assert_eq!(
            check(&a_year, &f, "trading"),
            (
                true,
                "trading since 2025-11-27: 365 days, at least the 365 days required".into()
            )
        );
        f.trading_since = d(2026, 11, 26);
        assert_eq!(
            check(&a_year, &f, "trading"),
            (
                false,
                "trading since 2026-11-26: 1 day, fewer than the 365 days required".into()
            )
        );
        let a_day = EligibilityRules {
            min_trading_days: 1,
            ..EligibilityRules::default()
        };
        assert_eq!(
            check(&a_day, &f, "trading"),
            (
                true,
                "trading since 2026-11-26: 1 day, at least the 1 day required".into()
            )
        );
        f.trading_since = today();
        assert_eq!(
            check(&a_day, &f, "trading"),
            (
                false,
                "trading since 2026-11-27: 0 days, fewer than the 1 day required".into()
            )
        );
    }

    #[test]
    fn company_type_reasons_name_the_prefix_and_its_meaning() {
        let mut f = facts();
        assert_eq!(
            default_check(&f, "company_type"),
            (
                true,
                "company number 01234567 has none of the excluded prefixes (FC, SF, NF, OE)".into()
            )
        );
        f.company_number = CompanyNumber::parse("SC123456").unwrap();
        assert!(default_check(&f, "company_type").0);
        for (number, meaning) in [
            ("FC123456", "an overseas company"),
            ("SF123456", "an overseas company registered in Scotland"),
            (
                "NF123456",
                "an overseas company registered in Northern Ireland",
            ),
            ("OE123456", "an overseas entity"),
        ] {
            f.company_number = CompanyNumber::parse(number).unwrap();
            let (passed, reason) = default_check(&f, "company_type");
            assert!(!passed, "{number}");
            assert_eq!(
                reason,
                format!(
                    "company number {number} is {meaning} (prefix {}), which the programme does not fund",
                    &number[..2]
                )
            );
        }
        let none = EligibilityRules {
            excluded_company_prefixes: vec![],
            ..EligibilityRules::default()
        };
        f.company_number = CompanyNumber::parse("FC123456").unwrap();
        assert_eq!(
            check(&none, &f, "company_type"),
            (
                true,
                "company number FC123456: no kind of registration is excluded".into()
            )
        );
    }

    #[test]
    fn configured_prefixes_and_regions_are_read_from_codes_and_names() {
        let rules: EligibilityRules = serde_json::from_value(serde_json::json!({
            "eligible_regions": ["TLM", "wales"],
            "excluded_company_prefixes": [{"prefix": "FC", "meaning": "an overseas company"}]
        }))
        .unwrap();
        assert_eq!(rules.eligible_regions, [Region::Scotland, Region::Wales]);
        assert_eq!(rules.excluded_company_prefixes.len(), 1);
        assert!(
            serde_json::from_value::<EligibilityRules>(serde_json::json!({
                "excluded_company_prefixes": [{"prefix": "fc1", "meaning": "x"}]
            }))
            .is_err()
        );
    }

    #[test]
    fn financial_year_starts_in_april() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(financial_year_start(d(2026, 3, 31), 4), d(2025, 4, 1));
        assert_eq!(financial_year_start(d(2026, 4, 1), 4), d(2026, 4, 1));
    }

    #[test]
    fn an_award_is_checked_against_the_limit_with_what_was_received() {
        let rules = EligibilityRules::default();
        let start = rules.mfa_window_start(today());
        assert_eq!(start, NaiveDate::from_ymd_opt(2024, 4, 1).unwrap());
        // £305,000 declared and a £5,000 voucher: a £10,000 award passes the limit.
        let received = pounds(310_000).micros();
        let refused = rules.check_mfa_award(start, received, pounds(10_000).micros());
        assert!(!refused.passed);
        assert!(
            refused.reason
                == "Minimal Financial Assistance since 1 April 2024: £310,000.00 received plus this award £10,000.00 exceeds £315,000.00",
            "{}",
            refused.reason
        );
        let paid = rules.check_mfa_award(start, received, pounds(5_000).micros());
        assert!(paid.passed, "{}", paid.reason);
        assert!(
            !rules
                .check_mfa_award(start, received, pounds(5_000).micros() + 1)
                .passed
        );
    }
}
