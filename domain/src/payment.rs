//! Payments from SMEs through Stripe: co-funding contributions and top-ups. Stripe counts in
//! the currency's minor unit (pence); the ledger counts in micro-units. The conversions here
//! are the only place the two meet, and neither rounds silently.

use crate::money::{MoneyError, MICROS_PER_UNIT};
use crate::Money;
use serde::Serialize;

/// Micro-units in one penny.
pub const MICROS_PER_PENNY: i64 = MICROS_PER_UNIT / 100;
/// Stripe's largest amount for one Checkout Session line in GBP (£999,999.99).
pub const STRIPE_MAX_PENCE: i64 = 99_999_999;

/// An amount in pence, as Stripe takes and reports it: non-negative, at most Stripe's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pence(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PenceError {
    #[error("must be a whole number of pence")]
    NotWholePence,
    #[error("must not be negative")]
    Negative,
    #[error("must be at most £999,999.99 (Stripe's limit for one payment)")]
    TooLarge,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl Pence {
    pub fn new(pence: i64) -> Result<Pence, PenceError> {
        if pence < 0 {
            return Err(PenceError::Negative);
        }
        if pence > STRIPE_MAX_PENCE {
            return Err(PenceError::TooLarge);
        }
        Ok(Pence(pence))
    }

    /// The exact pence of `amount`; refused when it has a fraction of a penny, so a payment
    /// never charges other than what was shown.
    pub fn exact(amount: Money) -> Result<Pence, PenceError> {
        let micros = amount.micros();
        if micros % MICROS_PER_PENNY != 0 {
            return Err(PenceError::NotWholePence);
        }
        Pence::new(micros / MICROS_PER_PENNY)
    }

    /// `amount` rounded up to a whole penny: what the programme asks for when a share of a
    /// voucher has a fraction of a penny (the SME pays at most one penny more, never less).
    pub fn ceil(amount: Money) -> Result<Pence, PenceError> {
        let micros = amount.micros();
        Pence::new(micros.div_euclid(MICROS_PER_PENNY) + i64::from(micros % MICROS_PER_PENNY != 0))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The same amount in micro-units: always exact (a penny is 10,000 micros).
    pub fn to_money(self) -> Money {
        // Bounded by STRIPE_MAX_PENCE, far inside Money's range.
        Money::from_micros(self.0 * MICROS_PER_PENNY).unwrap_or(Money::ZERO)
    }
}

crate::text_enum! {
    /// What a payment pays for.
    pub enum PaymentKind {
        /// The SME's share of a co-funded voucher; the voucher activates once it is paid.
        Contribution = "contribution",
        /// Credit bought on top of the voucher; spent after it and not expiring with it.
        TopUp = "top_up",
    }
}

crate::text_enum! {
    /// How a payment became known to be paid.
    pub enum PaidVia {
        /// Stripe's webhook told the service.
        Webhook = "webhook",
        /// The reconciliation job asked Stripe.
        Reconciliation = "reconciliation",
    }
}

crate::text_enum! {
    /// What a Stripe event did to its payment.
    pub enum StripeEventOutcome {
        /// Paid: the credit or contribution was booked.
        Credited = "credited",
        /// Completed with a delayed method that has not cleared yet.
        Processing = "processing",
        /// The delayed method failed; the owner is told.
        Failed = "failed",
        /// The checkout session lapsed unpaid.
        Expired = "expired",
        /// A refund took back what it could of the payment's credit.
        RefundReversed = "refund_reversed",
        /// Part of a refund is held for requests in flight: answered 409, so Stripe delivers
        /// the event again; never recorded.
        RefundWaitingOnHolds = "refund_waiting_on_holds",
        /// Seen before: nothing changed.
        Duplicate = "duplicate",
        /// An event voucherd does not act on.
        Ignored = "ignored",
        /// It names no payment of ours.
        UnknownPayment = "unknown_payment",
        /// Paid other than asked: nothing was credited, and administrators look into it.
        AmountMismatch = "amount_mismatch",
        /// The payment was credited before.
        AlreadyPaid = "already_paid",
        /// The payment is no longer open.
        NotOpen = "not_open",
        /// The payment is neither open nor processing.
        NotPending = "not_pending",
        /// The refund was applied before.
        AlreadyRefunded = "already_refunded",
        /// It is about a checkout session the payment no longer uses.
        OtherSession = "other_session",
    }
}

/// The co-funding share of a programme, in whole percent (0 = no co-funding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CoFundingPercent(u8);

impl CoFundingPercent {
    pub fn new(percent: u32) -> Result<CoFundingPercent, String> {
        if percent > 99 {
            return Err(format!(
                "co_funding_percent must be between 0 and 99, not {percent}"
            ));
        }
        Ok(CoFundingPercent(percent as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The SME's share of a voucher of `granted`, rounded up to a whole penny; zero when the
    /// programme asks for none.
    pub fn share_of(self, granted: Money) -> Result<Pence, PenceError> {
        if self.0 == 0 {
            return Ok(Pence(0));
        }
        // Money is at most 10^15 micros and the percent below 100: no overflow in i128.
        let product = i128::from(granted.micros()) * i128::from(self.0);
        let micros = product / 100 + i128::from(product % 100 != 0);
        let micros = i64::try_from(micros).map_err(|_| PenceError::TooLarge)?;
        Pence::ceil(Money::from_micros(micros)?)
    }
}

/// The smallest and largest top-up an SME may buy at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpLimits {
    min: Pence,
    max: Pence,
}

impl TopUpLimits {
    /// Stripe refuses card payments under 30p in GBP; the minimum must respect that.
    pub fn new(min: Money, max: Money) -> Result<TopUpLimits, String> {
        let min = Pence::exact(min).map_err(|e| format!("top_up_min {e}"))?;
        let max = Pence::exact(max).map_err(|e| format!("top_up_max {e}"))?;
        if min.get() < 30 {
            return Err("top_up_min must be at least 0.30 (Stripe's smallest GBP charge)".into());
        }
        if max < min {
            return Err("top_up_max must be at least top_up_min".into());
        }
        Ok(TopUpLimits { min, max })
    }

    pub fn min(self) -> Money {
        self.min.to_money()
    }

    pub fn max(self) -> Money {
        self.max.to_money()
    }

    /// A top-up of `amount`, checked: whole pence, within the limits.
    pub fn check(self, amount: Money) -> Result<Pence, String> {
        let pence = Pence::exact(amount).map_err(|e| e.to_string())?;
        if pence < self.min || pence > self.max {
            return Err(format!(
                "must be between {} and {}",
                self.min.to_money(),
                self.max.to_money()
            ));
        }
        Ok(pence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn pence_and_micros_convert_exactly_at_the_edges() {
        assert_eq!(Pence::exact(m("0")).unwrap().get(), 0);
        assert_eq!(Pence::exact(m("0.01")).unwrap().get(), 1);
        assert_eq!(
            Pence::exact(m("999999.99")).unwrap().get(),
            STRIPE_MAX_PENCE
        );
        assert_eq!(Pence::exact(m("1000000.00")), Err(PenceError::TooLarge));
        assert_eq!(Pence::exact(m("0.001")), Err(PenceError::NotWholePence));
        assert_eq!(Pence::exact(m("12.345678")), Err(PenceError::NotWholePence));
        assert_eq!(Pence::new(-1), Err(PenceError::Negative));
        assert_eq!(Pence::new(1).unwrap().to_money().micros(), 10_000);
        assert_eq!(
            Pence::new(STRIPE_MAX_PENCE).unwrap().to_money().micros(),
            999_999_990_000
        );
        for p in [0, 1, 99, 100, 12_345, STRIPE_MAX_PENCE] {
            let pence = Pence::new(p).unwrap();
            assert_eq!(Pence::exact(pence.to_money()).unwrap(), pence);
        }
    }

    #[test]
    fn a_fraction_of_a_penny_rounds_up_only_when_asked() {
        assert_eq!(Pence::ceil(m("0.000001")).unwrap().get(), 1);
        assert_eq!(Pence::ceil(m("0.01")).unwrap().get(), 1);
        assert_eq!(Pence::ceil(m("0.010001")).unwrap().get(), 2);
        assert_eq!(Pence::ceil(m("0")).unwrap().get(), 0);
    }

    #[test]
    fn the_co_funding_share_is_the_percent_rounded_up_to_a_penny() {
        let thirty = CoFundingPercent::new(30).unwrap();
        assert_eq!(thirty.share_of(m("1000")).unwrap().get(), 30_000);
        // 30 % of £0.05 is 1.5p: the SME pays 2p.
        assert_eq!(thirty.share_of(m("0.05")).unwrap().get(), 2);
        assert_eq!(
            CoFundingPercent::default()
                .share_of(m("1000"))
                .unwrap()
                .get(),
            0
        );
        assert!(CoFundingPercent::new(100).is_err());
        assert_eq!(CoFundingPercent::new(99).unwrap().get(), 99);
    }

    #[test]
    fn top_ups_are_whole_pence_within_the_limits() {
        let limits = TopUpLimits::new(m("10"), m("5000")).unwrap();
        assert_eq!(limits.check(m("10")).unwrap().get(), 1_000);
        assert_eq!(limits.check(m("5000")).unwrap().get(), 500_000);
        assert!(limits.check(m("9.99")).is_err());
        assert!(limits.check(m("5000.01")).is_err());
        assert!(limits.check(m("10.005")).is_err());
        assert!(TopUpLimits::new(m("0.29"), m("10")).is_err());
        assert!(TopUpLimits::new(m("20"), m("10")).is_err());
    }
}
