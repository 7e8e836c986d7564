//! Ledger rules after TigerBeetle: accounts keep posted and pending debit and credit totals;
//! flags forbid an account's debits exceeding its credits (money it holds) or the reverse.
//! The store applies these rules inside a transaction and asserts them again after writing.

use serde::{Deserialize, Serialize};

pub const DEBITS_MUST_NOT_EXCEED_CREDITS: i32 = 1;
pub const CREDITS_MUST_NOT_EXCEED_DEBITS: i32 = 2;
/// The unit of consulting-hour accounts: minutes.
pub const MINUTES: &str = "MIN";

/// What an account is for. Stored as its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum AccountKind {
    /// Where programme money comes from (the Treasury, a grant): may go negative.
    FundingSource,
    /// Money the programme holds and has not yet granted.
    ProgrammeFund,
    /// An SME's voucher credit.
    Voucher,
    /// Credit consumed through the proxy.
    Usage,
    /// Cost that exceeded a hold (should stay zero; kept visible rather than hidden).
    OverrunLoss,
    /// Voucher remainders that expired.
    Forfeited,
    /// Where free test allowances come from (not programme money).
    TestFunding,
    /// An organisation's free allowance for test-mode keys.
    TestAllowance,
    /// A challenge's award pool, set aside from the programme fund.
    ChallengeFund,
    /// A budget line: part of the programme fund for a year and, maybe, a target group.
    BudgetLine,
    /// Where consulting-hour allowances come from (minutes, not money).
    ConsultingSource,
    /// A voucher's consulting minutes.
    ConsultingAllowance,
    /// Consulting minutes used in sessions.
    ConsultingUsed,
    /// Money on its way from Stripe: debited when an SME's payment is credited, so the
    /// programme's ledger shows where every paid pound came from.
    StripeClearing,
    /// What an organisation paid as its co-funding share.
    Contribution,
    /// Credit an organisation bought: spent after its voucher, and not expiring with it.
    PurchasedCredit,
}

impl AccountKind {
    /// The unit an account counts in: consulting hours are minutes (`MIN`), never money.
    pub fn unit(self) -> &'static str {
        match self {
            AccountKind::ConsultingSource
            | AccountKind::ConsultingAllowance
            | AccountKind::ConsultingUsed => MINUTES,
            _ => "GBP",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::FundingSource => "funding_source",
            AccountKind::ProgrammeFund => "programme_fund",
            AccountKind::Voucher => "voucher",
            AccountKind::Usage => "usage",
            AccountKind::OverrunLoss => "overrun_loss",
            AccountKind::Forfeited => "forfeited",
            AccountKind::TestFunding => "test_funding",
            AccountKind::TestAllowance => "test_allowance",
            AccountKind::ChallengeFund => "challenge_fund",
            AccountKind::BudgetLine => "budget_line",
            AccountKind::ConsultingSource => "consulting_source",
            AccountKind::ConsultingAllowance => "consulting_allowance",
            AccountKind::ConsultingUsed => "consulting_used",
            AccountKind::StripeClearing => "stripe_clearing",
            AccountKind::Contribution => "contribution",
            AccountKind::PurchasedCredit => "purchased_credit",
        }
    }

    /// Accounts that hold money must never be overdrawn.
    pub fn flags(self) -> i32 {
        match self {
            AccountKind::ProgrammeFund
            | AccountKind::Voucher
            | AccountKind::TestAllowance
            | AccountKind::ChallengeFund
            | AccountKind::BudgetLine
            | AccountKind::ConsultingAllowance
            | AccountKind::Contribution
            | AccountKind::PurchasedCredit => DEBITS_MUST_NOT_EXCEED_CREDITS,
            AccountKind::StripeClearing => 0,
            AccountKind::ConsultingSource | AccountKind::ConsultingUsed => 0,
            AccountKind::TestFunding => 0,
            AccountKind::FundingSource | AccountKind::OverrunLoss => 0,
            AccountKind::Usage | AccountKind::Forfeited => 0,
        }
    }
}

impl AccountKind {
    /// Every kind, in declaration order.
    pub const ALL: [AccountKind; 16] = [
        AccountKind::FundingSource,
        AccountKind::ProgrammeFund,
        AccountKind::Voucher,
        AccountKind::Usage,
        AccountKind::OverrunLoss,
        AccountKind::Forfeited,
        AccountKind::TestFunding,
        AccountKind::TestAllowance,
        AccountKind::ChallengeFund,
        AccountKind::BudgetLine,
        AccountKind::ConsultingSource,
        AccountKind::ConsultingAllowance,
        AccountKind::ConsultingUsed,
        AccountKind::StripeClearing,
        AccountKind::Contribution,
        AccountKind::PurchasedCredit,
    ];
}

impl std::str::FromStr for AccountKind {
    type Err = String;
    fn from_str(s: &str) -> Result<AccountKind, String> {
        AccountKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown AccountKind {s:?}"))
    }
}

crate::text_sql!(AccountKind, |text: String| text
    .parse::<AccountKind>()
    .map_err(Into::into));

/// Why money moved. Stored as its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum TransferCode {
    Deposit,
    VoucherGrant,
    Usage,
    UsageOverrun,
    Expiry,
    TestAllowance,
    Test,
    /// Programme fund → a challenge's award pool.
    ChallengePool,
    /// Challenge pool → a winner's voucher.
    ChallengeAward,
    /// What a challenge did not award, back to the programme fund.
    ChallengeReturn,
    /// Money moved into, out of or between budget lines.
    BudgetMove,
    /// Consulting minutes granted with a voucher.
    ConsultingGrant,
    /// Consulting minutes held for, then used by, a session.
    ConsultingSession,
    /// A milestone bonus granted by an incentive rule.
    IncentiveMilestone,
    /// An SME's co-funding share, paid through Stripe.
    Contribution,
    /// Credit an SME bought through Stripe.
    TopUp,
    /// A payment refunded through Stripe: what is left of its credit goes back.
    Refund,
}

impl TransferCode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferCode::Deposit => "deposit",
            TransferCode::VoucherGrant => "voucher_grant",
            TransferCode::Usage => "usage",
            TransferCode::UsageOverrun => "usage_overrun",
            TransferCode::Expiry => "expiry",
            TransferCode::TestAllowance => "test_allowance",
            TransferCode::Test => "test",
            TransferCode::ChallengePool => "challenge_pool",
            TransferCode::ChallengeAward => "challenge_award",
            TransferCode::ChallengeReturn => "challenge_return",
            TransferCode::BudgetMove => "budget_move",
            TransferCode::ConsultingGrant => "consulting_grant",
            TransferCode::ConsultingSession => "consulting_session",
            TransferCode::IncentiveMilestone => "incentive_milestone",
            TransferCode::Contribution => "contribution",
            TransferCode::TopUp => "top_up",
            TransferCode::Refund => "refund",
        }
    }
}

impl TransferCode {
    /// Every code, in declaration order.
    pub const ALL: [TransferCode; 17] = [
        TransferCode::Deposit,
        TransferCode::VoucherGrant,
        TransferCode::Usage,
        TransferCode::UsageOverrun,
        TransferCode::Expiry,
        TransferCode::TestAllowance,
        TransferCode::Test,
        TransferCode::ChallengePool,
        TransferCode::ChallengeAward,
        TransferCode::ChallengeReturn,
        TransferCode::BudgetMove,
        TransferCode::ConsultingGrant,
        TransferCode::ConsultingSession,
        TransferCode::IncentiveMilestone,
        TransferCode::Contribution,
        TransferCode::TopUp,
        TransferCode::Refund,
    ];
}

impl std::str::FromStr for TransferCode {
    type Err = String;
    fn from_str(s: &str) -> Result<TransferCode, String> {
        TransferCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown TransferCode {s:?}"))
    }
}

crate::text_sql!(TransferCode, |text: String| text
    .parse::<TransferCode>()
    .map_err(Into::into));

crate::text_enum! {
    /// What a transfer does to its accounts.
    pub enum TransferKind {
        /// Moves the amount at once.
        Single = "single",
        /// A hold: the amount is pending until the hold is posted or voided.
        Pending = "pending",
        /// Posts part or all of a hold (its `pending_id`) and releases the rest.
        Post = "post",
        /// Releases a whole hold.
        Void = "void",
    }
}

/// An account's four totals, all non-negative micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
}

impl Totals {
    /// What a credit-normal account can still spend: posted credits less everything debited
    /// or held. Pending credits are not counted: they may still be voided.
    pub fn available(&self) -> i64 {
        self.credits_posted - self.debits_posted - self.debits_pending
    }

    /// Whether the totals respect the account's flags.
    pub fn respects(&self, flags: i32) -> bool {
        let non_negative = self.debits_pending >= 0
            && self.debits_posted >= 0
            && self.credits_pending >= 0
            && self.credits_posted >= 0;
        let debits_ok = flags & DEBITS_MUST_NOT_EXCEED_CREDITS == 0
            || self.debits_posted + self.debits_pending <= self.credits_posted;
        let credits_ok = flags & CREDITS_MUST_NOT_EXCEED_DEBITS == 0
            || self.credits_posted + self.credits_pending <= self.debits_posted;
        non_negative && debits_ok && credits_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voucher_may_not_hold_or_spend_more_than_it_was_granted() {
        let t = Totals {
            credits_posted: 100,
            debits_posted: 60,
            debits_pending: 40,
            credits_pending: 0,
        };
        assert_eq!(t.available(), 0);
        assert!(t.respects(AccountKind::Voucher.flags()));
        let over = Totals {
            debits_pending: 41,
            ..t
        };
        assert!(!over.respects(AccountKind::Voucher.flags()));
        assert!(over.respects(AccountKind::FundingSource.flags()));
    }
}
