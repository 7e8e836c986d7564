use anyhow::{bail, Context};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use clap::{Parser, Subcommand};
use std::io::BufRead;
use voucherd::config::Config;
use voucherd::{open_store, telemetry, Application, Role};

fn run(runtime: &tokio::runtime::Runtime, config: Config, role: Role) -> anyhow::Result<()> {
    runtime.block_on(async {
        let demo = config.demo.then(|| config.clone());
        let app = Application::build_role(config, role)?;
        if let Some(config) = demo {
            announce_demo(&app, &config).await?;
        }
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn config_file_sets_database() -> bool {
    let path = std::env::var("VOUCHERD_CONFIG").unwrap_or_else(|_| "voucherd.toml".into());
    std::fs::read_to_string(path).is_ok_and(|t| t.contains("database_url"))
}

async fn announce_demo(app: &Application, config: &Config) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{}", app.port());
    match voucherd::demo::seed(&app.store(), config).await? {
        Some(s) => tracing::info!(
            url = %base,
            admin = %format!("{} / {}", voucherd::demo::ADMIN_EMAIL, s.admin_password),
            applicant = %format!("{} / {}", voucherd::demo::APPLICANT_EMAIL, s.applicant_password),
            voucher_id = %s.voucher_id,
            api_key = %s.live_key,
            "demo programme seeded; AI calls are answered by the built-in sandbox. Try: curl {base}/v1/chat/completions -H 'authorization: Bearer {}' -H 'content-type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'",
            s.live_key
        ),
        None => tracing::info!(url = %base, "demo database already has users; not seeding again"),
    }
    Ok(())
}

/// voucherd runs a national AI-voucher programme: SMEs apply for vouchers of credit, spend
/// them through an OpenAI-compatible metering proxy, and administrators fund and decide.
#[derive(Parser)]
#[command(name = "voucherd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: REST API, metering proxy, pages and background jobs.
    /// Uses SQLite at ./data/voucherd.db unless DATABASE_URL says otherwise, runs pending
    /// migrations, and listens on VOUCHERD_BIND (default 127.0.0.1:8080).
    Serve {
        /// Dev mode: allow running without VOUCHERD_JWT_SECRET (a random one is used).
        #[arg(long)]
        dev: bool,
        /// Demo mode (implies --dev): a fresh seeded programme in ./data/demo.db (unless
        /// DATABASE_URL is set), whose logins and API key are printed, and a built-in sandbox
        /// answering in place of the AI provider.
        #[arg(long)]
        demo: bool,
    },
    /// Only the REST API and pages (production: many behind a load balancer).
    Api,
    /// Only the OpenAI-compatible metering proxy (production: many behind a load balancer).
    Proxy,
    /// Only the background jobs, on their cron schedules (`--list` shows them).
    Worker {
        /// Print each job, its schedule and its next run, then exit.
        #[arg(long)]
        list: bool,
        /// Run one job now (recorded like a scheduled run), print what it did, then exit.
        #[arg(long, value_name = "JOB")]
        run_once: Option<String>,
    },
    /// Generate a report now (kept like a scheduled one), showing progress, then exit. The
    /// period must be a calendar month (monthly) or April–September / October–March
    /// (semi-annual); one not yet ended is made as a draft, never published.
    Report {
        /// `monthly` or `semi-annual`.
        #[arg(long)]
        kind: String,
        /// First day of the period, YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day of the period, YYYY-MM-DD.
        #[arg(long)]
        to: chrono::NaiveDate,
    },
    /// Run pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (`openapi.yaml` is its output): the operations and their
    /// access from the route table, the schemas from the types the API serves.
    Openapi,
    /// Create an administrator. The password is read from standard input, never arguments.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Programme administrator")]
        full_name: String,
    },
}

/// Blocking threads of the runtime that runs everything but the HTTP workers: a quarter of
/// the database pool, at least two.
fn background_blocking_threads(config: &Config) -> usize {
    (usize::try_from(config.db_max_connections).unwrap_or(16) / 4).max(2)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        // Needs no configuration, database or runtime: it describes the code.
        print!("{}", voucherd::openapi::document()?);
        return Ok(());
    }
    let config = Config::load()?;
    telemetry::init(config.log_format);
    // Blocking threads on this runtime (the worker's jobs, lease upkeep, closing leases)
    // wait for one of the pool's connections. Without a bound (tokio's default allows 512)
    // the process grew by about 35 threads in the bench's hot-voucher phase, when leases
    // close in bursts, each thread keeping its stack and allocator cache.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(background_blocking_threads(&config))
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve { dev, demo } => serve(&runtime, config, dev, demo),
        Command::Api => run(&runtime, config, Role::Api),
        Command::Proxy => run(&runtime, config, Role::Proxy),
        Command::Worker { list: true, .. } => list_jobs(&runtime, &config),
        Command::Worker {
            run_once: Some(name),
            ..
        } => run_job_once(&runtime, &config, &name),
        Command::Worker { .. } => run(&runtime, config, Role::Worker),
        Command::Report { kind, from, to } => report(&runtime, &config, &kind, from, to),
        Command::Migrate => {
            let store = open_store(&config)?;
            tracing::info!(
                backend = store.backend().as_str(),
                "migrations are up to date"
            );
            Ok(())
        }
        Command::CreateAdmin { email, full_name } => {
            create_admin(&runtime, &config, &email, full_name)
        }
        Command::Openapi => Ok(()),
    }
}

/// `serve`: everything in one process; `--demo` on a fresh throw-away database.
fn serve(
    runtime: &tokio::runtime::Runtime,
    mut config: Config,
    dev: bool,
    demo: bool,
) -> anyhow::Result<()> {
    config.dev |= dev || demo;
    // Dev and demo run on plain http://127.0.0.1: Secure cookies would never be sent.
    if config.dev {
        config.cookie_secure = false;
    }
    if demo {
        config.demo = true;
        if std::env::var_os("DATABASE_URL").is_none() && !config_file_sets_database() {
            // A fresh demo each start: the throw-away database is made anew.
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("data/demo.db{suffix}"));
            }
            config.database_url = "sqlite://data/demo.db".into();
        }
    }
    run(runtime, config, Role::All)
}

/// `worker --list`: each job, its schedule and its next run.
fn list_jobs(runtime: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<()> {
    // Inside the runtime: a configured SMTP transport belongs to it.
    let _runtime = runtime.enter();
    let worker = worker_on_system_clock(config)?;
    println!(
        "{:<16} {:<18} {:<22} what",
        "job", "schedule", "next run (UTC)"
    );
    for (job, schedule, next) in worker.list() {
        let next = next.map_or("never".to_string(), |n| {
            n.format("%Y-%m-%d %H:%M:%S").to_string()
        });
        println!(
            "{:<16} {:<18} {:<22} {}",
            job.name(),
            schedule,
            next,
            job.describe()
        );
    }
    Ok(())
}

/// `worker --run-once JOB`: runs the job now and fails unless it succeeded.
fn run_job_once(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    name: &str,
) -> anyhow::Result<()> {
    let job = voucherd_worker::Job::parse(name)
        .ok_or_else(|| voucherd_worker::WorkerError::UnknownJob(name.to_string()))?;
    runtime.block_on(async {
        let worker = worker_on_system_clock(config)?;
        let report = worker.run_once(job).await?;
        println!("{} {}: {}", job.name(), report.outcome, report.summary);
        if report.outcome != voucherd_domain::RunOutcome::Succeeded {
            bail!("{} {}", job.name(), report.outcome);
        }
        Ok(())
    })
}

/// `report`: generates the report of one period now, showing progress on standard error.
fn report(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    kind: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let kind = voucherd_worker::report::Kind::parse(kind)
        .ok_or_else(|| anyhow::anyhow!("--kind must be monthly or semi-annual, not {kind:?}"))?;
    let period = voucherd_worker::report::Period::fixed(kind, from, to)
        .map_err(|e| anyhow::anyhow!("--from and --to: {e}"))?;
    runtime.block_on(async {
        let store = open_store(config)?;
        let rules = config.worker_config().disclosure;
        let progress = |step: &str| eprintln!("report: {step}...");
        let started = std::time::Instant::now();
        let at = voucherd_store::now();
        if !period.has_ended(at.date()) {
            eprintln!(
                "report: {from} to {to} has not ended: this is a draft, kept but never published"
            );
        }
        let saved = voucherd_worker::report::generate(
            &store,
            period,
            "command line",
            at,
            &rules,
            &progress,
        )
        .await?;
        eprintln!("report: done in {} ms", started.elapsed().as_millis());
        match saved {
            Some(r) => println!(
                "{} {} ({} {} to {}), sha256 {}",
                if r.draft { "draft report" } else { "report" },
                r.id,
                r.kind,
                from,
                to,
                r.content_hash
            ),
            None => bail!(
                "the final {} report for {from} to {to} exists already",
                kind.as_str()
            ),
        }
        Ok(())
    })
}

/// `create-admin`: an administrator whose password is read from standard input.
fn create_admin(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    email: &str,
    full_name: String,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.chars().count() < 12 {
        bail!("the password must have at least 12 characters");
    }
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        bail!("{email:?} is not an email address");
    }
    runtime.block_on(async {
        let store = open_store(config)?;
        let hash =
            voucherd_api::auth::hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        let user = store
            .create_user(voucherd_store::users::UserRow {
                id: voucherd_domain::UserId::new(uuid_v7()),
                email,
                password_hash: hash,
                full_name,
                role: voucherd_domain::Role::Admin,
                created_at: voucherd_store::now(),
                email_verified_at: Some(voucherd_store::now()),
                disabled_at: None,
            })
            .await?;
        println!("created administrator {} ({})", user.email, user.id);
        Ok(())
    })
}

/// A worker for one command-line task (`--list`, `--run-once`).
fn worker_on_system_clock(config: &Config) -> anyhow::Result<voucherd_worker::Worker> {
    Ok(voucherd_worker::Worker::new(
        open_store(config)?,
        config.worker_config(),
        std::sync::Arc::new(voucherd_worker::SystemClock),
    )?)
}

fn uuid_v7() -> String {
    voucherd_api::keys::new_id()
}
