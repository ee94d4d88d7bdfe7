//! The `restorewatch` binary: parses the command line, sets up logging, loads the
//! configuration and hands over to the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use restorewatch::app::{self, App, ConfiguredSink};
use restorewatch::check;
use restorewatch::clock::{SharedClock, SystemClock};
use restorewatch::config::{self, ConfigError, Loaded, Settings};
use restorewatch::demo::{run_demo, DemoOptions};
use restorewatch::digest::{previous_day, Digest};
use restorewatch::render::digest_text;
use restorewatch::simulator::{serve, Pace, SimulateArgs, WorkloadSource};
use restorewatch::sink::drain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that does not load.
const EXIT_CONFIG: u8 = 2;
/// Exit code when a second signal (or the stop's time limit) cut the stop short.
const EXIT_CUT_SHORT: u8 = 130;
/// How long an exit at once waits for the store to be flushed.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Check the configuration and environment, then ask the CBS and Discord whether they
    /// answer as needed (exit 2: bad config; 1: a check failed).
    Check {
        /// Lint the file and the environment only: no secrets needed, no network.
        #[arg(long)]
        offline: bool,
        /// Print the effective configuration, secrets redacted, with where each value came
        /// from (default, file, environment); needs no secrets and asks nobody.
        #[arg(long, conflicts_with = "offline")]
        print_config: bool,
    },
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
        timezone: restorewatch::tz::Tz,
    },
    /// Print a shell completion script (e.g. `restorewatch completions bash > /etc/bash_completion.d/restorewatch`).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Show restorewatch at work against a built-in simulator, no CBS or Discord needed.
    Demo {
        /// Stop after this long at the latest (e.g. 90s, 2m; at most 1h).
        #[arg(long, default_value = "90s", value_parser = demo_duration)]
        duration: std::time::Duration,
        /// Simulated backup users (1 to 1000).
        #[arg(long, default_value_t = 6, value_parser = demo_users)]
        users: usize,
        /// Seed of the simulated workload.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// The log filter unless `RESTOREWATCH_LOG` sets one: serenity's own info lines (shard
/// starts, heartbeats) are noise to an operator.
const DEFAULT_LOG_FILTER: &str = "info,serenity=warn";
/// The commit the binary was built from (see build.rs).
const GIT_REVISION: &str = env!("BUILD_GIT_REVISION");

/// The demo's longest run: it shows the bot at work, it is no soak test.
const DEMO_DURATION_MAX: std::time::Duration = std::time::Duration::from_secs(3600);
/// The demo's most users: a few show it, a thousand its grouping; more is a benchmark's job
/// (`simulate --users N` and the bench).
const DEMO_USERS_MAX: usize = 1000;

fn demo_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > DEMO_DURATION_MAX {
        return Err("at most 1h".to_owned());
    }
    Ok(duration)
}

fn demo_users(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=DEMO_USERS_MAX).contains(&n) => Ok(n),
        _ => Err(format!("a number from 1 to {DEMO_USERS_MAX}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` idles for hours between bursts of work: without glibc's per-thread cache its
    // freed pages go back to the system. Returns only if it did not restart.
    let not_restarted = matches!(cli.command, None | Some(Command::Run))
        .then(restorewatch::memory::restart_without_thread_cache)
        .flatten();
    restorewatch::logging::init(
        tracing_subscriber::EnvFilter::try_from_env(config::LOG_ENV)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
    );
    if let Some(e) = not_restarted {
        tracing::warn!(
            error = %e,
            "could not restart without glibc's thread cache; idle memory stays higher"
        );
    }
    // Before the runtime's threads take arenas of their own.
    restorewatch::memory::tune_allocator();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("{e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Whatever is still running (a gateway close that was cut short, a blocked flush) is
    // not waited for: the runtime's drop would wait for blocking tasks without limit.
    runtime.shutdown_background();
    code
}

/// Loads the settings, or prints the one-line reason and picks the config exit code.
fn settings(cli_config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    loaded(cli_config, false).map(|l| l.settings)
}

/// [`settings`] with the path and origins; `offline`: secrets not needed.
fn loaded(cli_config: Option<&std::path::Path>, offline: bool) -> Result<Loaded, ExitCode> {
    Settings::load_with(cli_config, offline).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock: SharedClock = Arc::new(SystemClock);
    let config = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let loaded = match loaded(config, false) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            // `run` answers slash commands, which only the configured server may use.
            if let Some(Err(e)) = loaded.settings.discord.as_ref().map(|d| d.require_guilds()) {
                eprintln!("{e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            let s = &loaded.settings;
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                revision = GIT_REVISION,
                config = %loaded.path.display(),
                poll = %s.poll.schedule,
                digest = %s.digest.schedule,
                timezone = %s.cbs.timezone,
                // The allocator's settings this process started with (glibc's copy: the
                // kernel's view in /proc/PID/environ is cut after the first value).
                glibc_tunables = std::env::var(restorewatch::memory::TUNABLES_ENV).ok(),
                "restorewatch starting"
            );
            let app = App::build(loaded.settings, clock).await?;
            let store = app.store.clone();
            let stop = Stop::on_signals();
            let serving = std::pin::pin!(app::serve(app, stop.graceful.clone()));
            tokio::select! {
                served = serving => {
                    served?;
                    tracing::info!("restorewatch stopped");
                    Ok(ExitCode::SUCCESS)
                }
                _ = stop.at_once.cancelled() => {
                    // sled also flushes on its own every half second; this saves the rest.
                    let flushed = tokio::time::timeout(
                        FLUSH_LIMIT,
                        tokio::task::spawn_blocking(move || store.flush()),
                    )
                    .await;
                    match flushed {
                        Ok(Ok(Ok(()))) => tracing::warn!(
                            "exiting at once: the stop was cut short (see above for what was \
                             in flight); the store was flushed"
                        ),
                        _ => tracing::error!(
                            "exiting at once: the stop was cut short and the store could not \
                             be flushed in time; it recovers to its last flush on the next start"
                        ),
                    }
                    Ok(ExitCode::from(EXIT_CUT_SHORT))
                }
            }
        }
        Command::Once => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let app = App::build_now(settings, clock).await?;
            let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
            let (cycle, drained) = app.cycle_and_deliver(&sink).await?;
            app.store.flush()?;
            let s = &cycle.summary;
            eprintln!(
                "cycle done: {} users, {} requests, {} errors, {} alerts; {} events delivered, {} dropped, {} pending",
                s.users_polled,
                s.requests,
                s.errors.len(),
                s.alerts,
                drained.delivered,
                drained.dropped,
                drained.pending
            );
            if let Some(e) = &drained.error {
                eprintln!("error: delivery failed: {e}");
            }
            if drained.dropped > 0 {
                eprintln!(
                    "error: Discord rejected {} event(s) as malformed (HTTP 400); they were \
                     dropped undelivered (see the error lines above for each event and Discord's reason)",
                    drained.dropped
                );
            }
            for e in &s.errors {
                eprintln!("error: {} on {}: {}", e.login_name, e.date, e.message);
            }
            Ok(
                if cycle.ok() && drained.error.is_none() && drained.dropped == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Check {
            offline,
            print_config,
        } => {
            let loaded = match loaded(config, offline || print_config) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let mut out = std::io::stdout();
            if print_config {
                check::print_config(&loaded, &mut out)?;
                return Ok(ExitCode::SUCCESS);
            }
            // What stops `run` is a config error here too.
            if let Some(Err(e)) = loaded.settings.discord.as_ref().map(|d| d.require_guilds()) {
                eprintln!("{e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            check::offline(&loaded, &clock, &mut out)?;
            if offline {
                return Ok(ExitCode::SUCCESS);
            }
            let ok = check::check(&loaded.settings, clock, &mut out).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "restorewatch", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Digest { date, print } => {
            let settings = match settings(config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let app = App::build_now(settings, clock.clone()).await?;
            let tz = app.settings.cbs.timezone;
            let date = date.unwrap_or_else(|| previous_day(clock.now(), tz));
            let today = clock.now().with_timezone(&tz).date_naive();
            if date > today {
                eprintln!(
                    "error: --date {date} is in the future (today is {today} in {}); no \
                     digest was built",
                    tz.name()
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            let kept = restorewatch::config::kept_days(
                app.settings.state.retention_days,
                &app.settings.poll,
            );
            if date < restorewatch::config::earliest_kept(today, kept) {
                eprintln!(
                    "error: --date {date} is past the store's retention (state.retention_days, \
                     {kept} days): its records were pruned; no digest was built"
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            if print {
                let digest = Digest::from_store(&app.store, date, tz, Vec::new())?;
                print!("{}", digest_text(&digest, today));
                return Ok(ExitCode::SUCCESS);
            }
            let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
            app.queue_digest(date)?;
            app.fold_backlog();
            let drained = drain(&app.store, &sink).await?;
            app.store.flush()?;
            Ok(match drained.error {
                None if drained.dropped == 0 => ExitCode::SUCCESS,
                None => {
                    eprintln!(
                        "error: Discord rejected the digest as malformed (HTTP 400); it was \
                         dropped undelivered (see the error lines above for Discord's reason)"
                    );
                    ExitCode::FAILURE
                }
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

/// How `run` is told to stop.
struct Stop {
    /// Cancelled on the first Ctrl-C or SIGTERM: stop taking work and close down.
    graceful: CancellationToken,
    /// Cancelled on a second signal, or when the graceful stop outlasts [`app::STOP_LIMIT`]:
    /// flush the store and exit.
    at_once: CancellationToken,
}

impl Stop {
    fn on_signals() -> Stop {
        let stop = Stop {
            graceful: CancellationToken::new(),
            at_once: CancellationToken::new(),
        };
        let (graceful, at_once) = (stop.graceful.clone(), stop.at_once.clone());
        let mut signals = Signals::listen();
        tokio::spawn(async move {
            signals.recv().await;
            tracing::info!(
                limit = %humantime::format_duration(app::STOP_LIMIT),
                "shutting down (a second signal exits at once)"
            );
            graceful.cancel();
            // The flush gets its own moment inside the limit.
            let limit = app::STOP_LIMIT - FLUSH_LIMIT;
            tokio::select! {
                _ = signals.recv() => tracing::warn!("second signal: exiting at once"),
                _ = tokio::time::sleep(limit) => tracing::error!(
                    limit = %humantime::format_duration(limit),
                    "the stop is taking too long: exiting at once"
                ),
            }
            at_once.cancel();
        });
        stop
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let mut signals = Signals::listen();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// Ctrl-C and SIGTERM, listened to from creation on, so that a second signal right after
/// the first is not missed.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Signals {
                    streams: Some((int, term)),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    Signals { streams: None }
                }
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next Ctrl-C or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.streams {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
