//! Token pricing. Cost of a request = ceil(Σ tokens × price_micros_per_million / 1,000,000)
//! micros, computed in 128-bit integers so no realistic count can overflow.

use crate::money::{Money, MAX_AMOUNT_MICROS};
use serde::{Deserialize, Serialize};

/// Prices per million tokens, as money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRates {
    pub input_per_million: Money,
    pub cached_input_per_million: Money,
    pub output_per_million: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    /// Part of `prompt_tokens` served from the provider's cache.
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
}

const PER_MILLION: u128 = 1_000_000;

fn ceil_cost(weighted_micros_times_million: u128) -> Money {
    let micros = weighted_micros_times_million.div_ceil(PER_MILLION);
    let micros = i64::try_from(micros)
        .unwrap_or(MAX_AMOUNT_MICROS)
        .min(MAX_AMOUNT_MICROS);
    Money::from_micros(micros).unwrap_or(Money::ZERO)
}

impl PriceRates {
    pub fn cost(&self, usage: TokenUsage) -> Money {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let total = u128::from(uncached) * self.input_per_million.micros() as u128
            + u128::from(cached) * self.cached_input_per_million.micros() as u128
            + u128::from(usage.completion_tokens) * self.output_per_million.micros() as u128;
        ceil_cost(total)
    }

    /// The most a request can cost given bounds on its prompt and output tokens. Cached input
    /// is priced at whichever input rate is higher, so the bound holds whatever the cache does.
    pub fn max_cost(&self, max_prompt_tokens: u64, max_output_tokens: u64) -> Money {
        let input = self
            .input_per_million
            .micros()
            .max(self.cached_input_per_million.micros()) as u128;
        let total = u128::from(max_prompt_tokens) * input
            + u128::from(max_output_tokens) * self.output_per_million.micros() as u128;
        ceil_cost(total)
    }

    /// How many output tokens `budget` affords after the prompt's worst-case cost.
    pub fn affordable_output_tokens(&self, budget: Money, max_prompt_tokens: u64) -> u64 {
        let prompt_cost = self.max_cost(max_prompt_tokens, 0);
        let left = budget.saturating_sub(prompt_cost).micros() as u128;
        let out = self.output_per_million.micros() as u128;
        if out == 0 {
            return u64::MAX;
        }
        // floor(left × 1e6 / out) tokens cost at most `left` after ceiling.
        u64::try_from(left * PER_MILLION / out).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rates(i: i64, c: i64, o: i64) -> PriceRates {
        PriceRates {
            input_per_million: Money::from_micros(i).unwrap(),
            cached_input_per_million: Money::from_micros(c).unwrap(),
            output_per_million: Money::from_micros(o).unwrap(),
        }
    }

    #[test]
    fn cost_is_the_ceiling_of_the_weighted_sum() {
        // £2.50 / £1.25 / £10.00 per million tokens.
        let r = rates(2_500_000, 1_250_000, 10_000_000);
        let u = TokenUsage {
            prompt_tokens: 1_000,
            cached_prompt_tokens: 200,
            completion_tokens: 333,
        };
        // 800×2.5 + 200×1.25 + 333×10 = 2000 + 250 + 3330 = 5580 micros exactly.
        assert_eq!(r.cost(u).micros(), 5_580);
        let one = TokenUsage {
            prompt_tokens: 1,
            cached_prompt_tokens: 0,
            completion_tokens: 0,
        };
        // 2.5 micros rounds up to 3.
        assert_eq!(r.cost(one).micros(), 3);
        assert_eq!(r.cost(TokenUsage::default()).micros(), 0);
    }

    #[test]
    fn affordable_tokens_never_cost_more_than_the_budget() {
        let r = rates(2_500_000, 1_250_000, 10_000_000);
        let budget = Money::from_micros(10_000).unwrap();
        let n = r.affordable_output_tokens(budget, 100);
        assert_eq!(n, 975);
        assert!(r.max_cost(100, n) <= budget);
        assert!(r.max_cost(100, n + 1) > budget);
    }

    proptest! {
        #[test]
        fn actual_cost_never_exceeds_the_bound(p in 0u64..1_000_000, c in 0u64..1_000_000, o in 0u64..1_000_000,
                                               i in 0i64..100_000_000, ci in 0i64..100_000_000, oi in 0i64..100_000_000) {
            let r = rates(i, ci, oi);
            let u = TokenUsage { prompt_tokens: p, cached_prompt_tokens: c.min(p), completion_tokens: o };
            prop_assert!(r.cost(u) <= r.max_cost(p, o));
        }
    }
}
