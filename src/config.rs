//! Configuration: an optional TOML file (`voucherd.toml`, or the path in `VOUCHERD_CONFIG`),
//! then environment variables, which win. Every value has a safe default except the token
//! secret, which outside dev mode must be given and strong.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use voucherd_domain::eligibility::EligibilityRules;
use voucherd_domain::pricing::PriceRates;
use voucherd_domain::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    /// Dev mode: a missing token secret is replaced by a random one for this process.
    pub dev: bool,
    /// Demo mode (`serve --demo`): a seeded programme, and live traffic answered by the
    /// built-in sandbox instead of the provider.
    pub demo: bool,
    /// How long the proxy trusts a key it has checked: revocation reaches every instance
    /// within this time.
    pub key_cache_ttl_ms: u64,
    /// Each organisation's free allowance for test-mode keys.
    pub test_allowance: Money,
    /// How long a proxy instance keeps a lease on a voucher's balance before posting what it
    /// spent and releasing the rest; 0 turns leasing off (a hold per request).
    pub lease_max_age_ms: u64,
    /// How long a batch of usage rows may wait for requests that will write soon before it
    /// commits (docs/ARCHITECTURE.md, "Batching"); a lone request never waits.
    pub usage_linger_us: u64,
    /// Output tokens a request may produce when it names no limit.
    pub default_output_tokens: u64,
    /// Whether proxied requests may keep data at the provider under the programme's account:
    /// off, the Responses API's `store` is forwarded as `false` and chat's `store: true` is
    /// refused.
    pub allow_provider_storage: bool,
    pub jwt_secret: Option<String>,
    pub jwt_ttl_secs: i64,
    pub upstream_url: String,
    pub upstream_api_key: Option<String>,
    pub upstream_timeout_ms: u64,
    pub hold_timeout_ms: u64,
    pub stream_max_ms: u64,
    /// How often a proxy instance records that it is alive.
    pub instance_heartbeat_ms: u64,
    /// A proxy instance silent for this long is taken to be dead: the hold-timeouts job
    /// settles its leases and holds at once instead of at their timeout.
    pub instance_stale_after_ms: u64,
    /// A key whose usage above its holds adds up to more than this is suspended.
    pub overrun_suspend_threshold: Money,
    /// Job name → cron expression (seconds minutes hours day-of-month month day-of-week, UTC),
    /// replacing that job's default schedule. `voucherd worker --list` shows them all.
    pub jobs: BTreeMap<String, String>,
    /// Outgoing mail server, in lettre's URL form (`smtp://host:25`,
    /// `smtps://user:password@host`, `smtp://host:587?tls=required`). Unset: messages are
    /// written to `mail_dir` as .eml files and logged.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub mail_dir: String,
    /// Public report summaries suppress cells covering fewer organisations than this.
    pub report_min_organisations: u32,
    /// Public report summaries round counts to the nearest multiple of this.
    pub report_rounding_base: u32,
    /// Public report summaries suppress amounts one organisation makes up more than this
    /// percentage of (the dominance rule).
    pub report_dominance_percent: u32,
    /// Whether `serve` and `worker` run the job scheduler (on by default; several processes
    /// may run it at once, each run still happens once).
    pub scheduler: bool,
    /// How often the worker looks for due jobs.
    pub worker_poll_ms: u64,
    /// A job run whose worker has not shown life for this long is run again by another.
    pub job_stale_after_ms: u64,
    pub db_max_connections: u32,
    pub db_acquire_timeout_ms: u64,
    pub body_limit_bytes: usize,
    pub proxy_body_limit_bytes: usize,
    pub workers: usize,
    pub log_format: LogFormat,
    pub standard_voucher: Money,
    /// No voucher (base and incentives together) is approved above this.
    pub max_voucher: Money,
    /// An approval of a voucher worth more than this needs a second administrator to confirm.
    pub second_approval_above: Money,
    /// Hours of technical consulting each voucher includes.
    pub consulting_hours: u32,
    /// Incentive rules add at most this percentage of the standard voucher at approval.
    pub incentive_cap_percent: u32,
    pub default_valid_days: u32,
    pub max_valid_days: u32,
    pub eligibility: EligibilityRules,
    /// Prices given to models that have none yet, per million tokens.
    pub prices: BTreeMap<String, PriceRates>,
    /// Stripe secret key (`sk_test_…` / `sk_live_…`); payments are off without it.
    pub stripe_secret_key: Option<String>,
    /// The webhook endpoint's signing secret (`whsec_…`); while rolling a secret, both,
    /// separated by a comma.
    pub stripe_webhook_secret: Option<String>,
    /// Another Stripe API base (a test double); Stripe's own when unset.
    pub stripe_api_base: Option<String>,
    pub stripe_timeout_ms: u64,
    /// The SME's share of each voucher, paid through Stripe before the voucher activates.
    pub co_funding_percent: u32,
    /// The smallest and largest credit top-up bought at once.
    pub top_up_min: Money,
    pub top_up_max: Money,
    /// Where Stripe's payment page sends the SME back to.
    pub payments_return_url: String,
    /// How long a payment page stays payable, in minutes (Stripe allows 30 to 1440).
    pub checkout_minutes: u32,
    /// How far back the payment reconciliation job looks for paid sessions, in hours.
    pub stripe_reconcile_hours: u32,
    /// Whether the pages' cookies are `Secure` (sent over HTTPS only). Off only where the
    /// service is reached over plain HTTP: development, demos, tests on localhost.
    pub cookie_secure: bool,
    /// The address people reach the service at, for links in emails (verification, password
    /// reset, invitations).
    pub public_url: String,
    /// The bearer token the monitoring system sends for `/metrics`; without one the metrics
    /// are not served.
    pub metrics_token: Option<String>,
    /// Sign-in attempts allowed per account in `sign_in_account_window_secs`; once spent, one
    /// more each window ÷ attempts. Zero turns the per-account limit off.
    pub sign_in_attempts_per_account: u32,
    pub sign_in_account_window_secs: u64,
    /// The same per client address, across accounts.
    pub sign_in_attempts_per_address: u32,
    pub sign_in_address_window_secs: u64,
    /// How long an email verification link and code stay usable, in hours.
    pub verification_valid_hours: u32,
    /// How long a password reset link stays usable, in minutes.
    pub password_reset_valid_minutes: u32,
    /// How long a staff invitation stays usable, in days.
    pub invitation_valid_days: u32,
}

fn money(s: &str) -> Money {
    Money::parse(s).unwrap_or(Money::ZERO)
}

fn rates(input: &str, cached: &str, output: &str) -> PriceRates {
    PriceRates {
        input_per_million: money(input),
        cached_input_per_million: money(cached),
        output_per_million: money(output),
    }
}

/// Illustrative list prices in GBP; the programme sets its own in voucherd.toml or through
/// PUT /api/v1/prices/{model}.
fn default_prices() -> BTreeMap<String, PriceRates> {
    BTreeMap::from([
        ("gpt-4o".to_string(), rates("2.00", "1.00", "8.00")),
        ("gpt-4o-mini".to_string(), rates("0.12", "0.06", "0.48")),
        ("gpt-4.1-mini".to_string(), rates("0.32", "0.08", "1.28")),
    ])
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://data/voucherd.db".into(),
            bind: "127.0.0.1:8080".into(),
            dev: false,
            demo: false,
            key_cache_ttl_ms: 1_000,
            test_allowance: money("5"),
            lease_max_age_ms: 1_000,
            usage_linger_us: 2_000,
            default_output_tokens: 16_384,
            allow_provider_storage: false,
            jwt_secret: None,
            jwt_ttl_secs: 3_600,
            upstream_url: "https://api.openai.com/v1".into(),
            upstream_api_key: None,
            upstream_timeout_ms: 120_000,
            hold_timeout_ms: 300_000,
            stream_max_ms: 600_000,
            instance_heartbeat_ms: 2_000,
            instance_stale_after_ms: 15_000,
            overrun_suspend_threshold: money("1.00"),
            jobs: BTreeMap::new(),
            smtp_url: None,
            mail_from: "AI Voucher Programme <noreply@voucherd.invalid>".into(),
            mail_dir: "data/mail".into(),
            report_min_organisations: 5,
            report_rounding_base: 5,
            report_dominance_percent: 50,
            scheduler: true,
            worker_poll_ms: 1_000,
            job_stale_after_ms: 600_000,
            db_max_connections: 16,
            db_acquire_timeout_ms: 5_000,
            body_limit_bytes: 64 * 1024,
            proxy_body_limit_bytes: 4 * 1024 * 1024,
            workers: 0,
            log_format: LogFormat::Text,
            standard_voucher: money("5000"),
            max_voucher: money("25000"),
            second_approval_above: money("10000"),
            consulting_hours: 2,
            incentive_cap_percent: 50,
            default_valid_days: 365,
            max_valid_days: 3 * 365,
            eligibility: EligibilityRules::default(),
            prices: default_prices(),
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: None,
            stripe_timeout_ms: 10_000,
            co_funding_percent: 0,
            top_up_min: money("10"),
            top_up_max: money("10000"),
            payments_return_url: "http://127.0.0.1:8080/".into(),
            checkout_minutes: 60,
            stripe_reconcile_hours: 72,
            cookie_secure: true,
            public_url: "http://127.0.0.1:8080".into(),
            metrics_token: None,
            sign_in_attempts_per_account: 5,
            sign_in_account_window_secs: 900,
            sign_in_attempts_per_address: 30,
            sign_in_address_window_secs: 60,
            verification_valid_hours: 24,
            password_reset_valid_minutes: 30,
            invitation_valid_days: 7,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_bool(name: &str) -> Option<bool> {
    env(name).map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Stops start-up at the first setting outside its `(name, value, min, max)` range.
fn within_limits(limits: &[(&str, u64, u64, u64)]) -> anyhow::Result<()> {
    for &(name, value, min, max) in limits {
        if !(min..=max).contains(&value) {
            bail!("{name} must be between {min} and {max}, not {value}");
        }
    }
    Ok(())
}

impl Config {
    /// Reads the file (if any) and the environment.
    pub fn load() -> anyhow::Result<Config> {
        let path = env("VOUCHERD_CONFIG");
        let mut config = match &path {
            Some(p) => Self::from_file(p)?,
            None if std::path::Path::new("voucherd.toml").exists() => {
                Self::from_file("voucherd.toml")?
            }
            None => Config::default(),
        };
        if let Some(v) = env("DATABASE_URL") {
            config.database_url = v;
        }
        if let Some(v) = env("VOUCHERD_BIND") {
            config.bind = v;
        }
        if let Some(v) = env("VOUCHERD_JWT_SECRET") {
            config.jwt_secret = Some(v);
        }
        if let Some(v) = env_bool("VOUCHERD_DEV") {
            config.dev = v;
        }
        if let Some(v) = env("VOUCHERD_UPSTREAM_URL") {
            config.upstream_url = v;
        }
        if let Some(v) = env("VOUCHERD_UPSTREAM_API_KEY") {
            config.upstream_api_key = Some(v);
        }
        if let Some(v) = env("VOUCHERD_STRIPE_SECRET_KEY") {
            config.stripe_secret_key = Some(v);
        }
        if let Some(v) = env("VOUCHERD_STRIPE_WEBHOOK_SECRET") {
            config.stripe_webhook_secret = Some(v);
        }
        if let Some(v) = env("VOUCHERD_STRIPE_API_BASE") {
            config.stripe_api_base = Some(v);
        }
        if let Some(v) = env("VOUCHERD_PUBLIC_URL") {
            config.public_url = v;
        }
        if let Some(v) = env("VOUCHERD_METRICS_TOKEN") {
            config.metrics_token = Some(v);
        }
        if let Some(v) = env("VOUCHERD_SMTP_URL") {
            config.smtp_url = Some(v);
        }
        if let Some(v) = env("VOUCHERD_MAIL_FROM") {
            config.mail_from = v;
        }
        if let Some(v) = env("VOUCHERD_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => bail!("VOUCHERD_LOG_FORMAT must be text or json, not {other:?}"),
            };
        }
        Ok(config)
    }

    fn from_file(path: &str) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        toml::from_str(&text).with_context(|| format!("parsing {path}"))
    }

    /// The token secret, checked. Outside dev mode a missing or weak secret stops start-up.
    pub fn token_secret(&self) -> anyhow::Result<Vec<u8>> {
        match &self.jwt_secret {
            Some(s) if strong(s) => Ok(s.as_bytes().to_vec()),
            Some(_) if !self.dev => bail!(
                "VOUCHERD_JWT_SECRET is too weak: use at least 32 characters with at least 10 distinct ones \
                 (for example `openssl rand -hex 32`)"
            ),
            None if !self.dev => bail!(
                "VOUCHERD_JWT_SECRET is required outside dev mode (set it, or run `voucherd serve --dev` on a workstation)"
            ),
            _ => {
                tracing::warn!("dev mode: using a random token secret; tokens end with this process");
                let mut bytes = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
                Ok(bytes.to_vec())
            }
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        // Upper bounds keep every date and duration computed from these far from overflow.
        within_limits(&self.scheduling_limits())?;
        within_limits(&self.request_limits())?;
        // A request may wait upstream_timeout for the answer's head and again for its body,
        // then retry its settlement: its hold must outlive all of that.
        if self.instance_stale_after_ms < 3 * self.instance_heartbeat_ms {
            bail!("instance_stale_after_ms must be at least three heartbeats (instance_heartbeat_ms), or a live proxy could be taken for dead");
        }
        if self.hold_timeout_ms < 2 * self.upstream_timeout_ms + 1_000 {
            bail!("hold_timeout_ms must be at least twice upstream_timeout_ms plus 1000, or a slow request could outlive its hold");
        }
        if self.max_voucher.is_zero() || self.standard_voucher > self.max_voucher {
            bail!("max_voucher must be more than 0 and at least standard_voucher");
        }
        if self.second_approval_above > self.max_voucher {
            bail!("second_approval_above must be at most max_voucher");
        }
        if self.default_valid_days == 0 || self.default_valid_days > self.max_valid_days {
            bail!("default_valid_days must be between 1 and max_valid_days");
        }
        self.payment_settings()?;
        if self.co_funding_percent > 0 && self.stripe_config()?.is_none() {
            bail!("co_funding_percent needs Stripe: set VOUCHERD_STRIPE_SECRET_KEY and VOUCHERD_STRIPE_WEBHOOK_SECRET");
        }
        // A bad schedule stops start-up, naming its job.
        voucherd_worker::schedules(&self.jobs)?;
        self.disclosure_rules()?;
        Ok(())
    }

    /// The instances', payments', programme's and worker's settings as `(name, value, min,
    /// max)`, in the order they are checked.
    fn scheduling_limits(&self) -> [(&'static str, u64, u64, u64); 10] {
        [
            (
                "instance_heartbeat_ms",
                self.instance_heartbeat_ms,
                100,
                60_000,
            ),
            (
                "instance_stale_after_ms",
                self.instance_stale_after_ms,
                1_000,
                600_000,
            ),
            (
                "stripe_reconcile_hours",
                u64::from(self.stripe_reconcile_hours),
                1,
                24 * 90,
            ),
            (
                "co_funding_percent",
                u64::from(self.co_funding_percent),
                0,
                99,
            ),
            (
                "checkout_minutes",
                u64::from(self.checkout_minutes),
                30,
                1_440,
            ),
            ("stripe_timeout_ms", self.stripe_timeout_ms, 100, 120_000),
            (
                "incentive_cap_percent",
                u64::from(self.incentive_cap_percent),
                0,
                500,
            ),
            (
                "consulting_hours",
                u64::from(self.consulting_hours),
                0,
                1_000,
            ),
            ("worker_poll_ms", self.worker_poll_ms, 50, 60_000),
            (
                "job_stale_after_ms",
                self.job_stale_after_ms,
                1_000,
                86_400_000,
            ),
        ]
    }

    /// The proxy's, tokens', vouchers', upstream's, database's and request bodies' settings as
    /// `(name, value, min, max)`, in the order they are checked.
    fn request_limits(&self) -> [(&'static str, u64, u64, u64); 13] {
        [
            ("key_cache_ttl_ms", self.key_cache_ttl_ms, 0, 1_000),
            ("lease_max_age_ms", self.lease_max_age_ms, 0, 60_000),
            ("usage_linger_us", self.usage_linger_us, 0, 100_000),
            (
                "default_output_tokens",
                self.default_output_tokens,
                1,
                1_000_000,
            ),
            (
                "jwt_ttl_secs",
                self.jwt_ttl_secs.max(0) as u64,
                60,
                30 * 86_400,
            ),
            ("max_valid_days", u64::from(self.max_valid_days), 1, 3_650),
            (
                "upstream_timeout_ms",
                self.upstream_timeout_ms,
                100,
                3_600_000,
            ),
            ("hold_timeout_ms", self.hold_timeout_ms, 1_000, 86_400_000),
            ("stream_max_ms", self.stream_max_ms, 1_000, 86_400_000),
            (
                "db_max_connections",
                u64::from(self.db_max_connections),
                1,
                1_000,
            ),
            (
                "db_acquire_timeout_ms",
                self.db_acquire_timeout_ms,
                10,
                600_000,
            ),
            (
                "body_limit_bytes",
                self.body_limit_bytes as u64,
                1_024,
                64 << 20,
            ),
            (
                "proxy_body_limit_bytes",
                self.proxy_body_limit_bytes as u64,
                1_024,
                256 << 20,
            ),
        ]
    }

    /// Disclosure control of reports' public summaries, from the three settings.
    pub fn disclosure_rules(&self) -> anyhow::Result<voucherd_domain::disclosure::Rules> {
        voucherd_domain::disclosure::Rules::parse(
            self.report_min_organisations,
            self.report_rounding_base,
            self.report_dominance_percent,
        )
        .map_err(|e| anyhow::anyhow!("report disclosure control: {e}"))
    }
}

impl Config {
    /// Stripe's settings: both the secret key and a webhook secret, or neither (payments off).
    pub fn stripe_config(&self) -> anyhow::Result<Option<voucherd_payments::StripeConfig>> {
        let secrets: Vec<String> = self
            .stripe_webhook_secret
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        match (&self.stripe_secret_key, secrets.is_empty()) {
            (None, true) => Ok(None),
            (Some(key), false) => Ok(Some(voucherd_payments::StripeConfig {
                secret_key: key.clone(),
                webhook_secrets: secrets,
                api_base: self.stripe_api_base.clone(),
                timeout_ms: self.stripe_timeout_ms,
            })),
            (Some(_), true) => bail!(
                "VOUCHERD_STRIPE_SECRET_KEY is set but VOUCHERD_STRIPE_WEBHOOK_SECRET is not: webhooks could not be verified"
            ),
            (None, false) => bail!("VOUCHERD_STRIPE_WEBHOOK_SECRET is set but VOUCHERD_STRIPE_SECRET_KEY is not"),
        }
    }

    pub fn payment_settings(&self) -> anyhow::Result<voucherd_api::state::PaymentSettings> {
        Ok(voucherd_api::state::PaymentSettings {
            co_funding: voucherd_domain::payment::CoFundingPercent::new(self.co_funding_percent)
                .map_err(|e| anyhow::anyhow!(e))?,
            top_ups: voucherd_domain::payment::TopUpLimits::new(self.top_up_min, self.top_up_max)
                .map_err(|e| anyhow::anyhow!(e))?,
            return_url: self.payments_return_url.clone(),
            checkout_minutes: self.checkout_minutes,
        })
    }

    pub fn worker_config(&self) -> voucherd_worker::WorkerConfig {
        let defaults = voucherd_worker::WorkerConfig::default();
        voucherd_worker::WorkerConfig {
            schedules: self.jobs.clone(),
            mail: voucherd_worker::mail::MailConfig {
                smtp_url: self.smtp_url.clone(),
                from: self.mail_from.clone(),
                dir: self.mail_dir.clone().into(),
                ..defaults.mail
            },
            stale_run_ms: self.job_stale_after_ms,
            instance_stale_after_ms: self.instance_stale_after_ms,
            poll_ms: self.worker_poll_ms,
            stripe: self.stripe_config().ok().flatten(),
            stripe_lookback_hours: self.stripe_reconcile_hours,
            eligibility: self.eligibility.clone(),
            disclosure: self.disclosure_rules().unwrap_or_default(),
            ..defaults
        }
    }
}

fn strong(secret: &str) -> bool {
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    secret.len() >= 32 && distinct.len() >= 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weak_or_missing_secret_stops_start_up_outside_dev() {
        let mut c = Config::default();
        assert!(c.token_secret().is_err());
        c.jwt_secret = Some("short".into());
        assert!(c.token_secret().is_err());
        c.jwt_secret = Some("a".repeat(64));
        assert!(c.token_secret().is_err());
        c.jwt_secret = Some("0123456789abcdef0123456789abcdef".into());
        assert!(c.token_secret().is_ok());
        c.jwt_secret = None;
        c.dev = true;
        assert_eq!(c.token_secret().unwrap().len(), 32);
    }

    #[test]
    fn the_file_format_takes_every_setting() {
        let c: Config = toml::from_str(
            r#"
            database_url = "postgres://u@h/db"
            standard_voucher = "2500.00"
            allow_provider_storage = true
            [eligibility]
            max_employees_exclusive = 50
            [prices.my-model]
            input_per_million = "1.00"
            cached_input_per_million = "0.50"
            output_per_million = "4.00"
            "#,
        )
        .unwrap();
        assert_eq!(c.standard_voucher.micros(), 2_500_000_000);
        assert_eq!(c.eligibility.max_employees_exclusive, 50);
        assert_eq!(c.prices.len(), 1);
        assert!(c.allow_provider_storage);
        assert!(!Config::default().allow_provider_storage);
        assert!(toml::from_str::<Config>("unknown_setting = 1").is_err());
    }

    #[test]
    fn a_padded_amount_in_the_file_stops_start_up_naming_it() {
        for (text, key) in [
            (r#"standard_voucher = " 2500.00""#, "standard_voucher"),
            (r#"top_up_max = "500 ""#, "top_up_max"),
            (
                "[prices.my-model]\ninput_per_million = \"1.00\"\n\
                 cached_input_per_million = \"0.50\"\noutput_per_million = \"4 .00\"",
                "output_per_million",
            ),
        ] {
            let err = toml::from_str::<Config>(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(
                err.contains("must be a decimal string in major units such as \"12.50\""),
                "{text}: {err}"
            );
        }
    }
}
