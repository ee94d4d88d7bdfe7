//! The `restorewatch` binary: parses the command line, sets up logging, loads the
//! configuration and hands over to the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use restorewatch::app::{self, App, ConfiguredSink};
use restorewatch::clock::{SharedClock, SystemClock};
use restorewatch::config::{ConfigError, Settings};
use restorewatch::demo::{run_demo, DemoOptions};
use restorewatch::digest::{digest_text, previous_day, Digest};
use restorewatch::simulator::{serve, Pace, SimulateArgs, WorkloadSource};
use restorewatch::sink::drain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that does not load.
const EXIT_CONFIG: u8 = 2;

/// Watches AhsayCBS restore jobs and tells the team in Discord when one fails.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (else $RESTOREWATCH_CONFIG, else config/restorewatch.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Poll on schedule and deliver until SIGINT/SIGTERM (the default).
    Run,
    /// One poll cycle and delivery, then exit (1 if a CBS call or the delivery failed).
    Once,
    /// Check the configuration and ask the CBS about each watched user for today.
    Check,
    /// Build the daily digest now and deliver it (or only print it).
    Digest {
        /// The day (YYYY-MM-DD, server zone); default: yesterday.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Print it here instead of delivering it.
        #[arg(long)]
        print: bool,
    },
    /// Ask the running bot's /healthz (at `[server] listen`); exit 0 if healthy, else 1.
    Healthcheck,
    /// Run the CBS simulator as a server of its own.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8620")]
        listen: SocketAddr,
        /// Serve the jobs of this scenario file (see config/scenario.example.toml).
        #[arg(long, conflicts_with_all = ["users", "seed"])]
        scenario: Option<PathBuf>,
        /// Generate a workload for this many users.
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Seed of the generated workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The simulated server's time zone.
        #[arg(long, default_value = "UTC")]
        timezone: chrono_tz::Tz,
    },
    /// Show restorewatch at work against a built-in simulator, no CBS or Discord needed.
    Demo {
        /// Stop after this long at the latest (e.g. 90s, 2m).
        #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Simulated backup users.
        #[arg(long, default_value_t = 6)]
        users: usize,
        /// Seed of the simulated workload.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    restorewatch::logging::init(
        tracing_subscriber::EnvFilter::try_from_env("RESTOREWATCH_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("{e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the settings, or prints the one-line reason and picks the config exit code.
fn settings(cli_config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    Settings::load(cli_config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock: SharedClock = Arc::new(SystemClock);
    let config = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            // `run` answers slash commands, which only the configured server may use.
            if let Some(Err(e)) = settings.discord.as_ref().map(|d| d.require_guilds()) {
                eprintln!("{e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            app::run(settings, clock, shutdown_on_signal()).await?;
            tracing::info!("restorewatch stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Once => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let app = App::build(settings, clock)?;
            let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
            let (cycle, drained) = app.cycle_and_deliver(&sink).await?;
            app.store.flush()?;
            let s = &cycle.summary;
            eprintln!(
                "cycle done: {} users, {} requests, {} errors, {} alerts; {} events delivered, {} pending",
                s.users_polled, s.requests, s.errors.len(), s.alerts, drained.delivered, drained.pending
            );
            if let Some(e) = &drained.error {
                eprintln!("error: delivery failed: {e}");
            }
            for e in &s.errors {
                eprintln!("error: {} on {}: {}", e.login_name, e.date, e.message);
            }
            Ok(if cycle.ok() && drained.error.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let ok = app::check(&settings, clock, &mut std::io::stdout()).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Digest { date, print } => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let app = App::build(settings, clock.clone())?;
            let tz = app.settings.cbs.timezone;
            let date = date.unwrap_or_else(|| previous_day(clock.now(), tz));
            if print {
                let digest = Digest::from_store(&app.store, date, tz, Vec::new())?;
                print!("{}", digest_text(&digest));
                return Ok(ExitCode::SUCCESS);
            }
            let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
            app.queue_digest(date)?;
            let drained = drain(&app.store, &sink).await?;
            app.store.flush()?;
            Ok(match drained.error {
                None => ExitCode::SUCCESS,
                Some(e) => {
                    eprintln!("error: delivery failed: {e}");
                    ExitCode::FAILURE
                }
            })
        }
        Command::Healthcheck => {
            let Ok(settings) = settings(config) else {
                return Ok(ExitCode::FAILURE);
            };
            let Some(listen) = settings.server.listen else {
                eprintln!("healthcheck: [server] listen is not set, there is nothing to ask");
                return Ok(ExitCode::FAILURE);
            };
            Ok(match restorewatch::server::healthcheck(listen).await {
                Ok((healthy, body)) => {
                    println!("{body}");
                    if healthy {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("healthcheck: {e:#}");
                    ExitCode::FAILURE
                }
            })
        }
        Command::Simulate {
            listen,
            scenario,
            users,
            seed,
            timezone,
        } => {
            let source = match scenario {
                Some(path) => WorkloadSource::Scenario(path),
                None => WorkloadSource::Generated {
                    users,
                    seed,
                    pace: Pace::Realistic,
                },
            };
            let args = SimulateArgs {
                timezone,
                ..SimulateArgs::new(listen, source)
            };
            serve(args, shutdown_on_signal())
                .await
                .context("simulator")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            users,
            seed,
        } => {
            let options = DemoOptions {
                max_duration: duration,
                users,
                seed,
            };
            let report =
                run_demo(options, Box::new(std::io::stdout()), shutdown_on_signal()).await?;
            println!(
                "demo finished: {} poll cycles, {} jobs recorded, {} alerts, {} events shown{}",
                report.cycles,
                report.jobs_recorded,
                report.alerts,
                report.events_delivered,
                if report.completed {
                    ""
                } else {
                    " (stopped before every job ended)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
