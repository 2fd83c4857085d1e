//! Opt-in OTLP export: the same `pryx::span` spans, sent through `tracing-opentelemetry`
//! and the OpenTelemetry SDK's batch processor to an OTLP/HTTP endpoint (the Pryx telemetry
//! Worker or any collector).
//!
//! Export must never slow or break the agent: spans are queued (bounded) and sent from the
//! SDK's own thread; when the queue is full new spans are dropped and counted; a failing
//! endpoint only increments a counter. [`ExportStats`] is what `system.info` shows.
//!
//! The export layer sits in the process-wide tracing subscriber behind a reload handle
//! ([`install_switch`]), so each agent runtime makes it match its config at start
//! ([`apply`]): turning export on or off from the Settings screen needs no new process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use pryx_api::ExportStatus;
use serde::{Deserialize, Serialize};

use crate::secrets::{SecretError, SecretsHandle};

/// Spans waiting to be sent, at most; more are dropped (and counted).
const QUEUE_LIMIT: u64 = 2048;

/// `[telemetry.otlp]` in the config file. Export is off unless `endpoint` is set.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base URL of an OTLP/HTTP receiver; spans go to `{endpoint}/v1/traces`.
    pub endpoint: Option<String>,
    /// Send spans through the control plane (`[cloud] url`), which strips personal data
    /// before they reach the backend its operator chose, instead of to `endpoint`. Needs a
    /// login through the control plane (`pryx login github`), which carries the ingest token.
    pub via_cloud: bool,
    /// Extra request headers; values may be `secret:NAME` (resolved from the keychain).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Seconds one export request may take.
    pub timeout_secs: Option<u64>,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are often credentials: show only their names.
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("via_cloud", &self.via_cloud)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// Counters since the process started.
#[derive(Default)]
pub struct ExportStats {
    endpoint: Mutex<Option<String>>,
    queued: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The process-wide export counters.
pub fn stats() -> &'static ExportStats {
    static STATS: OnceLock<ExportStats> = OnceLock::new();
    STATS.get_or_init(ExportStats::default)
}

impl ExportStats {
    /// What `system.info` shows; `None` when export is off.
    pub fn status(&self) -> Option<ExportStatus> {
        let endpoint = self.endpoint.lock().unwrap_or_else(|p| p.into_inner()).clone();
        endpoint.map(|endpoint| ExportStatus {
            endpoint,
            exported: self.exported.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        })
    }

    fn in_flight(&self) -> u64 {
        let done = self.exported.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        self.queued.load(Ordering::Relaxed).saturating_sub(done)
    }
}

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("telemetry.otlp.endpoint `{0}` is not an http(s) URL")]
    BadEndpoint(String),
    #[error("telemetry.otlp.headers.{header}: {error}")]
    Header { header: String, error: SecretError },
    #[error("cannot build the OTLP exporter: {0}")]
    Build(String),
    #[error("telemetry.otlp.via_cloud needs [cloud] url, the control plane to send spans through")]
    NoControlPlane,
    #[error("telemetry.otlp.via_cloud needs a login through the control plane for its ingest token: run `pryx login github`")]
    NoIngestToken,
}

/// A running exporter; shut it down to flush what is queued (bounded by a timeout).
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    pub fn shutdown(self) {
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(2));
    }
}

/// Puts a new export layer (or none) into the subscriber; set once by `main`.
pub type Switch = Box<dyn Fn(Option<&OtlpConfig>, &SecretsHandle) -> Result<(), ExportError> + Send + Sync>;

static SWITCH: OnceLock<Switch> = OnceLock::new();

/// The exporter in use.
static CURRENT: Mutex<Option<Exporter>> = Mutex::new(None);

/// Where the subscriber was built with a reloadable export layer: how to swap it.
pub fn install_switch(switch: Switch) {
    let _ = SWITCH.set(switch);
}

/// Keep `exporter` as the one in use (shutting down the one before).
pub fn keep(exporter: Option<Exporter>) {
    if exporter.is_none() {
        *stats().endpoint.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    let before = std::mem::replace(&mut *CURRENT.lock().unwrap_or_else(|p| p.into_inner()), exporter);
    if let Some(exporter) = before {
        // Flushing may wait on a dead endpoint; never on the caller's time.
        std::thread::spawn(move || exporter.shutdown());
    }
}

/// Flush and stop the exporter in use (at exit).
pub fn shutdown() {
    if let Some(exporter) = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).take() {
        exporter.shutdown();
    }
}

/// Make the export match `config` (each agent runtime calls this as it starts). A wanted
/// export is built afresh every time, so a header whose keychain value changed behind the
/// same `secret:` name is picked up. An error leaves the export as it was.
pub fn apply(
    config: &super::TelemetryConfig,
    cloud_url: Option<&str>,
    secrets: &SecretsHandle,
) -> Result<(), ExportError> {
    let Some(switch) = SWITCH.get() else { return Ok(()) };
    let effective = if config.enabled { effective(&config.otlp, cloud_url, secrets)? } else { None };
    let wanted = effective.as_ref();
    let running = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    if wanted.is_none() && !running {
        return Ok(());
    }
    switch(wanted, secrets)?;
    match wanted {
        Some(_) => tracing::info!("telemetry export is on"),
        None => tracing::info!("telemetry export is off: nothing leaves this computer"),
    }
    Ok(())
}

/// What export runs with: `otlp` as written, or, with `via_cloud`, the control plane as the
/// endpoint and the login's ingest token as the credential. `None`: export is off.
pub fn effective(
    otlp: &OtlpConfig,
    cloud_url: Option<&str>,
    secrets: &SecretsHandle,
) -> Result<Option<OtlpConfig>, ExportError> {
    if !otlp.via_cloud {
        return Ok(otlp.endpoint.is_some().then(|| otlp.clone()));
    }
    let url = cloud_url.filter(|u| !u.trim().is_empty()).ok_or(ExportError::NoControlPlane)?;
    let ingest = crate::secrets::SecretName::parse(crate::auth::INGEST_SECRET)
        .map_err(|error| ExportError::Header { header: "authorization".into(), error })?;
    match secrets.get().get(&ingest) {
        Ok(_) => {}
        Err(SecretError::Missing(_)) => return Err(ExportError::NoIngestToken),
        Err(error) => return Err(ExportError::Header { header: "authorization".into(), error }),
    }
    let mut headers = otlp.headers.clone();
    headers.insert("authorization".into(), crate::secrets::reference_to(crate::auth::INGEST_SECRET));
    Ok(Some(OtlpConfig { endpoint: Some(url.to_owned()), via_cloud: false, headers, ..otlp.clone() }))
}

/// The tracing layer that hands spans to the OpenTelemetry SDK.
pub type ExportLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// Build the exporter and the tracing layer that feeds it, if export is configured.
pub fn build<S>(config: &OtlpConfig, secrets: &SecretsHandle) -> Result<Option<(Exporter, ExportLayer<S>)>, ExportError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let Some(endpoint) = config.endpoint.as_deref().map(|e| e.trim_end_matches('/').to_owned()) else {
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ExportError::BadEndpoint(endpoint));
    }
    let mut headers = HashMap::new();
    for (name, value) in &config.headers {
        let resolved =
            secrets.get().resolve(value).map_err(|error| ExportError::Header { header: name.clone(), error })?;
        headers.insert(name.clone(), resolved.expose().to_owned());
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_headers(headers)
        .with_timeout(Duration::from_secs(config.timeout_secs.unwrap_or(5)))
        .build()
        .map_err(|e| ExportError::Build(e.to_string()))?;
    let batch = BatchSpanProcessor::builder(Counting { inner: exporter })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE_LIMIT as usize)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded { inner: batch })
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("pryx").build())
        .build();
    *stats().endpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(endpoint);
    let layer = layer(provider.tracer("pryx"));
    Ok(Some((Exporter { provider }, layer)))
}

/// The `tracing-opentelemetry` layer as Pryx sets it up, handing spans to `tracer`.
///
/// Only what the spans say. The defaults would add to every span its target (always
/// `pryx::span`), source file and line, thread name and id, and busy/idle times (a clock
/// read on every poll), and would make each span the current OpenTelemetry context whenever
/// it is entered, for other OpenTelemetry instrumentation, of which Pryx has none. When they
/// were turned off, exporting a webhook's span cost several times less (`cargo bench
/// --bench telemetry` measures the layer as set up here).
pub fn layer<S, T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_target(false)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_tracer(tracer)
}

/// Counts what the OTLP exporter sent and what failed.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() { &stats().exported } else { &stats().failed };
        counter.fetch_add(count, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::debug!("OTLP export failed: {e}");
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Drops (and counts) spans when too many are waiting, so the queue stays bounded and the
/// agent never waits on export.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let stats = stats();
        if stats.in_flight() >= QUEUE_LIMIT {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
