//! Channel load benchmark (`./x bench`, or `cargo bench --bench channels`): how many
//! Telegram webhooks Pryx takes, how fast it answers them while the model is busy, and
//! whether it loses or doubles any.
//!
//! The release binary runs in webhook mode against in-process stand-ins (Bot API, LLM).
//! Deliveries (each with the secret token, from chats that are not paired, one in ten
//! delivered twice as Telegram does when unsure) hit `/webhooks/telegram` over kept-alive
//! connections, three ways:
//!
//! - **saturating** one core: Pryx pinned to one CPU and this load generator to the other,
//!   32 connections delivering back to back; the acks per second and the server's CPU time
//!   per delivery (read from `/proc`) are its throughput, with nothing else running;
//! - **bursts**, while 50 owner chats' turns stream slowly from the model stand-in: 50, 500
//!   and 5,000 deliveries fired at the same instant, each on its own connection; latency is
//!   from the burst's start to each ack, so at 500 it is bounded below by 500 ÷ throughput
//!   (Little's law) however quick one delivery is;
//! - **sustained**, while the turns stream: 500 connections delivering at a steady offered
//!   rate, the way a platform delivers; latency is from each delivery's scheduled time (a
//!   late send counts against Pryx, as wrk2 does it).
//!
//! Afterwards the inbox is read from SQLite to check that every delivered update is there
//! exactly once. Three instances run side by side (telemetry off, on, and on with OTLP export
//! to a local sink), taking turns in rotating order, so the machine's drift hits all alike;
//! their CPU time per delivery gives telemetry's overhead end to end. For throughput a
//! fourth instance, set up exactly as "off", shows how far two identical instances differ:
//! that is the resolution of the end-to-end comparison (a few percent on two shared cores;
//! `benches/telemetry.rs` measures the cost per span precisely).
//! Figures are printed, not asserted.

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/e2e/support/mock_llm.rs"]
mod mock_llm;
#[path = "support/otlp_sink.rs"]
mod otlp_sink;
#[path = "support/pryx.rs"]
#[allow(dead_code)]
mod pryx_process;
#[path = "../tests/e2e/support/telegram.rs"]
#[allow(dead_code)]
mod telegram;
#[path = "support/webhook.rs"]
mod webhook;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mock_llm::{MockLlm, Reply};
use pryx_process::{spawn_pryx, Running};
use telegram::{text_update, FakeTelegram, TOKEN};
use webhook::Connection;

use webhook::SECRET;
const STREAMING_CHATS: i64 = 50;
const BURSTS: [usize; 3] = [50, 500, 5000];
const CONNECTIONS: usize = 500;
const SUSTAINED_RATES: [u32; 3] = [2_000, 4_000, 6_000];
const SUSTAINED_FOR: Duration = Duration::from_secs(4);
/// Rounds of saturating load per instance, in rotating order, for the throughput comparison.
const CPU_ROUNDS: usize = 8;
const SATURATED_FOR: Duration = Duration::from_secs(3);
/// Enough connections delivering back to back to keep one core busy.
const SATURATING_CONNECTIONS: usize = 32;

struct Instance {
    label: &'static str,
    running: Running,
    home: tempfile::TempDir,
    /// Update ids delivered so far (each distinct id counted once).
    delivered: usize,
    /// The id the next new update gets.
    next_update_id: i64,
}

/// The three ways telemetry can be set: off, on (spans kept locally), on with OTLP export;
/// and off again, the control for the throughput comparison (last: it runs only there).
struct Variant {
    label: &'static str,
    telemetry: String,
}

fn variants(otlp_sink: std::net::SocketAddr) -> [Variant; 4] {
    [
        Variant { label: "telemetry off         ", telemetry: "enabled = false\n".into() },
        Variant { label: "telemetry on          ", telemetry: "enabled = true\n".into() },
        Variant {
            label: "telemetry on + export ",
            telemetry: format!("enabled = true\n\n[telemetry.otlp]\nendpoint = \"http://{otlp_sink}\"\n"),
        },
        Variant { label: "telemetry off, again  ", telemetry: "enabled = false\n".into() },
    ]
}

async fn start(llm: &MockLlm, telegram: &FakeTelegram, variant: &Variant) -> Instance {
    let home = tempfile::tempdir().expect("home");
    let allowed: Vec<String> = (1..=STREAMING_CHATS).map(|c| c.to_string()).collect();
    // The 5,000 burst opens 5,500 connections at once, past the default cap of 1,024 (at
    // the cap the rest would wait, and the first ones, idle until all are open, would meet
    // the header timeout): a flood no platform sends (Telegram uses at most 100).
    let config = format!(
        "[secrets]\nbackend = \"injected\"\n\n[telemetry]\n{}\n[telegram]\n\
         bot_token = \"secret:telegram/bot\"\nmode = \"webhook\"\npublic_url = \"https://pryx.example.org\"\n\
         webhook_secret = \"secret:telegram/webhook\"\napi_base = \"{}\"\nallowed_chats = [{}]\n\n\
         [server]\nmax_connections = 8192\n",
        variant.telemetry,
        telegram.api_base(),
        allowed.join(", ")
    );
    let env = [("PRYX_SECRET_TELEGRAM_BOT", TOKEN), ("PRYX_SECRET_TELEGRAM_WEBHOOK", SECRET), ("RUST_LOG", "error")];
    let running = spawn_pryx(home.path(), &llm.base_url(), &config, &env).await;
    Instance { label: variant.label, running, home, delivered: 0, next_update_id: 1_000_000 }
}

impl Instance {
    fn host(&self) -> &str {
        self.running.url.trim_start_matches("http://")
    }

    async fn connections(&self, count: usize) -> Vec<Connection> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            connections.push(Connection::open(self.host()).await);
        }
        connections
    }

    /// CPU time the server has used so far.
    fn cpu_time(&self) -> Duration {
        cpu::cpu_time(&self.running.child.id().expect("pryx is running").to_string(), |_| true)
    }

    /// `count` updates with fresh ids from stranger chats (20 of them: each is refused once,
    /// later messages only recorded), plus one in ten again as a redelivery; all of them
    /// are to be delivered.
    fn updates(&mut self, count: usize) -> Vec<String> {
        let mut updates = self.fresh_updates(count);
        let again: Vec<String> = updates.iter().step_by(10).cloned().collect();
        updates.extend(again);
        self.delivered += count;
        updates
    }

    /// `count` updates with fresh ids, not yet counted as delivered.
    fn fresh_updates(&mut self, count: usize) -> Vec<String> {
        let first_id = self.next_update_id;
        self.next_update_id += count as i64;
        (0..count as i64)
            .map(|i| text_update(first_id + i, 10_000 + (i % 20), &format!("load message {i}")).to_string())
            .collect()
    }
}

struct Figures {
    acks: usize,
    elapsed: Duration,
    latencies: Histogram<u64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.acks as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, quantile: f64) -> f64 {
        self.latencies.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn acknowledged(status: u16) {
    assert_eq!(status, 200, "a delivery was not acknowledged");
}

/// Fire `count` updates (+10 % redeliveries) at the same instant, one connection each.
async fn burst(instance: &mut Instance, count: usize) -> Figures {
    let updates = instance.updates(count);
    let connections = instance.connections(updates.len()).await;
    let start = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .zip(updates)
        .map(|(mut connection, update)| {
            tokio::spawn(async move {
                acknowledged(connection.deliver(&update).await);
                start.elapsed()
            })
        })
        .collect();
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    let acks = tasks.len();
    for task in tasks {
        latencies.record(task.await.expect("task").as_micros() as u64).expect("record");
    }
    Figures { acks, elapsed: start.elapsed(), latencies }
}

/// Deliver at `rate` per second for `duration` over `CONNECTIONS` kept-alive connections.
/// Latency counts from when each delivery was due, so a connection that falls behind shows.
async fn sustained(instance: &mut Instance, rate: u32, duration: Duration) -> Figures {
    // `rate × duration` deliveries in all, redeliveries included (one in eleven).
    let deliveries = (rate as f64 * duration.as_secs_f64()) as usize;
    let mut updates = instance.updates(deliveries * 10 / 11);
    updates.truncate(deliveries);
    let connections = instance.connections(CONNECTIONS).await;
    let interval = Duration::from_secs(1) / rate;
    let start = Instant::now() + Duration::from_millis(20);
    let mut shares: Vec<Vec<(Instant, String)>> = (0..CONNECTIONS).map(|_| Vec::new()).collect();
    for (i, update) in updates.into_iter().enumerate() {
        shares[i % CONNECTIONS].push((start + interval * i as u32, update));
    }
    let tasks: Vec<_> = connections
        .into_iter()
        .zip(shares)
        .map(|(mut connection, share)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share.len());
                for (due, update) in share {
                    tokio::time::sleep_until(due.into()).await;
                    acknowledged(connection.deliver(&update).await);
                    latencies.push(due.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    let mut acks = 0;
    for task in tasks {
        for latency in task.await.expect("task") {
            latencies.record(latency.as_micros() as u64).expect("record");
            acks += 1;
        }
    }
    Figures { acks, elapsed: start.elapsed(), latencies }
}

/// A Pryx whose Telegram channel is connected, ready for load.
async fn connected(llm: &MockLlm, telegram: &FakeTelegram, variant: &Variant) -> Instance {
    let instance = start(llm, telegram, variant).await;
    webhook::wait_until_connected(instance.host()).await;
    instance
}

/// Start 50 owner chats' turns, each a slow, streaming answer (five minutes) that runs
/// while the load that follows is measured.
async fn start_streaming_turns(llm: &MockLlm, instance: &Instance) {
    let mut connection = Connection::open(instance.host()).await;
    let before = llm.requests().len();
    llm.script((0..STREAMING_CHATS).map(|_| Reply::slow_text(6000, Duration::from_millis(50))));
    for chat in 1..=STREAMING_CHATS {
        acknowledged(connection.deliver(&text_update(chat, chat, "tell me a long story").to_string()).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while llm.requests().len() < before + STREAMING_CHATS as usize {
        assert!(Instant::now() < deadline, "the 50 turns did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every update id in the inbox once, none missing: (lost, duplicated).
async fn check_exactly_once(instance: &Instance) -> (i64, i64) {
    let db = instance.home.path().join("data/pryx.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open the store");
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT platform_id) FROM channel_inbox \
         WHERE channel = 'telegram' AND CAST(platform_id AS INTEGER) >= 1000000",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    (instance.delivered as i64 - distinct, rows - distinct)
}

/// How many delivered messages wait to be handled (checked, refused or recorded).
async fn pending(instance: &Instance) -> i64 {
    let db = instance.home.path().join("data/pryx.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true);
    let mut connection = sqlx::ConnectOptions::connect(&options).await.expect("open the store");
    sqlx::query_scalar("SELECT COUNT(*) FROM channel_inbox WHERE status = 'pending'")
        .fetch_one(&mut connection)
        .await
        .expect("count")
}

/// Wait until every delivered message has been handled; returns how long that took.
async fn drained(instance: &Instance) -> Duration {
    let start = Instant::now();
    while pending(instance).await > 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "the inbox is not draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Pin every thread of process `pid` to the given CPUs (`taskset` list syntax).
fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run taskset (util-linux)");
    assert!(status.success(), "taskset could not pin {pid} to {cpus}");
}

/// Deliver back to back over `SATURATING_CONNECTIONS` for `SATURATED_FOR`, then wait until
/// everything is handled: (deliveries acknowledged, server CPU time used meanwhile).
async fn saturated(instance: &mut Instance) -> (usize, Duration) {
    // More than can be delivered in the time (about 10,000 a second on one core); each
    // connection delivers a prefix of its share, so only what was acknowledged counts.
    let updates = instance.fresh_updates(SATURATED_FOR.as_secs() as usize * 30_000);
    let connections = instance.connections(SATURATING_CONNECTIONS).await;
    let mut shares: Vec<Vec<String>> = (0..SATURATING_CONNECTIONS).map(|_| Vec::new()).collect();
    for (i, update) in updates.into_iter().enumerate() {
        shares[i % SATURATING_CONNECTIONS].push(update);
    }
    let cpu_before = instance.cpu_time();
    let end = Instant::now() + SATURATED_FOR;
    let tasks: Vec<_> = connections
        .into_iter()
        .zip(shares)
        .map(|(mut connection, share)| {
            tokio::spawn(async move {
                let mut acks = 0;
                for update in share.iter().take_while(|_| Instant::now() < end) {
                    acknowledged(connection.deliver(update).await);
                    acks += 1;
                }
                acks
            })
        })
        .collect();
    let mut acks = 0;
    for task in tasks {
        acks += task.await.expect("task");
    }
    drained(instance).await;
    instance.delivered += acks;
    (acks, instance.cpu_time() - cpu_before)
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let llm = MockLlm::start().await;
        let (mut instances, mut stand_ins) = (Vec::new(), Vec::new());
        for variant in variants(otlp_sink::otlp_sink().await) {
            // Each its own Bot API stand-in, so their calls do not mix.
            let telegram = FakeTelegram::start().await;
            instances.push(connected(&llm, &telegram, &variant).await);
            stand_ins.push(telegram);
        }
        // Throughput first, with nothing else running: each instance in turn takes all the
        // deliveries it can on one core while the load generator has the other, in rounds
        // of rotating order so drift in the machine hits every variant alike.
        pin(std::process::id(), "1");
        for instance in &instances {
            pin(instance.running.child.id().expect("pryx is running"), "0");
        }
        let mut rounds: Vec<Vec<(usize, Duration)>> = instances.iter().map(|_| Vec::new()).collect();
        for round in 0..CPU_ROUNDS {
            for step in 0..instances.len() {
                let index = (round + step) % instances.len();
                rounds[index].push(saturated(&mut instances[index]).await);
            }
        }
        let per_delivery = |&(acks, cpu): &(usize, Duration)| cpu.as_secs_f64() * 1e6 / acks as f64;
        // CPU per delivery over all rounds together: steadier than any one round (two
        // identical instances agreed within 3 % this way, where single rounds differ by 10).
        let pooled = |rounds_of: &[(usize, Duration)]| {
            let (acks, cpu) = rounds_of.iter().fold((0, Duration::ZERO), |(a, c), (acks, cpu)| (a + acks, c + *cpu));
            per_delivery(&(acks, cpu))
        };
        for (instance, rounds_of) in instances.iter().zip(&rounds) {
            let mut rates: Vec<f64> =
                rounds_of.iter().map(|(acks, _)| *acks as f64 / SATURATED_FOR.as_secs_f64()).collect();
            // Each round against telemetry off in the same round, for the spread.
            let mut ratios: Vec<f64> =
                rounds_of.iter().zip(&rounds[0]).map(|(v, off)| per_delivery(v) / per_delivery(off) - 1.0).collect();
            for values in [&mut rates, &mut ratios] {
                values.sort_by(f64::total_cmp);
            }
            println!(
                "webhooks, {}, saturating one core ({CPU_ROUNDS} rounds of {} s): median {:.0} acks/s; {:.1} µs of server CPU per delivery, {:+.1} % against telemetry off (single rounds {:+.1} to {:+.1} %)",
                instance.label,
                SATURATED_FOR.as_secs(),
                rates[CPU_ROUNDS / 2],
                pooled(rounds_of),
                (pooled(rounds_of) / pooled(&rounds[0]) - 1.0) * 100.0,
                ratios[0] * 100.0,
                ratios[CPU_ROUNDS - 1] * 100.0
            );
        }
        if let Some(control) = instances.pop() {
            let mut child = control.running.child;
            let _ = child.kill().await;
        }
        pin(std::process::id(), "0,1");
        for instance in &instances {
            pin(instance.running.child.id().expect("pryx is running"), "0,1");
        }
        // Then latency and exactly-once while the model is busy.
        for instance in &instances {
            start_streaming_turns(&llm, instance).await;
        }
        for count in BURSTS {
            for instance in &mut instances {
                drained(instance).await;
                let f = burst(instance, count).await;
                println!(
                    "webhooks, {}, burst of {count:>5} (+{:>3} redeliveries): {:>6.0} acks/s, ack p50 {:.2} ms, p99 {:.2} ms",
                    instance.label,
                    count.div_ceil(10),
                    f.rate(),
                    f.ms(0.5),
                    f.ms(0.99)
                );
            }
        }
        for rate in SUSTAINED_RATES {
            for instance in &mut instances {
                drained(instance).await;
                let f = sustained(instance, rate, SUSTAINED_FOR).await;
                let backlog = drained(instance).await;
                println!(
                    "webhooks, {}, {CONNECTIONS} connections at {rate:>5}/s for {} s: {:>6.0} acks/s, ack p50 {:.2} ms, p99 {:.2} ms; all handled {:.2} s after the last ack",
                    instance.label,
                    SUSTAINED_FOR.as_secs(),
                    f.rate(),
                    f.ms(0.5),
                    f.ms(0.99),
                    backlog.as_secs_f64()
                );
            }
        }
        for instance in &instances {
            let (lost, duplicated) = check_exactly_once(instance).await;
            println!(
                "webhooks, {}: {} distinct updates delivered: lost {lost}, duplicated {duplicated}",
                instance.label, instance.delivered
            );
        }
        for instance in instances {
            let mut child = instance.running.child;
            let _ = child.kill().await;
        }
    });
}
