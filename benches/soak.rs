//! Soak benchmark (`./x bench` runs 30 minutes; `./x soak SECONDS` a short one by hand):
//! does memory stay flat under a long steady load, and does it come back when the load stops?
//!
//! The release headless binary runs against in-process stand-ins (Chat Completions, Bot
//! API). For the configured time:
//!
//! - `SESSIONS` local clients send turns back to back over the API, each in a session of
//!   its own that it replaces with a new one every `TURNS_PER_SESSION` turns (so sessions,
//!   and everything kept per session, keep coming);
//! - signed Telegram webhooks arrive at a steady `WEBHOOKS_PER_SECOND` from strangers, and
//!   the owner's chats send a message every `OWNER_MESSAGE_EVERY` (turns through the channel:
//!   typing, live preview, the reply).
//!
//! RSS is sampled every `SAMPLE_EVERY` and printed as a series. Then the load stops, and
//! after `IDLE_FOR` the idle RSS is compared with the one before the load. Last, over the
//! history the run built (topped up to `LISTED_SESSIONS` sessions): `session.list` and
//! `session.get` latency, and the time from exec to the listening line on that database.
//! Figures are printed, not asserted.

#[path = "../tests/e2e/support/mock_llm.rs"]
mod mock_llm;
#[path = "support/pryx.rs"]
mod pryx_process;
#[path = "../tests/e2e/support/telegram.rs"]
#[allow(dead_code)]
mod telegram;
#[path = "support/webhook.rs"]
mod webhook;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_llm::MockLlm;
use pryx::client::{self, PryxApiClient};
use pryx_process::{rss_kib, spawn_pryx, Running};
use telegram::{text_update, FakeTelegram, TOKEN};
use webhook::{Connection, SECRET};

const SESSIONS: usize = 4;
const TURNS_PER_SESSION: usize = 20;
const WEBHOOKS_PER_SECOND: u64 = 200;
const OWNER_CHATS: i64 = 4;
const OWNER_MESSAGE_EVERY: Duration = Duration::from_secs(2);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(120);
const IDLE_FOR: Duration = Duration::from_secs(60);
const LISTED_SESSIONS: usize = 10_000;
const RESTARTS: usize = 5;

/// What the load has done so far, shared by its tasks.
#[derive(Default)]
struct Counters {
    turns: AtomicU64,
    webhooks: AtomicU64,
    owner_messages: AtomicU64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn config(telegram: &FakeTelegram) -> String {
    let owners: Vec<String> = (1..=OWNER_CHATS).map(|c| c.to_string()).collect();
    format!(
        "[secrets]\nbackend = \"injected\"\n\n[telegram]\nbot_token = \"secret:telegram/bot\"\nmode = \"webhook\"\n\
         public_url = \"https://pryx.example.org\"\nwebhook_secret = \"secret:telegram/webhook\"\n\
         api_base = \"{}\"\nallowed_chats = [{}]\n",
        telegram.api_base(),
        owners.join(", ")
    )
}

async fn start(home: &Path, llm: &MockLlm, telegram: &FakeTelegram) -> Running {
    let env = [("PRYX_SECRET_TELEGRAM_BOT", TOKEN), ("PRYX_SECRET_TELEGRAM_WEBHOOK", SECRET), ("RUST_LOG", "error")];
    spawn_pryx(home, &llm.base_url(), &config(telegram), &env).await
}

/// One local client: turns back to back, a new session every `TURNS_PER_SESSION` turns.
async fn send_turns(url: String, token: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    let client = client::connect(&url, &token).await.expect("connect");
    while !stop.load(Ordering::Relaxed) {
        let session = client.session_create(None).await.expect("create a session");
        for turn in 0..TURNS_PER_SESSION {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let text = format!("turn {turn}: what is on my list today?");
            let started = client.message_send(session.id.clone(), text).await.expect("send");
            let mut events = client.turn_subscribe(started.turn_id).await.expect("subscribe");
            while let Some(Ok(envelope)) = events.next().await {
                if envelope.event.is_terminal() {
                    break;
                }
            }
            counters.turns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Strangers' webhooks at a steady rate (a tenth of them delivered twice, as Telegram does
/// when unsure), and now and then a message from one of the owner's chats.
async fn send_webhooks(host: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    let mut connection = Connection::open(&host).await;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / WEBHOOKS_PER_SECOND as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_owner_message = Instant::now();
    let mut update_id = 1_000_000_i64;
    let mut sent = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        update_id += 1;
        let update = if last_owner_message.elapsed() >= OWNER_MESSAGE_EVERY {
            last_owner_message = Instant::now();
            counters.owner_messages.fetch_add(1, Ordering::Relaxed);
            text_update(update_id, 1 + update_id % OWNER_CHATS, "what changed since this morning?")
        } else {
            text_update(update_id, 10_000 + update_id % 500, &format!("hello from a stranger, {update_id}"))
        };
        let update = update.to_string();
        assert_eq!(connection.deliver(&update).await, 200, "a webhook was not acknowledged");
        if sent % 10 == 0 {
            assert_eq!(connection.deliver(&update).await, 200, "a redelivery was not acknowledged");
        }
        sent += 1;
        counters.webhooks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Top the history up to `LISTED_SESSIONS` sessions (a few messages each).
async fn fill_sessions(running: &Running) {
    let client = client::connect(&running.url, &running.token).await.expect("connect");
    let existing = client.session_list().await.expect("list").len();
    let missing = LISTED_SESSIONS.saturating_sub(existing);
    let workers = 8;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (url, token) = (running.url.clone(), running.token.clone());
        tasks.push(tokio::spawn(async move {
            let client = client::connect(&url, &token).await.expect("connect");
            for _ in (worker..missing).step_by(workers) {
                client.session_create(None).await.expect("create a session");
            }
        }));
    }
    for task in tasks {
        task.await.expect("filling sessions");
    }
    println!("soak: {existing} sessions after the load, topped up to {}", existing.max(LISTED_SESSIONS));
}

fn percentiles(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms", ms(at(0.5)), ms(at(0.9)), ms(at(1.0)))
}

async fn measure_reads(running: &Running, home: &Path) {
    let client = client::connect(&running.url, &running.token).await.expect("connect");
    let mut list_times = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let began = Instant::now();
        sessions = client.session_list().await.expect("list");
        list_times.push(began.elapsed());
    }
    println!("soak: session.list over {} sessions (20 calls): {}", sessions.len(), percentiles(list_times));
    // How much of that is the query: the same rows read here, straight from the database.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(home.join("data/pryx.db")).read_only(true);
    let mut db = sqlx::ConnectOptions::connect(&options).await.expect("open the store");
    let mut query_times = Vec::new();
    for _ in 0..20 {
        let began = Instant::now();
        let rows = sqlx::query(
            "SELECT id, title, channel, created_at, updated_at, message_count FROM sessions \
             ORDER BY updated_at DESC, id",
        )
        .fetch_all(&mut db)
        .await
        .expect("query");
        query_times.push(began.elapsed());
        assert_eq!(rows.len(), sessions.len());
    }
    println!("soak: of which the query (sqlx, in this process): {}", percentiles(query_times));
    let busiest = sessions.iter().max_by_key(|s| s.message_count).expect("a session");
    let mut get_times = Vec::new();
    for _ in 0..20 {
        let began = Instant::now();
        client.session_get(busiest.id.clone()).await.expect("get");
        get_times.push(began.elapsed());
    }
    println!(
        "soak: session.get of a session with {} messages (20 calls): {}",
        busiest.message_count,
        percentiles(get_times)
    );
}

fn main() {
    pryx::install_tls_provider();
    let soak_for =
        Duration::from_secs(std::env::var("PRYX_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30 * 60));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let llm = MockLlm::start().await;
        let telegram = FakeTelegram::start().await;
        let home = tempfile::tempdir().expect("home");
        let mut running = start(home.path(), &llm, &telegram).await;
        let host = running.url.trim_start_matches("http://").to_owned();
        webhook::wait_until_connected(&host).await;
        let pid = running.child.id().expect("pryx is running");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle_before = rss_kib(pid);
        println!(
            "soak: {} s of {SESSIONS} sessions' turns back to back + {WEBHOOKS_PER_SECOND} webhooks/s + an owner message every {} s; idle RSS before: {:.1} MiB",
            soak_for.as_secs(),
            OWNER_MESSAGE_EVERY.as_secs(),
            mib(idle_before)
        );

        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut load = Vec::new();
        for _ in 0..SESSIONS {
            load.push(tokio::spawn(send_turns(
                running.url.clone(),
                running.token.clone(),
                stop.clone(),
                counters.clone(),
            )));
        }
        load.push(tokio::spawn(send_webhooks(host.clone(), stop.clone(), counters.clone())));

        let began = Instant::now();
        let mut series = Vec::new();
        println!("soak:      t  RSS (MiB)    turns  webhooks  owner msgs");
        while began.elapsed() < soak_for {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let rss = rss_kib(pid);
            series.push((began.elapsed(), rss));
            println!(
                "soak: {:>5} s  {:>9.1}  {:>7}  {:>8}  {:>10}",
                began.elapsed().as_secs(),
                mib(rss),
                counters.turns.load(Ordering::Relaxed),
                counters.webhooks.load(Ordering::Relaxed),
                counters.owner_messages.load(Ordering::Relaxed)
            );
            llm.forget_requests();
        }
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.expect("load task");
        }
        let at_warm_up = series.iter().find(|(t, _)| *t >= WARM_UP).map(|&(_, rss)| rss);
        let (last, peak) = (series.last().map_or(0, |s| s.1), series.iter().map(|s| s.1).max().unwrap_or(0));
        match at_warm_up {
            Some(warm) => println!(
                "soak: RSS at {} s {:.1} MiB, at the end {:.1} MiB, peak {:.1} MiB: grew {:+.1} MiB after warm-up (peak {:+.1} MiB)",
                WARM_UP.as_secs(),
                mib(warm),
                mib(last),
                mib(peak),
                (last as f64 - warm as f64) / 1024.0,
                (peak as f64 - warm as f64) / 1024.0
            ),
            None => println!("soak: shorter than the {} s warm-up: no growth figure", WARM_UP.as_secs()),
        }
        println!(
            "soak: {} turns, {} webhooks, {} owner messages in {:.0} s",
            counters.turns.load(Ordering::Relaxed),
            counters.webhooks.load(Ordering::Relaxed),
            counters.owner_messages.load(Ordering::Relaxed),
            began.elapsed().as_secs_f64()
        );

        let idle_began = Instant::now();
        while idle_began.elapsed() < IDLE_FOR {
            tokio::time::sleep(SAMPLE_EVERY).await;
            println!("soak: idle {:>3} s  RSS {:.1} MiB", idle_began.elapsed().as_secs(), mib(rss_kib(pid)));
        }
        let idle_after = rss_kib(pid);
        println!(
            "soak: {} s after the load stopped RSS is {:.1} MiB, {:.2}× the idle RSS before the load ({:.1} MiB)",
            IDLE_FOR.as_secs(),
            mib(idle_after),
            idle_after as f64 / idle_before as f64,
            mib(idle_before)
        );

        fill_sessions(&running).await;
        measure_reads(&running, home.path()).await;

        let mut restarts = Vec::new();
        for _ in 0..RESTARTS {
            stop_gracefully(&mut running).await;
            running = start(home.path(), &llm, &telegram).await;
            restarts.push(running.exec_to_listening);
        }
        let db_size = std::fs::metadata(home.path().join("data/pryx.db")).map_or(0, |m| m.len());
        println!(
            "soak: restart on that database ({:.1} MiB), exec → listening line ({RESTARTS} restarts): {}",
            db_size as f64 / 1048576.0,
            percentiles(restarts)
        );
        let _ = running.child.kill().await;
    });
}

/// SIGTERM, then wait for the process to exit (as a service manager stops it).
async fn stop_gracefully(running: &mut Running) {
    let pid = running.child.id().expect("pryx is running");
    // SAFETY: kill(2) with a PID this process started and has not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(30), running.child.wait()).await;
}
