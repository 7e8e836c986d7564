use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use voucherd::config::Config;
use voucherd::{open_store, telemetry, Application, Role};

fn run(runtime: &tokio::runtime::Runtime, config: Config, role: Role) -> anyhow::Result<()> {
    runtime.block_on(async {
        let app = Application::build_role(config, role)?;
        app.run_until_stopped().await?;
        Ok(())
    })
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
    },
    /// Only the REST API and pages (production: many behind a load balancer).
    Api,
    /// Only the OpenAI-compatible metering proxy (production: many behind a load balancer).
    Proxy,
    /// Only the background jobs (hold expiry).
    Worker,
    /// Run pending database migrations and exit.
    Migrate,
    /// Create an administrator. The password is read from standard input, never arguments.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Programme administrator")]
        full_name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load()?;
    telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve { dev } => {
            config.dev |= dev;
            run(&runtime, config, Role::All)
        }
        Command::Api => run(&runtime, config, Role::Api),
        Command::Proxy => run(&runtime, config, Role::Proxy),
        Command::Worker => run(&runtime, config, Role::Worker),
        Command::Migrate => {
            let store = open_store(&config)?;
            tracing::info!(
                backend = store.backend().as_str(),
                "migrations are up to date"
            );
            Ok(())
        }
        Command::CreateAdmin { email, full_name } => {
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
                let store = open_store(&config)?;
                let hash = voucherd_api::auth::hash_password(&password)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let user = store
                    .create_user(voucherd_store::users::UserRow {
                        id: uuid_v7(),
                        email,
                        password_hash: hash,
                        full_name,
                        role: "admin".into(),
                        created_at: voucherd_store::now(),
                    })
                    .await?;
                println!("created administrator {} ({})", user.email, user.id);
                Ok(())
            })
        }
    }
}

fn uuid_v7() -> String {
    voucherd_api::keys::new_id()
}
