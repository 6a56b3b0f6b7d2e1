//! The `twofold` binary: parse the command line, set up logging, hand over
//! to the library (`twofold::cli`). An error prints `error: …` and a
//! `caused by: …` line for each cause, and exits non-zero.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
use std::process::ExitCode;

/// The service allocates many small, short-lived objects (JSON, rows,
/// GraphQL values); mimalloc handles that markedly better than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use twofold::args::{Cli, LogFormat};

/// The log (stderr; colour only on a terminal) and, when an endpoint is
/// set, the traces (see `twofold::telemetry`): each layer with its own
/// filter, so the spans meant for traces never reach the log.
fn init_tracing(
    format: LogFormat,
    traces: Option<&twofold::telemetry::TraceSettings>,
) -> Result<Option<twofold::telemetry::Tracing>, twofold::telemetry::TraceError> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into())
        .add_directive(format!("{}=off", twofold::telemetry::TARGET).parse().unwrap_or_default());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Json => log.json().boxed(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            log.with_ansi(colour).boxed()
        }
    };
    let (otel, tracing) = match traces.map(twofold::telemetry::layer).transpose()?.flatten() {
        Some((layer, tracing)) => (Some(layer), Some(tracing)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(log.with_filter(filter)).with(otel).init();
    Ok(tracing)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format();
    let tracing = match init_tracing(format, cli.traces().as_ref()) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("twofold: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = twofold::cli::run(cli).await;
    if let Some(tracing) = tracing {
        // Off the runtime's threads: the exporter's last send blocks.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if format == LogFormat::Json {
                // The JSON log carries the whole chain too.
                let causes = twofold::failure::causes(&e);
                tracing::error!(error = %twofold::failure::Chain(&e), ?causes, "twofold stopped");
            }
            eprintln!("{}", twofold::failure::Report(&e));
            ExitCode::FAILURE
        }
    }
}
