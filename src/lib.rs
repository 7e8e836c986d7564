//! Wiring: configuration, telemetry and the server that the `voucherd` binary runs. Tests
//! build the same [`Application`] on port 0.

pub mod config;
pub mod demo;
pub mod openapi;
pub mod telemetry;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use config::Config;
use std::net::TcpListener;
use std::time::Duration;
use voucherd_api::auth::Tokens;
use voucherd_api::extract::BodyLimit;
use voucherd_api::proxy::keycache::KeyCache;
use voucherd_api::state::{ApiConfig, AppState};
use voucherd_store::{Store, StoreConfig};

/// Concurrent argon2 hashes (each 19 MiB); more wait, up to the request's patience.
const PASSWORD_HASHES_AT_ONCE: usize = 4;
/// Keys the proxy remembers at once.
const KEY_CACHE_ENTRIES: usize = 100_000;

pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&StoreConfig {
        database_url: config.database_url.clone(),
        max_connections: config.db_max_connections,
        acquire_timeout_ms: config.db_acquire_timeout_ms,
    })?;
    let ran = store.migrate()?;
    if ran > 0 {
        tracing::info!(
            migrations = ran,
            backend = store.backend().as_str(),
            "database migrated"
        );
    }
    Ok(store)
}

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process (the default).
    All,
    /// The REST API and pages.
    Api,
    /// The metering proxy.
    Proxy,
    /// Background jobs only.
    Worker,
}

pub struct Application {
    port: u16,
    server: Option<Server>,
    store: Store,
    worker: Option<tokio::task::JoinHandle<()>>,
    stop_worker: tokio::sync::watch::Sender<bool>,
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes
}

impl Application {
    /// Opens and migrates the database, seeds missing prices, binds the listener (port 0 picks
    /// a free port) and starts the background hold sweeper.
    pub fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_role(config, Role::All)
    }

    pub fn build_role(config: Config, role: Role) -> anyhow::Result<Application> {
        Self::build_with_clock(
            config,
            role,
            std::sync::Arc::new(voucherd_worker::SystemClock),
        )
    }

    /// [`Application::build_role`] with the programme calendar read from `clock`.
    pub fn build_with_clock(
        mut config: Config,
        role: Role,
        clock: std::sync::Arc<dyn voucherd_worker::Clock>,
    ) -> anyhow::Result<Application> {
        config.check()?;
        // Only roles that serve the REST API sign or check access tokens.
        let secret = match role {
            Role::All | Role::Api => config.token_secret()?,
            Role::Proxy | Role::Worker => random_bytes(32),
        };
        let store = open_store(&config)?;
        seed_prices(&store, &config)?;
        let (stop_worker, stopping) = tokio::sync::watch::channel(false);
        let worker = if config.scheduler && matches!(role, Role::All | Role::Worker) {
            let worker =
                voucherd_worker::Worker::new(store.clone(), config.worker_config(), clock.clone())?;
            Some(tokio::spawn(worker.run(stopping)))
        } else {
            None
        };
        let serves = match role {
            Role::All => voucherd_api::Serves::Everything,
            Role::Api => voucherd_api::Serves::Api,
            Role::Proxy => voucherd_api::Serves::Proxy,
            Role::Worker => {
                tracing::info!(
                    backend = store.backend().as_str(),
                    "voucherd worker running"
                );
                return Ok(Application {
                    port: 0,
                    server: None,
                    store,
                    worker,
                    stop_worker,
                });
            }
        };
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let local = listener.local_addr()?;
        let sandbox = Sandbox::on(local.port());
        if config.demo {
            config.upstream_url = sandbox.url.clone();
            config.upstream_api_key = Some(sandbox.key.clone());
        }
        let state = web::Data::new(app_state(&config, &store, &secret, clock, sandbox)?);
        start_lease_upkeep(&state, &config, role);
        let server = http_server(&config, state, listener, serves, role != Role::Proxy)?;
        tracing::info!(address = %config.bind, port = local.port(), role = ?role,
            backend = store.backend().as_str(), "voucherd listening");
        Ok(Application {
            port: local.port(),
            server: Some(server),
            store,
            worker,
            stop_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.server {
            Some(server) => server.await,
            // A worker has no server: it runs until it is told to stop.
            None => tokio::signal::ctrl_c().await,
        };
        // The scheduler finishes (or abandons, after its grace period) the job it is running.
        let _ = self.stop_worker.send(true);
        if let Some(w) = self.worker {
            let _ = w.await;
        }
        result
    }
}

/// This process's own sandbox, where test-mode keys (and, in demo mode, all traffic) go.
struct Sandbox {
    url: String,
    key: String,
}

impl Sandbox {
    /// The sandbox served on `port`, reached over loopback with a key only this process knows.
    fn on(port: u16) -> Sandbox {
        Sandbox {
            url: format!("http://127.0.0.1:{port}/sandbox/v1"),
            key: hex_string(&random_bytes(32)),
        }
    }
}

/// Adds the configured default prices for models that have none yet.
fn seed_prices(store: &Store, config: &Config) -> anyhow::Result<()> {
    let prices: Vec<_> = config.prices.iter().map(|(m, r)| (m.clone(), *r)).collect();
    let seeded = store.seed_prices(&prices)?;
    if seeded > 0 {
        tracing::info!(models = seeded, "seeded default prices");
    }
    Ok(())
}

/// The state every handler shares, assembled from the configuration.
fn app_state(
    config: &Config,
    store: &Store,
    secret: &[u8],
    clock: std::sync::Arc<dyn voucherd_worker::Clock>,
    sandbox: Sandbox,
) -> anyhow::Result<AppState> {
    let cache_ttl = Duration::from_millis(config.key_cache_ttl_ms);
    let throttle = voucherd_api::throttle::Throttle::new(
        voucherd_api::throttle::Allowance {
            attempts: config.sign_in_attempts_per_account,
            window_secs: config.sign_in_account_window_secs,
        },
        voucherd_api::throttle::Allowance {
            attempts: config.sign_in_attempts_per_address,
            window_secs: config.sign_in_address_window_secs,
        },
        clock.clone(),
    );
    Ok(AppState {
        store: store.clone(),
        key_cache: KeyCache::new(cache_ttl, KEY_CACHE_ENTRIES),
        limits: Default::default(),
        leases: voucherd_api::proxy::lease::Leases::new(
            store.clone(),
            Duration::from_millis(config.lease_max_age_ms),
            Duration::from_micros(config.usage_linger_us),
        )
        .context("starting the usage writer")?,
        price_cache: voucherd_api::proxy::prices::PriceCache::new(cache_ttl),
        metrics: voucherd_api::metrics::Metrics::new().context("registering metrics")?,
        password_hashing: tokio::sync::Semaphore::new(PASSWORD_HASHES_AT_ONCE),
        tokens: Tokens::new(secret, config.jwt_ttl_secs),
        sessions: voucherd_api::auth::SessionCache::new(cache_ttl, KEY_CACHE_ENTRIES),
        throttle,
        config: api_config(config, sandbox)?,
        clock,
        stripe: match config.stripe_config()? {
            Some(c) => Some(std::sync::Arc::new(
                voucherd_payments::Stripe::new(&c).context("configuring Stripe")?,
            )),
            None => None,
        },
    })
}

/// The handlers' settings, from the configuration.
fn api_config(config: &Config, sandbox: Sandbox) -> anyhow::Result<ApiConfig> {
    Ok(ApiConfig {
        standard_voucher: config.standard_voucher,
        approval_limits: voucherd_domain::approval::ApprovalLimits {
            max_voucher: config.max_voucher,
            second_approval_above: config.second_approval_above,
        },
        incentive_cap_percent: config.incentive_cap_percent,
        consulting: voucherd_domain::consulting::Minutes::hours(config.consulting_hours)
            .map_err(|e| anyhow::anyhow!("consulting_hours: {e}"))?,
        default_valid_days: config.default_valid_days,
        max_valid_days: config.max_valid_days,
        eligibility: config.eligibility.clone(),
        upstream_url: config.upstream_url.clone(),
        upstream_api_key: config.upstream_api_key.clone(),
        upstream_timeout_ms: config.upstream_timeout_ms,
        hold_timeout_ms: config.hold_timeout_ms,
        stream_max_ms: config.stream_max_ms,
        body_limit_bytes: config.body_limit_bytes,
        proxy_body_limit_bytes: config.proxy_body_limit_bytes,
        default_output_tokens: config.default_output_tokens,
        allow_provider_storage: config.allow_provider_storage,
        test_allowance: config.test_allowance,
        sandbox_url: sandbox.url,
        sandbox_key: sandbox.key,
        payments: config.payment_settings()?,
        overrun_suspend_threshold: config.overrun_suspend_threshold,
        metrics_token: config.metrics_token.clone(),
        accounts: voucherd_api::state::AccountSettings {
            public_url: config.public_url.trim_end_matches('/').to_string(),
            verification_valid_hours: config.verification_valid_hours,
            password_reset_valid_minutes: config.password_reset_valid_minutes,
            invitation_valid_days: config.invitation_valid_days,
        },
        disclosure: config.disclosure_rules()?,
    })
}

/// Extends busy leases and retires idle ones (docs/ARCHITECTURE.md, "Leases"); a proxy also
/// beats its instance's heartbeat so others can tell it is alive.
fn start_lease_upkeep(state: &web::Data<AppState>, config: &Config, role: Role) {
    if config.lease_max_age_ms > 0 {
        let state = state.clone();
        let every = Duration::from_millis((config.lease_max_age_ms / 2).max(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.leases.maintain(&state).await;
            }
        });
    }
    if matches!(role, Role::All | Role::Proxy) {
        voucherd_api::proxy::lease::Leases::keep_beating(
            state.clone(),
            Duration::from_millis(config.instance_heartbeat_ms),
        );
    }
}

/// The HTTP server on `listener`: the API and proxy routes `serves` names, and the pages
/// unless `pages` is false.
fn http_server(
    config: &Config,
    state: web::Data<AppState>,
    listener: TcpListener,
    serves: voucherd_api::Serves,
    pages: bool,
) -> anyhow::Result<Server> {
    let templates = web::Data::new(
        voucherd_admin::Pages::new().map_err(|e| anyhow::anyhow!("page templates: {e}"))?,
    );
    let pages_config = web::Data::new(voucherd_admin::PagesConfig {
        cookie_secure: config.cookie_secure,
    });
    let body_limit = config.body_limit_bytes;
    let proxy_body_limit = config.proxy_body_limit_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(templates.clone())
            .app_data(pages_config.clone())
            .app_data(voucherd_admin::form_config())
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(BodyLimit(body_limit))
            .app_data(voucherd_api::sandbox::json_config(proxy_body_limit))
            .wrap(from_fn(voucherd_api::auth::guard))
            .wrap(from_fn(voucherd_admin::guard))
            .wrap(from_fn(voucherd_api::telemetry::request_id))
            .configure(|cfg| {
                voucherd_api::configure(cfg, serves);
                if pages {
                    voucherd_admin::configure(cfg);
                }
            })
            .default_service(web::to(move |req: actix_web::HttpRequest| async move {
                if pages {
                    voucherd_admin::not_found(req).await
                } else {
                    voucherd_api::not_found(req).await
                }
            }))
    })
    // Streamed answers are many small writes: with Nagle's algorithm on (the OS default for
    // accepted sockets) a chunk written while the previous one is unacknowledged waits for
    // the client's delayed ACK, about 40 ms on Linux (bench/run.sh, target 6: inter-chunk p99
    // 39.7 ms against nginx's 22.4 ms with the provider's chunks 20 ms apart).
    .tcp_nodelay(true)
    .listen(listener)?
    // Database calls run on each worker's blocking threads and wait for one of the pool's
    // connections: together the workers' threads need no more than the pool has, and each
    // thread beyond that would only wait, with its own stack and allocator cache (tokio's
    // default allows 512 / workers; bench/run.sh, target 6, measured 64 such threads).
    .worker_max_blocking_threads(blocking_threads_per_worker(config))
    .shutdown_timeout(10);
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    Ok(server.run())
}

/// The HTTP workers' share each of the database pool's connections, at least two.
fn blocking_threads_per_worker(config: &Config) -> usize {
    let workers = if config.workers > 0 {
        config.workers
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    usize::try_from(config.db_max_connections)
        .unwrap_or(16)
        .div_ceil(workers.max(1))
        .max(2)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
