//! Ledger rules after TigerBeetle: accounts keep posted and pending debit and credit totals;
//! flags forbid an account's debits exceeding its credits (money it holds) or the reverse.
//! The store applies these rules inside a transaction and asserts them again after writing.

use serde::{Deserialize, Serialize};

pub const DEBITS_MUST_NOT_EXCEED_CREDITS: i32 = 1;
pub const CREDITS_MUST_NOT_EXCEED_DEBITS: i32 = 2;
/// The unit of consulting-hour accounts: minutes.
pub const MINUTES: &str = "MIN";

crate::text_enum! {
    /// What an account is for. Stored as its identifier.
    pub enum AccountKind {
        /// Where programme money comes from (the Treasury, a grant): may go negative.
        FundingSource = "funding_source",
        /// Money the programme holds and has not yet granted.
        ProgrammeFund = "programme_fund",
        /// An SME's voucher credit.
        Voucher = "voucher",
        /// Credit consumed through the proxy.
        Usage = "usage",
        /// Cost that exceeded a hold (should stay zero; kept visible rather than hidden).
        OverrunLoss = "overrun_loss",
        /// Voucher remainders that expired.
        Forfeited = "forfeited",
        /// Where free test allowances come from (not programme money).
        TestFunding = "test_funding",
        /// An organisation's free allowance for test-mode keys.
        TestAllowance = "test_allowance",
        /// A challenge's award pool, set aside from the programme fund.
        ChallengeFund = "challenge_fund",
        /// A budget line: part of the programme fund for a year and, maybe, a target group.
        BudgetLine = "budget_line",
        /// Where consulting-hour allowances come from (minutes, not money).
        ConsultingSource = "consulting_source",
        /// A voucher's consulting minutes.
        ConsultingAllowance = "consulting_allowance",
        /// Consulting minutes used in sessions.
        ConsultingUsed = "consulting_used",
        /// Money on its way from Stripe: debited when an SME's payment is credited, so the
        /// programme's ledger shows where every paid pound came from.
        StripeClearing = "stripe_clearing",
        /// What an organisation paid as its co-funding share.
        Contribution = "contribution",
        /// Credit an organisation bought: spent after its voucher, and not expiring with it.
        PurchasedCredit = "purchased_credit",
    }
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

crate::text_enum! {
    /// Why money moved. Stored as its identifier.
    pub enum TransferCode {
        /// Money into the programme fund from its funding source.
        Deposit = "deposit",
        /// The programme fund (or a budget line) → a voucher.
        VoucherGrant = "voucher_grant",
        /// What a request through the proxy cost.
        Usage = "usage",
        /// Usage above a request's hold, booked to the overrun-loss account.
        UsageOverrun = "usage_overrun",
        /// A voucher's remainder, forfeited at its expiry.
        Expiry = "expiry",
        /// An organisation's free allowance for test-mode keys.
        TestAllowance = "test_allowance",
        /// What a request with a test-mode key cost, from that allowance.
        Test = "test",
        /// Programme fund → a challenge's award pool.
        ChallengePool = "challenge_pool",
        /// Challenge pool → a winner's voucher.
        ChallengeAward = "challenge_award",
        /// What a challenge did not award, back to the programme fund.
        ChallengeReturn = "challenge_return",
        /// Money moved into, out of or between budget lines.
        BudgetMove = "budget_move",
        /// Consulting minutes granted with a voucher.
        ConsultingGrant = "consulting_grant",
        /// Consulting minutes held for, then used by, a session.
        ConsultingSession = "consulting_session",
        /// A milestone bonus granted by an incentive rule.
        IncentiveMilestone = "incentive_milestone",
        /// An SME's co-funding share, paid through Stripe.
        Contribution = "contribution",
        /// Credit an SME bought through Stripe.
        TopUp = "top_up",
        /// A payment refunded through Stripe: what is left of its credit goes back.
        Refund = "refund",
    }
}

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
