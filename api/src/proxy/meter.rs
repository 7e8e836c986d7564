//! Admission and settlement: the money side of every proxied request. A request is admitted
//! only with a hold covering its worst case; it is settled exactly once, posting the priced
//! usage (≤ the hold) or releasing the hold when nothing was served.

use super::keycache::CachedKey;
use super::lease::Ticket;
use super::ProxyError;
use crate::keys;
use crate::state::AppState;
use actix_web::HttpRequest;
use tokio::sync::OwnedSemaphorePermit;
use voucherd_domain::pricing::{PriceRates, TokenUsage};
use voucherd_domain::{ApiKeyId, KeyMode, Money, VoucherId, VoucherState};
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::prices::PriceRow;
use voucherd_store::usage::KeyCap;
use voucherd_store::usage::UsageRow;
use voucherd_store::vouchers::VoucherRow;
use voucherd_store::StoreError;

/// Extra attempts at settling after the first fails for want of the database (≈ 0.7 s in all).
const SETTLE_RETRIES: u32 = 3;

/// The voucher key of the request, checked: known, not revoked or expired, its voucher live.
/// Keys are cached for at most the cache's time to live.
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<CachedKey, ProxyError> {
    let secret = crate::auth::bearer(req.headers()).ok_or(ProxyError::InvalidKey(
        "You didn't provide an API key. Send it as `Authorization: Bearer vk_live_…`.",
    ))?;
    if !keys::looks_like_key(secret) {
        return Err(ProxyError::InvalidKey("Incorrect API key provided."));
    }
    let hash = keys::hash(secret);
    let cached = match state.key_cache.get(&hash) {
        Some(k) => k,
        None => {
            let found = state
                .store
                .key_by_hash(hash.clone())
                .await?
                .ok_or(ProxyError::InvalidKey("Incorrect API key provided."))?;
            let k = std::sync::Arc::new(found);
            state.key_cache.put(hash, k.clone());
            k
        }
    };
    let (key, voucher, purchased) = (&cached.0, &cached.1, cached.2);
    let now = voucherd_store::now();
    if key.revoked_at.is_some() {
        return Err(ProxyError::InvalidKey("This API key has been revoked."));
    }
    if key.suspended_at.is_some() {
        return Err(ProxyError::KeySuspended(
            key.suspension_reason.clone().unwrap_or_default(),
        ));
    }
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(ProxyError::InvalidKey("This API key has expired."));
    }
    if voucher.suspended_at.is_some() {
        return Err(ProxyError::InsufficientQuota(
            "You exceeded your current quota: the programme has suspended this voucher.".into(),
        ));
    }
    // An expired voucher's live keys go on only while purchased credit (which outlives the
    // voucher) can pay; otherwise they are refused here, before any database work.
    let live = voucher.status == VoucherState::Active && voucher.expires_at > now;
    if !live && (key.mode == KeyMode::Test || purchased <= 0) {
        return Err(ProxyError::InsufficientQuota(format!(
            "You exceeded your current quota: the voucher expired on {}.",
            crate::views::time(voucher.expires_at)
        )));
    }
    if voucher.awaiting_contribution() && key.mode != KeyMode::Test && purchased <= 0 {
        return Err(awaiting_contribution());
    }
    Ok(cached)
}

fn awaiting_contribution() -> ProxyError {
    ProxyError::InsufficientQuota(
        "You exceeded your current quota: the voucher is not active until the co-funding contribution is paid.".into(),
    )
}

/// An admitted request: its hold and everything needed to settle it.
pub struct Admitted {
    pub key_id: ApiKeyId,
    pub voucher_id: VoucherId,
    pub model: String,
    pub price: PriceRow,
    pub rates: PriceRates,
    pub hold_id: String,
    pub billing_id: String,
    pub prompt_bound: u64,
    /// Output tokens each choice may produce (written into the forwarded request).
    pub output_each: u64,
    pub choices: u64,
    pub available_after_hold: Money,
    /// A test-mode key: the sandbox answers and the free allowance pays.
    pub test_mode: bool,
    /// The key's concurrency slot, released when the request is done with.
    slot: Option<OwnedSemaphorePermit>,
    /// The request's share of a lease, when it is served from one instead of its own hold.
    ticket: Option<Ticket>,
}

/// What the request asks for, before admission.
pub struct Ask<'a> {
    pub key: &'a ApiKeyRow,
    pub voucher: &'a VoucherRow,
    pub model: &'a str,
    pub prompt_bound: u64,
    /// The client's own output limit per choice, if it gave one.
    pub requested_output: Option<u64>,
    pub choices: u64,
    pub hold_ms: u64,
    /// A streamed request: its usage is written when the stream ends, not soon.
    pub streamed: bool,
    /// What the organisation's purchased credit had available a moment ago (the key cache's).
    pub purchased_available: i64,
}

pub fn quota_exceeded() -> ProxyError {
    ProxyError::InsufficientQuota(
        "You exceeded your current quota: the voucher's available balance does not cover this request.".into(),
    )
}

/// Prices the request's worst case, capped to what the voucher affords, and holds it.
pub async fn admit(state: &AppState, ask: Ask<'_>) -> Result<Admitted, ProxyError> {
    let now = voucherd_store::now();
    let slot = admissible(state, &ask)?;
    let test_mode = ask.key.mode == KeyMode::Test;
    let price = state
        .price_cache
        .current(&state.store, ask.model)
        .await?
        .ok_or_else(|| ProxyError::ModelNotFound(ask.model.to_string()))?;
    let rates = price.rates()?;
    let ctx = Context {
        ask: &ask,
        rates,
        now,
        cap: ask.key.monthly_spend_cap.map(|cap_micros| KeyCap {
            api_key_id: ask.key.id.clone(),
            month: now.format("%Y-%m").to_string(),
            cap_micros,
        }),
        test_mode,
    };
    let held = hold_somewhere(state, &ctx, &sources(&ask, test_mode, now)).await?;
    Ok(Admitted {
        key_id: ask.key.id.clone(),
        voucher_id: ask.voucher.id.clone(),
        model: ask.model.to_string(),
        price,
        rates,
        hold_id: held.hold_id,
        billing_id: held.billing_id,
        prompt_bound: ask.prompt_bound,
        output_each: held.output_each,
        choices: ctx.choices(),
        available_after_hold: held.available_after,
        test_mode,
        slot,
        ticket: held.ticket,
    })
}

/// The key's own limits: the models it may use, its tokens per minute and its concurrent
/// requests (the slot it takes, held until the request is done with).
fn admissible(state: &AppState, ask: &Ask<'_>) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
    let allowed = ask
        .key
        .allowed_models
        .as_deref()
        .and_then(|m| serde_json::from_str::<Vec<String>>(m).ok());
    if allowed.is_some_and(|models| !models.iter().any(|m| m == ask.model)) {
        return Err(ProxyError::ModelNotAllowed(ask.model.to_string()));
    }
    // Tokens-per-minute counts the prompt at four bytes a token and the output asked for.
    let estimate = ask.prompt_bound.div_ceil(4)
        + ask
            .requested_output
            .unwrap_or(0)
            .saturating_mul(ask.choices.max(1));
    state.limits.check_rate(ask.key, estimate)?;
    state.limits.acquire(ask.key)
}

/// Where the money comes from, in order: the voucher, then the organisation's purchased credit
/// (which outlives the voucher; skipped when none was available a moment ago). Test keys spend
/// only their free allowance.
fn sources(ask: &Ask<'_>, test_mode: bool, now: chrono::NaiveDateTime) -> Vec<String> {
    if test_mode {
        return vec![format!(
            "{}{}",
            voucherd_store::usage::TEST_ALLOWANCE_PREFIX,
            ask.voucher.owner_id
        )];
    }
    let now_live = ask.voucher.status == VoucherState::Active && ask.voucher.expires_at > now;
    let mut s = Vec::with_capacity(2);
    if now_live && !ask.voucher.awaiting_contribution() {
        s.push(ask.voucher.account_id.clone());
    }
    if ask.purchased_available > 0 {
        s.push(voucherd_store::payments::purchased_account_id(
            &ask.voucher.owner_id,
        ));
    }
    s
}

/// Holds the request on the first source that pays for it. First every source for the whole
/// request; only then is the request capped to what one source affords, in the same order.
/// Should all refuse while this instance's own lease holds part of a source's balance, that
/// part is given back and everything is tried once more: a request is refused for want of
/// money only when the whole balance cannot pay.
async fn hold_somewhere(
    state: &AppState,
    ctx: &Context<'_>,
    sources: &[String],
) -> Result<Held, ProxyError> {
    let mut refused: Option<ProxyError> = None;
    let mut given_back = false;
    loop {
        for allow_cap in [false, true] {
            for account in sources {
                match hold_from(state, ctx, account, allow_cap).await {
                    Ok(held) => return Ok(held),
                    // The first refusal says why, unless a later one is the key's spend cap.
                    Err(ProxyError::KeyCapReached) => refused = Some(ProxyError::KeyCapReached),
                    Err(e @ ProxyError::InsufficientQuota(_)) => {
                        if refused.is_none() {
                            refused = Some(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if given_back || ctx.test_mode || !state.leases.enabled() {
            break;
        }
        given_back = true;
        // Tried again whatever this finds: a lease may also have closed in the background
        // between the attempts above and now.
        for account in sources {
            state.leases.give_back(state, account).await;
        }
    }
    Err(match refused {
        Some(e) => e,
        None if ctx.ask.voucher.awaiting_contribution() => awaiting_contribution(),
        None => quota_exceeded(),
    })
}

/// What every source's attempt shares.
struct Context<'a> {
    ask: &'a Ask<'a>,
    rates: PriceRates,
    now: chrono::NaiveDateTime,
    cap: Option<KeyCap>,
    test_mode: bool,
}

impl Context<'_> {
    fn choices(&self) -> u64 {
        self.ask.choices.max(1)
    }
}

/// A hold (or a lease's share) on one source account.
struct Held {
    hold_id: String,
    billing_id: String,
    output_each: u64,
    available_after: Money,
    ticket: Option<Ticket>,
}

/// Holds the request's worst case on `debit_account`; with `allow_cap`, a request the account
/// cannot cover is capped to the output it affords instead of refused.
async fn hold_from(
    state: &AppState,
    ctx: &Context<'_>,
    debit_account: &str,
    allow_cap: bool,
) -> Result<Held, ProxyError> {
    let ask = ctx.ask;
    let billing_id: String = keys::new_id();
    let hold = |output_each: u64| open_hold(state, ctx, debit_account, &billing_id, output_each);
    // A request with no output limit gets the programme's default, written into it.
    let requested = match ask.requested_output {
        None => Some(state.config.default_output_tokens),
        given => given,
    };
    // The common case: a live key without a spend cap reserves its worst case from a lease
    // in memory. Should no lease cover it, it falls back to a hold of its own below. (The
    // capping pass has already seen both fail, and goes straight to the balance.)
    if !allow_cap && state.leases.enabled() && !ctx.test_mode && ctx.cap.is_none() {
        if let Some(r) = requested {
            if let Some(ticket) = reserve_in_lease(state, ctx, debit_account, r).await? {
                return Ok(Held {
                    hold_id: ticket.lease.hold_id.clone(),
                    billing_id,
                    output_each: r,
                    available_after: Money::from_micros(ticket.lease.available().max(0))
                        .unwrap_or(Money::ZERO),
                    ticket: Some(ticket),
                });
            }
        }
    }
    // Otherwise one round trip: hold what the request asks for. Only when that is more than
    // the account holds is the balance read and the request capped to what it affords.
    let first = match requested {
        Some(r) if !allow_cap => Some((r, hold(r).await)),
        _ => None,
    };
    let (output_each, opened) = match first {
        Some((r, Ok(opened))) => (r, opened),
        Some((_, Err(e))) if !short_of_money(&e) => return Err(e.into()),
        _ if !allow_cap => return Err(quota_exceeded()),
        _ => {
            let output_each = affordable_output(state, ctx, debit_account, requested).await?;
            let opened = hold(output_each).await.map_err(|e| {
                if short_of_money(&e) {
                    quota_exceeded()
                } else {
                    e.into()
                }
            })?;
            (output_each, opened)
        }
    };
    let (hold_id, available_after) = opened;
    state.metrics.holds_outstanding.inc();
    Ok(Held {
        hold_id,
        billing_id,
        output_each,
        available_after: Money::from_micros(available_after.max(0)).unwrap_or(Money::ZERO),
        ticket: None,
    })
}

/// Opens a hold of the request's own on `debit_account` for its worst case with `output_each`
/// tokens per choice: (the hold's id, the account's available balance after it).
async fn open_hold(
    state: &AppState,
    ctx: &Context<'_>,
    debit_account: &str,
    billing_id: &str,
    output_each: u64,
) -> Result<(String, i64), StoreError> {
    let ask = ctx.ask;
    let timeout_at = ctx.now
        + chrono::Duration::milliseconds(i64::try_from(ask.hold_ms).unwrap_or(i64::MAX / 2));
    let held = ctx
        .rates
        .max_cost(ask.prompt_bound, output_each.saturating_mul(ctx.choices()));
    // A free model still takes a hold, so every request has one to settle against.
    let held = if held.is_zero() {
        Money::from_micros(1).unwrap_or(held)
    } else {
        held
    };
    state
        .store
        .open_hold(
            billing_id.to_string(),
            debit_account.to_string(),
            held,
            timeout_at,
            ctx.cap.clone(),
            state.leases.instance_id().clone(),
        )
        .await
}

/// Reserves the request's worst case with `output_each` tokens per choice from this
/// instance's lease on `debit_account`; `None` when no lease can cover it.
async fn reserve_in_lease(
    state: &AppState,
    ctx: &Context<'_>,
    debit_account: &str,
    output_each: u64,
) -> Result<Option<Ticket>, ProxyError> {
    let ask = ctx.ask;
    let need = ctx
        .rates
        .max_cost(ask.prompt_bound, output_each.saturating_mul(ctx.choices()))
        .micros()
        .max(1);
    match state
        .leases
        .reserve(state, debit_account, need, ask.streamed)
        .await
    {
        Ok(ticket) => Ok(Some(ticket)),
        Err(ProxyError::InsufficientQuota(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The output per choice the account's balance pays for (at most what was asked), read from
/// the account; refused when it affords no output at all.
async fn affordable_output(
    state: &AppState,
    ctx: &Context<'_>,
    debit_account: &str,
    requested: Option<u64>,
) -> Result<u64, ProxyError> {
    let account = match state.store.account(debit_account.to_string()).await {
        Ok(a) => a,
        Err(e) if short_of_money(&e) => return Err(quota_exceeded()),
        Err(e) => return Err(e.into()),
    };
    let available = Money::from_micros(account.totals().available().max(0))
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    if ctx.ask.requested_output == Some(0) {
        // Embeddings: input only, and the input alone does not fit.
        return Err(quota_exceeded());
    }
    let affordable_each = ctx
        .rates
        .affordable_output_tokens(available, ctx.ask.prompt_bound)
        / ctx.choices();
    if affordable_each == 0 {
        return Err(quota_exceeded());
    }
    Ok(requested.map_or(affordable_each, |r| r.min(affordable_each)))
}

/// The account cannot pay: too little in it, or (purchased credit never bought) no account.
fn short_of_money(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::InsufficientFunds { .. } | StoreError::NotFound("account")
    )
}

impl Admitted {
    /// Posts the priced usage, or releases the hold when there is none.
    pub async fn settle(
        &self,
        state: &AppState,
        usage: Option<TokenUsage>,
        upstream_status: u16,
    ) -> Result<(), ProxyError> {
        let Some(u) = usage else {
            if self.ticket.is_none() {
                state.store.release_hold(self.hold_id.clone()).await?;
                state.metrics.holds_outstanding.dec();
            }
            // A leased request's reservation goes back to its lease when the ticket drops.
            return Ok(());
        };
        let mut row = self.usage_row(u, upstream_status);
        if let Some(ticket) = &self.ticket {
            row.overrun_micros = (row.cost - ticket.reserved).max(0);
            state.leases.record(ticket, row.clone()).await?;
            self.count(state, u, row.cost);
            self.overrun(state, &row).await;
            return Ok(());
        }
        self.settle_alone(state, row, u).await
    }

    /// The usage row of this request, priced at the price it was admitted with.
    fn usage_row(&self, u: TokenUsage, upstream_status: u16) -> UsageRow {
        let tokens = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        UsageRow {
            id: keys::new_id(),
            request_id: self.billing_id.clone(),
            voucher_id: self.voucher_id.clone(),
            api_key_id: self.key_id.clone(),
            model: self.model.clone(),
            price_id: self.price.id.clone(),
            input_per_million: self.price.input_per_million,
            cached_input_per_million: self.price.cached_input_per_million,
            output_per_million: self.price.output_per_million,
            prompt_tokens: tokens(u.prompt_tokens),
            cached_prompt_tokens: tokens(u.cached_prompt_tokens),
            completion_tokens: tokens(u.completion_tokens),
            cost: self.rates.cost(u).micros(),
            hold_id: self.hold_id.clone(),
            post_id: None,
            upstream_status: i32::from(upstream_status),
            created_at: voucherd_store::now(),
            overrun_micros: 0,
        }
    }

    /// Settles a request that holds on its own (no lease): posts its usage against its hold
    /// in a transaction of its own. The upstream has done the work: a passing database hiccup
    /// must not leave it unbilled, so settlement is retried a few times before the request
    /// fails.
    async fn settle_alone(
        &self,
        state: &AppState,
        row: UsageRow,
        u: TokenUsage,
    ) -> Result<(), ProxyError> {
        let mut attempt = 0;
        loop {
            match state.store.settle_usage(row.clone()).await {
                Ok(settled) => {
                    state.metrics.holds_outstanding.dec();
                    self.count(state, u, row.cost);
                    self.overrun(state, &settled).await;
                    let m = &state.metrics;
                    if attempt > 0 {
                        m.settle_retries.with_label_values(&["recovered"]).inc();
                    }
                    return Ok(());
                }
                Err(e @ (StoreError::Unavailable(_) | StoreError::Contended))
                    if attempt < SETTLE_RETRIES =>
                {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, billing_id = %self.billing_id, "settlement failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => {
                    if attempt > 0 {
                        state
                            .metrics
                            .settle_retries
                            .with_label_values(&["failed"])
                            .inc();
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Gives the key's concurrency slot back before the request is settled: its client has
    /// gone, and what is left (reading the provider's usage) is the proxy's own work.
    pub fn free_slot(&mut self) {
        self.slot = None;
    }

    /// Makes usage above the request's hold visible: counted in the metrics, and noted in the
    /// store (administrators told once per key per day; the key suspended past the
    /// programme's threshold, and then forgotten here at once). A failure to note it is
    /// logged: the usage itself is already committed.
    async fn overrun(&self, state: &AppState, row: &UsageRow) {
        if row.overrun_micros <= 0 {
            return;
        }
        let m = &state.metrics;
        m.overrun_requests
            .with_label_values(&[self.model.as_str()])
            .inc();
        m.overrun_micros
            .with_label_values(&[self.model.as_str()])
            .inc_by(u64::try_from(row.overrun_micros).unwrap_or(0));
        tracing::warn!(billing_id = %self.billing_id, key_id = %self.key_id, model = %self.model,
            overrun_micros = row.overrun_micros, "usage above the request's hold");
        let noted = state
            .store
            .note_overrun(
                voucherd_store::overruns::Overrun {
                    api_key_id: self.key_id.clone(),
                    model: self.model.clone(),
                    overrun_micros: row.overrun_micros,
                    at: row.created_at,
                },
                state.config.overrun_suspend_threshold.micros(),
            )
            .await;
        match noted {
            Ok(n) if n.suspended => {
                tracing::warn!(key_id = %self.key_id, total_micros = n.key_total_micros,
                    "key suspended: usage above its holds passed the threshold");
                state.key_cache.forget(self.key_id.as_str());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, key_id = %self.key_id, "could not note an overrun")
            }
        }
    }

    /// Counts billed tokens and cost in the metrics.
    fn count(&self, state: &AppState, u: TokenUsage, cost_micros: i64) {
        let m = &state.metrics;
        let uncached = u.prompt_tokens - u.cached_prompt_tokens;
        for (kind, n) in [
            ("prompt", uncached),
            ("cached", u.cached_prompt_tokens),
            ("completion", u.completion_tokens),
        ] {
            m.tokens
                .with_label_values(&[self.model.as_str(), kind])
                .inc_by(n);
        }
        m.cost_micros
            .with_label_values(&[self.model.as_str()])
            .inc_by(u64::try_from(cost_micros).unwrap_or(0));
    }

    /// Releases the hold of a request that never reached the upstream; a failure here only
    /// delays the release to the hold's timeout.
    pub async fn release(&self, state: &AppState) {
        if self.ticket.is_some() {
            return;
        }
        match state.store.release_hold(self.hold_id.clone()).await {
            Ok(()) => state.metrics.holds_outstanding.dec(),
            Err(e) => {
                tracing::warn!(error = %e, hold_id = %self.hold_id, "could not release hold; it voids at its timeout")
            }
        }
    }

    /// The bound that was held, as usage: billed when a successful answer reports none.
    pub fn bound_usage(&self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_bound,
            cached_prompt_tokens: 0,
            completion_tokens: self.output_each.saturating_mul(self.choices),
        }
    }
}
