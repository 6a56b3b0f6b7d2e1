//! The `twofold` binary: parse the command line, set up logging, hand over
//! to the library. Start-up errors print one line and exit non-zero.
use std::process::ExitCode;

/// The service allocates many small, short-lived objects (JSON, rows,
/// GraphQL values); mimalloc handles that markedly better than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use twofold::config::{Cli, Command, LogFormat, Settings};

fn init_tracing(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Schema) => {
            print!("{}", twofold::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate(db)) => {
            init_tracing(LogFormat::Text);
            twofold::app::migrate(&db.database_url, db.read_database_url.as_deref()).await
        }
        Some(Command::Rebuild(args)) => {
            init_tracing(LogFormat::Text);
            twofold::ops::rebuild(&args).await
        }
        Some(Command::Projections(db)) => {
            init_tracing(LogFormat::Text);
            twofold::ops::projections(&db.database_url, db.read_database_url.as_deref()).await
        }
        Some(Command::DeadLetters(args)) => {
            init_tracing(LogFormat::Text);
            twofold::ops::dead_letters_command(&args).await
        }
        Some(Command::DemoData(args)) => {
            init_tracing(LogFormat::Text);
            twofold::ops::demo_data(&args).await
        }
        Some(Command::Serve(args)) => {
            init_tracing(args.log_format);
            serve(Settings::from(&args), args.bind).await
        }
        None => {
            init_tracing(cli.serve.log_format);
            serve(Settings::from(&cli.serve), cli.serve.bind).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twofold: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, bind: std::net::SocketAddr) -> Result<(), twofold::app::StartError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| twofold::app::StartError::Bind { addr: bind.to_string(), source: e })?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        twofold::app::shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        signal.cancel();
    });
    let services = twofold::app::start(&settings).await?;
    tracing::info!(addr = %bind, "twofold serving GraphQL at http://{bind}/graphql (GraphiQL at http://{bind}/)");
    twofold::app::serve(listener, services, &settings, shutdown).await
}
