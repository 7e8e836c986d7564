use crate::auth::Tokens;
use voucherd_domain::eligibility::EligibilityRules;
use voucherd_domain::Money;
use voucherd_store::Store;

/// What the API needs from configuration, already parsed.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The voucher an approval grants when the administrator names no amount.
    pub standard_voucher: Money,
    /// The maximum voucher and the amount above which a second administrator confirms.
    pub approval_limits: voucherd_domain::approval::ApprovalLimits,
    /// Incentives add at most this percentage of the standard voucher at approval.
    pub incentive_cap_percent: u32,
    /// Consulting time that comes with each voucher.
    pub consulting: voucherd_domain::consulting::Minutes,
    pub default_valid_days: u32,
    pub max_valid_days: u32,
    pub eligibility: EligibilityRules,
    /// Base URL of the OpenAI-compatible upstream, such as `https://api.openai.com/v1`.
    pub upstream_url: String,
    pub upstream_api_key: Option<String>,
    pub upstream_timeout_ms: u64,
    /// How long a proxied request's hold lives before the hold-expiry job voids it. Longer
    /// than the upstream timeout, so a slow but successful request can still settle.
    pub hold_timeout_ms: u64,
    /// The longest a streamed response may run; its hold lives this much longer.
    pub stream_max_ms: u64,
    pub body_limit_bytes: usize,
    pub proxy_body_limit_bytes: usize,
    /// Output tokens a request may produce when it names no limit (written into it).
    pub default_output_tokens: u64,
    /// Whether proxied requests may keep data at the provider (`store`); off, the Responses
    /// API's `store` is forwarded as `false` and chat's `store: true` is refused.
    pub allow_provider_storage: bool,
    /// The free allowance an organisation's test-mode keys spend.
    pub test_allowance: Money,
    /// Where test-mode keys' calls go: the built-in sandbox.
    pub sandbox_url: String,
    pub sandbox_key: String,
    pub payments: PaymentSettings,
    /// A key whose usage above its holds adds up to more than this is suspended.
    pub overrun_suspend_threshold: Money,
    /// The bearer token `/metrics` asks for; not served without one.
    pub metrics_token: Option<String>,
    pub accounts: AccountSettings,
    /// Disclosure control of the public summaries of reports made from the console.
    pub disclosure: voucherd_domain::disclosure::Rules,
}

/// Links in account emails and how long they last.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Where people reach the service, without a trailing slash.
    pub public_url: String,
    pub verification_valid_hours: u32,
    pub password_reset_valid_minutes: u32,
    pub invitation_valid_days: u32,
}

/// The programme's payment rules.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// The SME's share of each voucher, paid before it activates.
    pub co_funding: voucherd_domain::payment::CoFundingPercent,
    pub top_ups: voucherd_domain::payment::TopUpLimits,
    /// Where Stripe's page sends the SME back to (`?payment=…&result=success|cancelled`).
    pub return_url: String,
    /// How long a Checkout Session stays payable (Stripe allows 30 to 1440).
    pub checkout_minutes: u32,
}

pub struct AppState {
    pub store: Store,
    pub key_cache: crate::proxy::keycache::KeyCache,
    pub price_cache: crate::proxy::prices::PriceCache,
    pub leases: crate::proxy::lease::Leases,
    pub metrics: crate::metrics::Metrics,
    pub limits: crate::proxy::limits::Limits,
    /// Argon2 takes 19 MiB and tens of milliseconds per hash: at most this many run at once,
    /// so a flood of logins cannot exhaust memory or starve database work.
    pub password_hashing: tokio::sync::Semaphore,
    pub tokens: Tokens,
    /// Sessions recently found open (cached like keys, for at most the same lifetime).
    pub sessions: crate::auth::SessionCache,
    /// Sign-in and password-reset attempts per account and per client address.
    pub throttle: crate::throttle::Throttle,
    pub config: ApiConfig,
    /// The programme calendar's clock (challenge milestones); tests move it by hand.
    pub clock: std::sync::Arc<dyn voucherd_store::clock::Clock>,
    /// Stripe, when the programme has configured it; payments are refused without.
    pub stripe: Option<std::sync::Arc<voucherd_payments::Stripe>>,
}
