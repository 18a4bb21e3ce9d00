//! `sockudo-fleet`: run a SockudoCluster manifest on this machine, or print what it renders.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use sockudo_fleet::{Fleet, FleetError, Manifest, Options, plan::Plan, report};

#[derive(Parser)]
#[command(
    name = "sockudo-fleet",
    about = "Run a SockudoCluster manifest locally, without Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the backends and nodes of MANIFEST; Ctrl-C stops everything.
    Run {
        manifest: PathBuf,
        /// Nodes listen on consecutive ports from here (then metrics, then backends).
        #[arg(long)]
        base_port: Option<u16>,
        /// The sockudo binary (default: SOCKUDO_BIN, next to this program, or on PATH).
        #[arg(long)]
        sockudo: Option<PathBuf>,
        /// Seconds nodes drain on stop (default: the manifest's shutdown grace period).
        #[arg(long)]
        grace: Option<u64>,
    },
    /// Print the server config, Secret files and backend configs the operator renders.
    Render { manifest: PathBuf },
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn say(msg: &str) {
    println!("[fleet] {msg}");
}

fn run(manifest: PathBuf, options: Options) -> Result<(), FleetError> {
    let manifest = Manifest::from_file(&manifest)?;
    let plan = Plan::of(&manifest)?;
    for e in &plan.external {
        say(e);
    }
    for w in &plan.warnings {
        say(&format!("operator warning: {w}"));
    }
    say(&format!(
        "starting {} ({} node(s), {} managed Redis, {} NATS server(s))",
        plan.name,
        plan.replicas,
        plan.redis.len(),
        plan.nats.as_ref().map_or(0, |n| n.replicas)
    ));
    let mut fleet = Fleet::start_with(&manifest, options)?;
    println!("\n{}", report::endpoints(&fleet));
    println!("{}", report::pusher_js_snippet(&fleet));
    say(&format!(
        "files in {}; Ctrl-C stops everything",
        fleet.dir().display()
    ));
    while !STOP.load(Ordering::SeqCst) {
        if let Some((name, status, _)) = fleet.exited_node() {
            say(&format!("{name} exited ({status}); the rest keep running"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    say("stopping: nodes drain, then backends stop");
    fleet.stop();
    say("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Render { manifest } => Manifest::from_file(&manifest)
            .and_then(|m| Plan::of(&m))
            .map(|plan| print!("{}", report::render(&plan))),
        Cmd::Run {
            manifest,
            base_port,
            sockudo,
            grace,
        } => {
            install_signal_handlers();
            run(
                manifest,
                Options {
                    sockudo,
                    base_port,
                    echo_logs: true,
                    shutdown_grace: grace,
                    // The main thread lives as long as the fleet: children die with the harness.
                    die_with_parent: true,
                },
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sockudo-fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
