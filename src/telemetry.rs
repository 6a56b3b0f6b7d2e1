//! Traces: OpenTelemetry through `tracing`, exported over OTLP/HTTP.
//!
//! Off unless an endpoint is given (`--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
//! then every span of the target [`TARGET`] is exported, named and shaped
//! as the OpenTelemetry conventions say, with the service name of
//! `OTEL_SERVICE_NAME` (default `twofold`) and the sampler of
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the SDK reads them).
//!
//! The spans (see docs/operators.md, "Tracing"): the HTTP request, the
//! GraphQL operation, the command and its transaction, each projector batch
//! (linked to the command of every event it applied), the `writeVisible`
//! answer, and the exporter's publish. A trace continues from a
//! `traceparent` (W3C Trace Context) on the HTTP request or in a WebSocket
//! `connection_init` / `subscribe` payload, and is recorded with each event
//! (its metadata's `traceparent`), so work done later for the event (a
//! projector batch, a NATS message) links back to the request.
//!
//! With tracing off the spans cost next to nothing: they are of a target
//! the log's filter leaves out, so no layer takes interest in them.
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span meant for the traces (and not for the log).
pub const TARGET: &str = "twofold::otel";

/// The most links one span records (a batch of thousands of events links
/// to at most this many commands).
pub const MAX_LINKS: usize = 64;

/// Where traces go, and as which service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// The OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://127.0.0.1:4318`; `None`: the standard variables decide.
    pub endpoint: Option<String>,
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}")]
pub struct TraceError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// A running exporter: flush it before the process exits.
pub struct Tracing {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Tracing {
    /// Sends what is buffered (at most a few seconds).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Whether the standard variables name an endpoint.
fn endpoint_in_env() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The OpenTelemetry layer for the subscriber, when an endpoint is set:
/// it takes the spans of [`TARGET`] (and nothing of the log).
pub fn layer<S>(settings: &TraceSettings) -> Result<Option<(impl tracing_subscriber::Layer<S>, Tracing)>, TraceError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;
    let endpoint = settings.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if endpoint.is_none() && !endpoint_in_env() {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let shown = endpoint.map_or_else(|| "the OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), str::to_owned);
    let exporter = builder.build().map_err(|source| TraceError { endpoint: shown, source })?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "twofold".to_owned());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("twofold");
    let filter = tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter);
    Ok(Some((layer, Tracing { provider })))
}

/// The context a W3C `traceparent` (and `tracestate`) names, when valid.
pub fn context_of(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
    use opentelemetry::propagation::TextMapPropagator;
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The span context a `traceparent` names, for a link.
pub fn span_context_of(traceparent: &str) -> Option<SpanContext> {
    context_of(traceparent, None).map(|cx| cx.span().span_context().clone())
}

/// Continues the trace a `traceparent` names in `span`.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(cx) = traceparent.and_then(|p| context_of(p, tracestate)) {
        // (Fails only for a span that already started a trace: nothing to do then.)
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` of `span`, when it is traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator;
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Links `span` to the spans the `traceparents` name (the commands of a
/// batch's events), each once, at most [`MAX_LINKS`].
pub fn link<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    if span.is_disabled() {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for parent in traceparents {
        if seen.len() >= MAX_LINKS {
            break;
        }
        if seen.insert(parent) {
            if let Some(cx) = span_context_of(parent) {
                span.add_link(cx);
            }
        }
    }
}
