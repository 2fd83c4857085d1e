//! Process set-up before anything else runs: the allocator's arenas, and where logs and
//! telemetry spans go (stderr for logs, the recorder for spans, the OTLP exporter when the
//! user turned it on).

use super::args::Cli;
use super::load_config;
use crate::datadir::default_config_path;

/// glibc gives every thread that allocates its own arena (up to 8 per core), and each keeps
/// freed memory: for an agent of a dozen threads that is megabytes of idle RSS for nothing.
pub(super) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Logs to stderr (`RUST_LOG`), telemetry spans to the recorder, and, where the agent runs
/// and the user turned it on, to the OTLP exporter (flushed at exit). The export layer can
/// be swapped later (`telemetry::export::apply`), when the settings change.
pub(super) fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let log_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into())
        // These log whole requests (secrets and message text included) at debug and trace;
        // never let RUST_LOG turn that on. Telemetry spans go to the recorder, not the log.
        .add_directive("jsonrpsee=info".parse()?)
        .add_directive("jsonrpsee_server=info".parse()?)
        .add_directive("jsonrpsee_core=info".parse()?)
        .add_directive("soketto=info".parse()?)
        .add_directive("async_openai=info".parse()?)
        .add_directive("reqwest=info".parse()?)
        .add_directive("hyper=info".parse()?)
        .add_directive("zbus=info".parse()?)
        // The MCP SDK logs every handshake and notification at info.
        .add_directive("rmcp=warn".parse()?)
        .add_directive("opentelemetry=warn".parse()?)
        .add_directive("opentelemetry_sdk=warn".parse()?)
        .add_directive("opentelemetry_otlp=warn".parse()?)
        .add_directive("pryx::span=off".parse()?);
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter);
    let only_spans = || tracing_subscriber::filter::filter_fn(|m| m.target() == crate::telemetry::SPAN_TARGET);

    // Export is set up only where the agent runs (--serve, the desktop app), when configured.
    let server_config = match &cli.command {
        None => {
            let path = match &cli.config {
                Some(path) => path.clone(),
                None => default_config_path()?,
            };
            // A config that does not load is reported by `run` with the full message.
            load_config(cli, &path).ok()
        }
        _ => None,
    };
    let recording = server_config.as_ref().is_none_or(|c| c.telemetry.enabled);
    let recorder = recording.then(|| crate::telemetry::SpanRecorder.with_filter(only_spans()));
    let registry = tracing_subscriber::registry().with(log).with(recorder);
    // The export layer starts empty; each agent runtime fills it to match its config
    // (`telemetry::export::apply`), the first one before it serves.
    let (export, handle) = tracing_subscriber::reload::Layer::new(None::<crate::telemetry::export::ExportLayer<_>>);
    registry.with(export.with_filter(only_spans())).init();
    if server_config.is_some() {
        crate::telemetry::export::install_switch(Box::new(move |otlp, secrets| {
            let built = match otlp {
                Some(otlp) => crate::telemetry::export::build(otlp, secrets)?,
                None => None,
            };
            let (layer, exporter) = built.map_or((None, None), |(exporter, layer)| (Some(layer), Some(exporter)));
            handle.reload(layer).map_err(|e| {
                crate::telemetry::export::ExportError::Build(format!("cannot swap the export layer: {e}"))
            })?;
            crate::telemetry::export::keep(exporter);
            Ok(())
        }));
    }
    Ok(())
}
