//! A bot harness for end-to-end command tests: the fake Discord (REST + gateway), the CBS
//! simulator with users `obm` and `newbie`, a state directory, and settings pointing at
//! them (`obm` watched in the config, [`ADMIN_ROLE`] as `discord.admin_role`).
//! [`Harness::start_with`] adds config lines, e.g. `[[route]]`s. The bot, the pollers and
//! the simulator read one manual clock (at [`now`] until a test moves it), so "today" never
//! rolls over mid-test; serenity's own gateway timers run on the real clock.

use super::fake_discord::{FakeDiscord, SlashCommand, GUILD_ID};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use restorewatch::bot::{self, Bot, BotContext};
use restorewatch::cbs::CbsClient;
use restorewatch::clock::{ManualClock, SharedClock};
use restorewatch::config::Settings;
use restorewatch::poller::{Poller, PollerConfig};
use restorewatch::simulator::{SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Upper bound on any wait; the real waits are milliseconds.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub const SERVER: &str = "cbs-test";
/// The second backup server of [`Harness::start_two_servers`].
pub const SECOND: &str = "cbs-two";
/// The configured `discord.admin_role`.
pub const ADMIN_ROLE: u64 = 5_000_000_000_000_000_001;
/// Discord's MANAGE_GUILD bit, as registration and member permissions carry it.
pub const MANAGE_GUILD: u64 = 1 << 5;
/// Discord's flag for an ephemeral message.
pub const EPHEMERAL: u64 = 64;

/// The harness clock's start: the middle of a day, far from midnight.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 27, 12, 0, 0).unwrap()
}

pub fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A finished job of `login` on `day` at `hour`:00 UTC, one hour long.
pub fn sim_job(login: &str, set: &str, day: &str, hour: u32, status: &str) -> SimJob {
    let start = date(day).and_hms_opt(hour, 0, 0).unwrap().and_utc();
    SimJob {
        size_bytes: 4096,
        ..SimJob::new(login, set, start, Some(start + Duration::hours(1)), status)
    }
}

/// The fake Discord, the simulator, a state directory and the settings pointing at them.
pub struct Harness {
    pub fake: FakeDiscord,
    pub sim: SimHandle,
    /// The second backup server of [`Harness::start_two_servers`] ([`SECOND`]).
    pub second: Option<SimHandle>,
    pub dir: TempDir,
    pub settings: Settings,
    /// The clock of the bot, the pollers and the simulator.
    pub manual: ManualClock,
    pub clock: SharedClock,
    /// Bots started so far: each registers its commands once.
    started: std::cell::Cell<usize>,
}

/// A bot started by [`Harness::start_bot`], with the store it shares.
pub struct Running {
    pub bot: Bot,
    pub shutdown: CancellationToken,
    pub store: Store,
}

impl Running {
    /// Cancels the token and waits for the client to end cleanly.
    pub async fn stop(self) -> Store {
        self.shutdown.cancel();
        let stopped = timeout(WAIT, self.bot.stopped()).await;
        stopped
            .expect("bot stops in time")
            .expect("bot stops cleanly");
        self.store
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with("", "").await
    }

    /// Like [`Harness::start`], with `discord_extra` appended to the `[discord]` section and
    /// `extra` (more tables) after it.
    pub async fn start_with(discord_extra: &str, extra: &str) -> Harness {
        let fake = FakeDiscord::start().await;
        let manual = ManualClock::new(now());
        let sim = Simulator::new(SimConfig::with_clock(Arc::new(manual.clone())))
            .start()
            .await
            .expect("simulator starts");
        for login in ["obm", "newbie"] {
            sim.add_user(SimUser {
                login: login.into(),
                owner: String::new(),
                user_id: login.into(),
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
            [cbs]
            url = "{url}"
            server_name = "{SERVER}"
            sys_user = "{user}"
            sys_pwd = "{pwd}"
            request_timeout = "5s"

            [[watch]]
            login = "obm"

            [state]
            path = "{state}"

            [discord]
            token = "fake-token"
            alert_channel = "1"
            api_base = "{api}"
            guild_id = "{GUILD_ID}"
            admin_role = "{ADMIN_ROLE}"
            {discord_extra}
            {extra}
            "#,
            url = sim.url(),
            user = sim.sys_user(),
            pwd = sim.sys_pwd(),
            state = dir.path().display(),
            api = fake.api_base(),
        );
        let settings = Settings::from_toml_str(&toml, &|_| None).expect("test config");
        Harness {
            fake,
            sim,
            second: None,
            dir,
            settings,
            clock: Arc::new(manual.clone()),
            manual,
            started: std::cell::Cell::new(0),
        }
    }

    /// Two backup servers: [`SERVER`] (the simulator `sim`, users `obm` and `newbie`) and
    /// [`SECOND`] (`second`, users `obm` and `solo`), as `[[cbs]]` entries; `obm` is watched
    /// on both, `solo` on the second only.
    pub async fn start_two_servers() -> Harness {
        Self::start_two_servers_with("").await
    }

    /// [`Harness::start_two_servers`] with `extra` config lines (say, `[[route]]`s and
    /// more `[[watch]]`es).
    pub async fn start_two_servers_with(extra: &str) -> Harness {
        let mut h = Self::start().await;
        let second = Simulator::new(SimConfig::with_clock(h.clock.clone()))
            .start()
            .await
            .expect("second simulator starts");
        for login in ["obm", "solo"] {
            second.add_user(SimUser {
                login: login.into(),
                owner: String::new(),
                user_id: login.into(),
            });
        }
        let toml = format!(
            r#"
            [[cbs]]
            name = "{SERVER}"
            url = "{url}"
            sys_user = "{user}"
            sys_pwd = "{pwd}"
            request_timeout = "5s"

            [[cbs]]
            name = "{SECOND}"
            url = "{url2}"
            sys_user = "{user2}"
            sys_pwd = "{pwd2}"
            request_timeout = "5s"

            [[watch]]
            login = "obm"
            server = "{SERVER}"

            [[watch]]
            login = "obm"
            server = "{SECOND}"

            [[watch]]
            login = "solo"
            server = "{SECOND}"

            [state]
            path = "{state}"

            [discord]
            token = "fake-token"
            alert_channel = "1"
            api_base = "{api}"
            guild_id = "{GUILD_ID}"
            admin_role = "{ADMIN_ROLE}"
            {extra}
            "#,
            url = h.sim.url(),
            user = h.sim.sys_user(),
            pwd = h.sim.sys_pwd(),
            url2 = second.url(),
            user2 = second.sys_user(),
            pwd2 = second.sys_pwd(),
            state = h.dir.path().display(),
            api = h.fake.api_base(),
        );
        h.settings = Settings::from_toml_str(&toml, &|_| None).expect("two-server config");
        h.second = Some(second);
        h
    }

    pub fn cbs(&self) -> CbsClient {
        restorewatch::app::cbs_client(&self.settings).unwrap()
    }

    pub fn open_store(&self) -> Store {
        Store::open(self.dir.path()).unwrap()
    }

    pub fn poller(&self, store: &Store) -> Poller {
        let config = PollerConfig {
            poll: self.settings.poll.clone(),
            watch: self.settings.watch.clone(),
            max_concurrency: 4,
            retention_days: 35,
            alerts: Default::default(),
            routed_owners: Default::default(),
            summary: self.settings.summary.clone(),
            down_after: self.settings.cbs.down_after,
            fetch_reports: self.settings.cbs.fetch_reports,
        };
        Poller::new(self.cbs(), store.clone(), config, self.clock.clone())
    }

    pub async fn start_bot(&self) -> Running {
        self.start_bot_with(self.open_store()).await
    }

    pub async fn start_bot_with(&self, store: Store) -> Running {
        let running = self.start_bot_unwaited(store).await;
        // Registration follows READY, so once this bot's registration is in, its gateway
        // session is the one interactions go to (after a restart too).
        let registrations = self.fake.wait_for_requests(self.started.get(), |r| {
            r.method == "PUT" && r.path.ends_with(&format!("/guilds/{GUILD_ID}/commands"))
        });
        timeout(WAIT, registrations)
            .await
            .expect("commands registered");
        running
    }

    /// Starts the bot on `store` without waiting for its gateway session (one the fake
    /// refuses, say).
    pub async fn start_bot_unwaited(&self, store: Store) -> Running {
        // As the program does before it starts the bot: the store learns its servers.
        let servers = self.settings.servers();
        let names: Vec<&str> = servers.iter().map(|s| s.cbs.server_name.as_str()).collect();
        store.check_server_names(&names).expect("the store is ours");
        let shutdown = CancellationToken::new();
        let ctx = BotContext {
            store: store.clone(),
            settings: self.settings.clone(),
            clients: vec![self.cbs()],
            clock: self.clock.clone(),
            started_at: self.clock.now(),
        };
        let bot = bot::start(ctx, shutdown.clone()).await.expect("bot starts");
        self.started.set(self.started.get() + 1);
        Running {
            bot,
            shutdown,
            store,
        }
    }

    /// Injects `command` and waits for its callback.
    pub async fn invoke(&self, command: SlashCommand) -> (Value, String) {
        let interaction = self.fake.inject_interaction(command.build());
        let callback = timeout(WAIT, self.fake.wait_for_callback(interaction.id))
            .await
            .expect("the bot answered");
        (callback, interaction.token)
    }

    /// Injects a deferred command and waits for the follow-up that carries the answer.
    pub async fn invoke_deferred(&self, command: SlashCommand) -> (Value, Value) {
        let (callback, token) = self.invoke(command).await;
        assert_eq!(callback["type"], 5, "deferred first: {callback}");
        let followups = timeout(WAIT, self.fake.wait_for_followups(&token, 1))
            .await
            .expect("the answer follows");
        (callback, followups[0].clone())
    }

    pub fn assert_nothing_unexpected(&self) {
        assert!(
            self.fake.unexpected().is_empty(),
            "{:?}",
            self.fake.unexpected()
        );
    }
}

pub fn admin(command: SlashCommand) -> SlashCommand {
    command.permissions(MANAGE_GUILD | (1 << 10) | (1 << 11))
}

pub fn flags(message: &Value) -> u64 {
    message["flags"].as_u64().unwrap_or(0)
}

pub fn is_locked_down(allowed_mentions: &Value) -> bool {
    allowed_mentions == &json!({"parse": [], "users": [], "roles": []})
}
