//! Channel load benchmark (`./x bench`, or `cargo bench --bench channels`): how fast Pryx
//! takes Telegram webhooks while the model is busy, and whether it loses or doubles any.
//!
//! The release binary runs in webhook mode against in-process stand-ins (Bot API, LLM).
//! First 50 owner chats each start a turn that streams slowly from the model stand-in; while
//! those stream, waves of 50, 500 and 5,000 concurrent webhook deliveries (each with the
//! secret token, from chats that are not paired, one in ten delivered twice as Telegram does
//! when unsure) hit `/webhooks/telegram`. Each wave reports acks per second and ack latency
//! p50/p99; afterwards the inbox is read from SQLite to check that every delivered update is
//! there exactly once. Two instances run side by side, telemetry off and on, their waves
//! taking turns; eight more alternating rounds of 500 give the telemetry overhead.
//! Figures are printed, not asserted.

#[path = "../tests/e2e/support/mock_llm.rs"]
mod mock_llm;
#[path = "support/pryx.rs"]
#[allow(dead_code)]
mod pryx_process;
#[path = "../tests/e2e/support/telegram.rs"]
#[allow(dead_code)]
mod telegram;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mock_llm::{MockLlm, Reply};
use pryx_process::{spawn_pryx, Running};
use telegram::{text_update, FakeTelegram, TOKEN};

const SECRET: &str = "bench-webhook-secret-0123456789";
const STREAMING_CHATS: i64 = 50;
const WAVES: [usize; 3] = [50, 500, 5000];

struct Instance {
    running: Running,
    home: tempfile::TempDir,
}

async fn start(llm: &MockLlm, telegram: &FakeTelegram, telemetry: bool) -> Instance {
    let home = tempfile::tempdir().expect("home");
    let allowed: Vec<String> = (1..=STREAMING_CHATS).map(|c| c.to_string()).collect();
    let config = format!(
        "[secrets]\nbackend = \"injected\"\n\n[telemetry]\nenabled = {telemetry}\n\n[telegram]\n\
         bot_token = \"secret:telegram/bot\"\nmode = \"webhook\"\npublic_url = \"https://pryx.example.org\"\n\
         webhook_secret = \"secret:telegram/webhook\"\napi_base = \"{}\"\nallowed_chats = [{}]\n",
        telegram.api_base(),
        allowed.join(", ")
    );
    let env = [("PRYX_SECRET_TELEGRAM_BOT", TOKEN), ("PRYX_SECRET_TELEGRAM_WEBHOOK", SECRET), ("RUST_LOG", "error")];
    let running = spawn_pryx(home.path(), &llm.base_url(), &config, &env).await;
    Instance { running, home }
}

async fn deliver(http: &reqwest::Client, url: &str, update: &str) -> Duration {
    let start = Instant::now();
    let response = http
        .post(format!("{url}/webhooks/telegram"))
        .header("content-type", "application/json")
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body(update.to_owned())
        .send()
        .await
        .expect("deliver");
    assert_eq!(response.status(), 200, "a delivery was not acknowledged");
    start.elapsed()
}

/// Fire `count` updates at once (one in ten twice); returns (acks/s, p50 ms, p99 ms).
/// Update ids are unique per Pryx (each has its own inbox), so both can take the same ids.
async fn wave(http: &reqwest::Client, url: &str, first_id: i64, count: usize) -> (f64, f64, f64) {
    let mut bodies: Vec<String> = (0..count as i64)
        // 20 stranger chats: each is refused once, later messages are only recorded.
        .map(|i| text_update(first_id + i, 10_000 + (i % 20), &format!("load message {i}")).to_string())
        .collect();
    let again: Vec<String> = bodies.iter().step_by(10).cloned().collect();
    bodies.extend(again);
    let url = Arc::new(url.to_owned());
    let start = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { deliver(&http, &url, &body).await })
        })
        .collect();
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    let delivered = tasks.len();
    for task in tasks {
        latencies.record(task.await.expect("task").as_micros() as u64).expect("record");
    }
    let elapsed = start.elapsed();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    (delivered as f64 / elapsed.as_secs_f64(), ms(0.5), ms(0.99))
}

/// A Pryx with 50 chats streaming slow answers, ready for load.
async fn loaded(llm: &MockLlm, telegram: &FakeTelegram, http: &reqwest::Client, telemetry: bool) -> Instance {
    let instance = start(llm, telegram, telemetry).await;
    let before = llm.requests().len();
    // 50 owner chats each get a slow, streaming answer (about 60 s) that runs meanwhile.
    llm.script((0..STREAMING_CHATS).map(|_| Reply::slow_text(1200, Duration::from_millis(50))));
    for chat in 1..=STREAMING_CHATS {
        deliver(http, &instance.running.url, &text_update(chat, chat, "tell me a long story").to_string()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while llm.requests().len() < before + STREAMING_CHATS as usize {
        assert!(Instant::now() < deadline, "the 50 turns did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instance
}

/// Every update id in the inbox once, none missing: (lost, duplicated).
async fn check_exactly_once(instance: &Instance, expected: usize) -> (i64, i64) {
    let db = instance.home.path().join("data/pryx.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open the store");
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT platform_id) FROM channel_inbox WHERE channel = 'telegram'")
            .fetch_one(&pool)
            .await
            .expect("count");
    (expected as i64 - distinct, rows - distinct)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let llm = MockLlm::start().await;
        let http = reqwest::Client::builder().pool_max_idle_per_host(6000).build().expect("client");
        // Telemetry off and on side by side, under the same streaming load, waves taking turns,
        // so the machine's drift hits both alike.
        let (telegram_off, telegram_on) = (FakeTelegram::start().await, FakeTelegram::start().await);
        let off = loaded(&llm, &telegram_off, &http, false).await;
        let on = loaded(&llm, &telegram_on, &http, true).await;
        let mut next_id = 1_000_000;
        let mut delivered = STREAMING_CHATS as usize;
        for count in WAVES {
            for (label, instance) in [("telemetry off", &off), ("telemetry on ", &on)] {
                let (rate, p50, p99) = wave(&http, &instance.running.url, next_id, count).await;
                println!(
                    "webhooks, {label}, {count:>5} concurrent (+{:>3} redeliveries): {rate:>7.0} acks/s, ack p50 {p50:.2} ms, p99 {p99:.2} ms",
                    count.div_ceil(10)
                );
            }
            next_id += count as i64;
            delivered += count;
        }
        let (mut rates_off, mut rates_on) = (Vec::new(), Vec::new());
        for round in 0..8 {
            let order = if round % 2 == 0 { [(&off, true), (&on, false)] } else { [(&on, false), (&off, true)] };
            for (instance, is_off) in order {
                let (rate, _, _) = wave(&http, &instance.running.url, next_id, 500).await;
                if is_off { rates_off.push(rate) } else { rates_on.push(rate) }
            }
            next_id += 500;
            delivered += 500;
        }
        let (m_off, m_on) = (median(rates_off), median(rates_on));
        println!(
            "webhooks, 500 concurrent, 8 alternating rounds: median {m_off:.0} acks/s telemetry off, {m_on:.0} on: overhead {:+.1} %",
            (m_off / m_on - 1.0) * 100.0
        );
        for (label, instance) in [("telemetry off", &off), ("telemetry on ", &on)] {
            let (lost, duplicated) = check_exactly_once(instance, delivered).await;
            println!("webhooks, {label}: {delivered} distinct updates delivered: lost {lost}, duplicated {duplicated}");
        }
        for instance in [off, on] {
            let mut child = instance.running.child;
            let _ = child.kill().await;
        }
    });
}
