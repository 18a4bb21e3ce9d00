//! The `sockudo` binary: run a node, check a config, probe a node, print the config schema.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sockudo_config::{LogFormat, ServerConfig};
use tracing_subscriber::EnvFilter;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "sockudo", version, about = "Pusher-compatible realtime server")]
struct Cli {
    /// Config file (JSON, JSON with comments, or TOML by extension). Without one: defaults plus
    /// environment overrides.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validates a config file (with environment overrides) without starting.
    CheckConfig { file: PathBuf },
    /// Probes a running node's readiness; exit 0 when ready.
    Healthcheck {
        /// Default: http://127.0.0.1:$PORT/ready (PORT defaults to 6001).
        #[arg(long)]
        url: Option<String>,
    },
    /// Prints the JSON Schema of the config file.
    ConfigSchema,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logging(config: &ServerConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let result = sockudo_config::load(Some(file), env)
        .map_err(|e| e.to_string())
        .and_then(|c| sockudo_server::apps::resolve_apps(&c.apps).map_err(|e| e.to_string()));
    match result {
        Ok(apps) => {
            println!("{}: OK ({} apps)", file.display(), apps.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let port = env("PORT").unwrap_or_else(|| "6001".into());
        format!("http://127.0.0.1:{port}/ready")
    });
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("{url}: {}", r.status());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("{url}: {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match sockudo_config::load(path.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockudo: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    let server = match sockudo_server::start(config, path).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            eprintln!("sockudo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(app) = &server.generated_app {
        // Printed on stdout so a developer (or a test) can pick the credentials up.
        println!(
            "No apps configured; generated one:\n  app_id: {}\n  key:    {}\n  secret: {}",
            app.id, app.key, app.secret
        );
    }
    let lifecycle = server.state.lifecycle.clone();
    let grace = Duration::from_secs(server.state.config.shutdown_grace_period);
    tokio::spawn(async move {
        sockudo_server::shutdown::termination_signal().await;
        lifecycle.drain(grace).await;
    });
    server.wait().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Healthcheck { url }) => healthcheck(url).await,
        Some(Command::ConfigSchema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sockudo_config::json_schema())
                    .expect("schema serialises")
            );
            ExitCode::SUCCESS
        }
        None => serve(cli.config).await,
    }
}
