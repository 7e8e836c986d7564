//! Eligibility of an applicant company, after docs/ARCHITECTURE.md, "Eligibility". Each rule yields passed/failed with a
//! human reason that is stored with the application and shown to administrators and the
//! applicant. Thresholds come from configuration; the defaults and their sources are below.

use crate::money::Money;
use crate::region::Region;
use crate::sic::SicCode;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Thresholds of the rules. Defaults:
/// - headcount < 250 and (turnover ≤ £54m or balance sheet ≤ £27m): Companies Act 2006
///   s.465 medium-company limits for financial years from 6 April 2025;
/// - Minimal Financial Assistance ≤ £315,000 over the current and two previous financial
///   years, this voucher included: Subsidy Control Act 2022 ss.36–37.
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyDeclaration {
    pub provider: String,
    pub amount: Money,
    pub awarded_on: NaiveDate,
}

/// What the applicant declared, already parsed.
#[derive(Debug, Clone)]
pub struct ApplicationFacts {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    pub rule: String,
    pub passed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub eligible: bool,
    pub checks: Vec<RuleResult>,
}

fn result(rule: &str, passed: bool, reason: String) -> RuleResult {
    RuleResult {
        rule: rule.to_string(),
        passed,
        reason,
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

impl EligibilityRules {
    /// The start of the three-financial-year MFA window and the MFA declared within it.
    fn prior_mfa(&self, facts: &ApplicationFacts, today: NaiveDate) -> (NaiveDate, i64) {
        let window_start = {
            let fy = financial_year_start(today, self.financial_year_start_month);
            NaiveDate::from_ymd_opt(fy.year() - 2, fy.month(), 1).unwrap_or(fy)
        };
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
        let mut checks = Vec::with_capacity(6);

        checks.push(if facts.employees < self.max_employees_exclusive {
            result(
                "sme_headcount",
                true,
                format!(
                    "{} employees is below the limit of {}",
                    facts.employees, self.max_employees_exclusive
                ),
            )
        } else {
            result(
                "sme_headcount",
                false,
                format!(
                    "{} employees: an SME has fewer than {}",
                    facts.employees, self.max_employees_exclusive
                ),
            )
        });

        let turnover_ok = facts.annual_turnover <= self.max_turnover;
        let balance_ok = facts.balance_sheet_total <= self.max_balance_sheet_total;
        checks.push(if turnover_ok || balance_ok {
            let which = if turnover_ok {
                format!(
                    "turnover £{} is within £{}",
                    facts.annual_turnover, self.max_turnover
                )
            } else {
                format!(
                    "balance sheet total £{} is within £{}",
                    facts.balance_sheet_total, self.max_balance_sheet_total
                )
            };
            result("sme_financial", true, which)
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
        });

        let (window_start, prior_micros) = self.prior_mfa(facts, today);
        let total_micros = prior_micros + facts.voucher_amount.micros();
        let fmt = crate::money::format_micros;
        checks.push(if total_micros <= self.mfa_limit.micros() {
            result(
                "subsidy_control_mfa",
                true,
                format!(
                    "Minimal Financial Assistance since {window_start}: £{} declared plus this voucher £{} is within £{}",
                    fmt(prior_micros), facts.voucher_amount, self.mfa_limit
                ),
            )
        } else {
            result(
                "subsidy_control_mfa",
                false,
                format!(
                    "Minimal Financial Assistance since {window_start}: £{} declared plus this voucher £{} exceeds £{}",
                    fmt(prior_micros), facts.voucher_amount, self.mfa_limit
                ),
            )
        });

        let region_ok = self.eligible_regions.contains(&facts.region);
        checks.push(result(
            "region",
            region_ok,
            if region_ok {
                format!("{} is a participating region", facts.region.as_str())
            } else {
                format!("{} is not a participating region", facts.region.as_str())
            },
        ));

        let division = facts.sic_code.division();
        let sector_ok = !self.excluded_sic_divisions.contains(&division);
        checks.push(result(
            "sector",
            sector_ok,
            if sector_ok {
                format!(
                    "SIC {} (section {}) is eligible",
                    facts.sic_code.as_str(),
                    facts.sic_code.section()
                )
            } else {
                format!("SIC division {division:02} is excluded from the programme")
            },
        ));

        let trading_days = (today - facts.trading_since).num_days();
        let trading_ok = trading_days >= 0 && trading_days >= self.min_trading_days;
        checks.push(result(
            "trading",
            trading_ok,
            if trading_ok {
                format!("trading since {}", facts.trading_since)
            } else {
                format!(
                    "trading since {}: at least {} days of trading are required",
                    facts.trading_since, self.min_trading_days
                )
            },
        ));

        Eligibility {
            eligible: checks.iter().all(|c| c.passed),
            checks,
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

    fn check<'a>(e: &'a Eligibility, rule: &str) -> &'a RuleResult {
        e.checks.iter().find(|c| c.rule == rule).unwrap()
    }

    #[test]
    fn a_small_company_passes_every_rule() {
        let e = EligibilityRules::default().evaluate(&facts(), today());
        assert!(e.eligible, "{e:?}");
        assert_eq!(e.checks.len(), 6);
    }

    #[test]
    fn two_hundred_and_fifty_employees_is_not_an_sme() {
        let mut f = facts();
        f.employees = 250;
        let e = EligibilityRules::default().evaluate(&f, today());
        assert!(!e.eligible);
        assert!(!check(&e, "sme_headcount").passed);
        f.employees = 249;
        assert!(EligibilityRules::default().evaluate(&f, today()).eligible);
    }

    #[test]
    fn either_financial_limit_is_enough() {
        let mut f = facts();
        f.annual_turnover = pounds(60_000_000);
        f.balance_sheet_total = pounds(27_000_000);
        assert!(
            check(
                &EligibilityRules::default().evaluate(&f, today()),
                "sme_financial"
            )
            .passed
        );
        f.balance_sheet_total = pounds(27_000_001);
        let e = EligibilityRules::default().evaluate(&f, today());
        assert!(!check(&e, "sme_financial").passed);
        assert!(check(&e, "sme_financial").reason.contains("54000000.00"));
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
        assert!(
            check(
                &EligibilityRules::default().evaluate(&f, today()),
                "subsidy_control_mfa"
            )
            .passed
        );
        f.voucher_amount = Money::from_micros(pounds(5_000).micros() + 1).unwrap();
        assert!(
            !check(
                &EligibilityRules::default().evaluate(&f, today()),
                "subsidy_control_mfa"
            )
            .passed
        );
    }

    #[test]
    fn excluded_sectors_regions_and_future_trading_dates_fail() {
        let rules = EligibilityRules {
            excluded_sic_divisions: vec![62],
            eligible_regions: vec![Region::Wales],
            ..EligibilityRules::default()
        };
        let mut f = facts();
        f.trading_since = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let e = rules.evaluate(&f, today());
        assert!(!check(&e, "sector").passed);
        assert!(!check(&e, "region").passed);
        assert!(!check(&e, "trading").passed);
    }

    #[test]
    fn financial_year_starts_in_april() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(financial_year_start(d(2026, 3, 31), 4), d(2025, 4, 1));
        assert_eq!(financial_year_start(d(2026, 4, 1), 4), d(2026, 4, 1));
    }
}
