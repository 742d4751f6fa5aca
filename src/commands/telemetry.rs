//! `serve`'s logs and span export. Logs go to standard error, filtered by
//! `CLEARWAY_LOG`. Spans are exported over OTLP/HTTP when `[telemetry]`
//! names an endpoint: Clearway's own spans (targets `clearway*`, INFO and
//! above) whatever the log filter, through a bounded batch queue on its own
//! thread, so a slow or absent collector costs dropped spans, never
//! intake. See `clearway_core::telemetry` for the trace context.

use crate::cli::{LogFormat, Role};
use clearway_core::config::TelemetryConfig;

/// Flushes and stops the span export when dropped (after the runtime has
/// finished, so the last transactions' spans are sent).
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("span export: the last spans may not have been sent ({e})");
        }
    }
}

/// Installs the log writer and, when configured, the span exporter.
pub fn init(format: LogFormat, config: &TelemetryConfig, role: Role) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("CLEARWAY_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(true);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(false).with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let (spans, telemetry) = exporter(config, role)?;
    let layers: Vec<BoxedLayer> = std::iter::once(fmt).chain(spans).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(telemetry)
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

#[cfg(feature = "otlp")]
fn exporter(config: &TelemetryConfig, role: Role) -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    use anyhow::Context;
    use clearway_core::config::OtlpProtocol;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok((None, Telemetry { provider: None }));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .with_protocol(match config.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        })
        .with_timeout(config.export_timeout)
        .build()
        .context("cannot set up the OTLP span exporter")?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(config.max_queue_spans).build())
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attribute(opentelemetry::KeyValue::new("clearway.role", role.as_str()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(resource)
        .build();
    let ours = Targets::new().with_target("clearway", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("clearway"))
        .with_tracked_inactivity(false)
        .with_filter(ours)
        .boxed();
    Ok((Some(layer), Telemetry { provider: Some(provider) }))
}

#[cfg(not(feature = "otlp"))]
fn exporter(config: &TelemetryConfig, _role: Role) -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    if config.otlp_endpoint.is_some() {
        anyhow::bail!("telemetry.otlp_endpoint is set, but this build has no OTLP export (feature `otlp`)");
    }
    Ok((None, Telemetry {}))
}
