//! Agent benchmarks (`./x bench`, or `cargo bench --bench agent`): start-up time, idle
//! memory, and the latency Pryx adds between a provider's SSE chunk and the client's
//! WebSocket frame at 1, 10 and 100 concurrently streaming sessions.
//!
//! The release binary runs as a child process; the Chat Completions stand-in and the
//! clients run in this process, so "added latency" is measured on one clock: the stand-in
//! writes its send time into each chunk and the client subtracts it on arrival. It includes
//! two loopback hops (stand-in → Pryx → client) and Pryx's parsing, storing and fan-out.
//! Figures are printed, not asserted: timing belongs in benchmarks, not tests.

#[path = "../tests/e2e/support/mock_llm.rs"]
mod mock_llm;
#[path = "support/otlp_sink.rs"]
mod otlp_sink;
#[path = "support/pryx.rs"]
mod pryx_process;

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mock_llm::{epoch, MockLlm, Reply};
use pryx::client::{self, PryxApiClient};
use pryx_api::TurnEvent;
use pryx_process::{rss_kib, spawn_pryx, Running};

const STARTS: usize = 20;
const CHUNKS_PER_TURN: usize = 100;
const CHUNK_INTERVAL: Duration = Duration::from_millis(10);

async fn start(home: &Path, llm: &MockLlm) -> Running {
    start_with(home, llm, "").await
}

async fn start_with(home: &Path, llm: &MockLlm, config: &str) -> Running {
    spawn_pryx(home, &llm.base_url(), config, &[]).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench_startup(llm: &MockLlm) {
    let mut times = Vec::new();
    let mut first_rss = 0;
    for i in 0..STARTS {
        let home = tempfile::tempdir().expect("tempdir");
        let mut running = start(home.path(), llm).await;
        times.push(running.exec_to_listening);
        if i == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            first_rss = rss_kib(running.child.id().expect("pid"));
        }
        running.child.kill().await.expect("kill");
    }
    times.sort();
    println!(
        "exec → listening line ({STARTS} fresh data dirs): min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[STARTS / 2]),
        ms(times[STARTS - 1])
    );
    println!("idle RSS 1 s after start: {:.1} MiB", first_rss as f64 / 1024.0);
}

async fn bench_latency(llm: &MockLlm, sessions: usize) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut running = start(home.path(), llm).await;
    llm.script((0..sessions).map(|_| Reply::Stamped { count: CHUNKS_PER_TURN, interval: CHUNK_INTERVAL }));
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (url, token) = (running.url.clone(), running.token.clone());
        tasks.push(tokio::spawn(async move {
            let client = client::connect(&url, &token).await.expect("connect");
            let session = client.session_create(None).await.expect("session");
            let started = client.message_send(session.id, "go".into()).await.expect("send");
            let mut events = client.turn_subscribe(started.turn_id).await.expect("subscribe");
            let mut samples = Vec::with_capacity(CHUNKS_PER_TURN);
            while let Some(Ok(envelope)) = events.next().await {
                let arrived = epoch().elapsed().as_nanos() as u64;
                match envelope.event {
                    TurnEvent::Delta { text } => {
                        for stamp in text.split('|').filter(|s| !s.is_empty()) {
                            if let Ok(sent) = stamp.parse::<u64>() {
                                samples.push(arrived.saturating_sub(sent));
                            }
                        }
                    }
                    e if e.is_terminal() => break,
                    _ => {}
                }
            }
            samples
        }));
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        for sample in task.await.expect("session task") {
            histogram.record(sample.max(1)).expect("record");
        }
    }
    let rss = rss_kib(running.child.id().expect("pid"));
    println!(
        "chunk → client frame, {sessions:>3} concurrent sessions ({} chunks): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; RSS {:.1} MiB",
        histogram.len(),
        histogram.value_at_quantile(0.5) as f64 / 1e6,
        histogram.value_at_quantile(0.99) as f64 / 1e6,
        histogram.max() as f64 / 1e6,
        rss as f64 / 1024.0
    );
    running.child.kill().await.expect("kill");
}

/// Mean time of a short turn (send → done; a one-chunk answer from the stand-in) with
/// telemetry off, on, and on with OTLP export. The three servers run side by side and take
/// turns in round-robin, so drift in the machine's load hits all three alike.
async fn bench_telemetry_overhead(llm: &MockLlm) {
    const TURNS: usize = 400;
    const WARM_UP: usize = 30;
    let sink = otlp_sink::otlp_sink().await;
    let variants = [
        ("telemetry off", "[telemetry]\nenabled = false\n".to_owned()),
        ("telemetry on", String::new()),
        ("telemetry on + OTLP export", format!("[telemetry.otlp]\nendpoint = \"http://{sink}\"\n")),
    ];
    let mut servers = Vec::new();
    for (label, config) in &variants {
        let home = tempfile::tempdir().expect("tempdir");
        let running = start_with(home.path(), llm, config).await;
        let client = client::connect(&running.url, &running.token).await.expect("connect");
        servers.push((label, home, running, client, Vec::with_capacity(TURNS)));
    }
    for i in 0..TURNS + WARM_UP {
        for (_, _, _, client, times) in servers.iter_mut() {
            let session = client.session_create(None).await.expect("session");
            let began = Instant::now();
            let started = client.message_send(session.id, "hi".into()).await.expect("send");
            let mut events = client.turn_subscribe(started.turn_id).await.expect("subscribe");
            while let Some(Ok(envelope)) = events.next().await {
                if envelope.event.is_terminal() {
                    break;
                }
            }
            if i >= WARM_UP {
                times.push(began.elapsed());
            }
        }
    }
    let mean = |times: &Vec<Duration>| times.iter().sum::<Duration>() / times.len() as u32;
    let median = |times: &Vec<Duration>| {
        let mut sorted = times.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let base_mean = mean(&servers[0].4);
    let base_median = median(&servers[0].4);
    for (label, _, running, _, times) in servers.iter_mut() {
        let (m, p50) = (mean(times), median(times));
        println!(
            "turn with {label:<28} mean {:.3} ms ({:+.1}%), median {:.3} ms ({:+.1}%)",
            ms(m),
            (m.as_secs_f64() / base_mean.as_secs_f64() - 1.0) * 100.0,
            ms(p50),
            (p50.as_secs_f64() / base_median.as_secs_f64() - 1.0) * 100.0
        );
        running.child.kill().await.expect("kill");
    }
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let _ = epoch();
        let llm = MockLlm::start().await;
        // `cargo bench --bench agent -- NAME` runs only the benchmarks whose name contains NAME.
        let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
        let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
        if wanted("startup") {
            bench_startup(&llm).await;
        }
        if wanted("latency") {
            for sessions in [1, 10, 100] {
                bench_latency(&llm, sessions).await;
            }
        }
        if wanted("telemetry") {
            bench_telemetry_overhead(&llm).await;
        }
    });
}
