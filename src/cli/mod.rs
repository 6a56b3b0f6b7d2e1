//! The operator commands, above the wiring (`crate::app`): `twofold
//! migrate`, `rebuild`, `projections`, `demo-data` and `dead-letters`.
//! Progress goes to stderr (a bar on a terminal, plain lines otherwise);
//! results go to stdout. Each returns [`CliError`], which keeps its cause
//! (`main` prints the error, then each cause on a `caused by:` line).
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::app::StartError;
use crate::args::{DemoDataArgs, RebuildArgs};
use crate::command::customer::RegisterCustomer;
use crate::command::order::{CancelOrder, LineRequest, OrderLines, PlaceOrder, ShipOrder};
use crate::command::product::AddProduct;
use crate::command::{CommandMeta, CommandService};
use crate::db::ConnectError;
use crate::db::Db;
use crate::domain::event::SalesChannel;
use crate::domain::Actor;
use crate::projection::dead_letters;
use crate::projection::rebuild::{self, RebuildOptions};
use crate::token::LogPosition;

/// Why an operator command failed, with its cause as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error("rebuild failed")]
    Rebuild(#[from] rebuild::RebuildError),
    #[error("{0}")]
    Failed(String),
}

/// Runs the command the command line asks for (`serve` by default).
pub async fn run(cli: crate::args::Cli) -> Result<(), CliError> {
    use crate::args::Command;
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate(db)) => migrate(&db.database_url, db.read_database_url.as_deref()).await,
        Some(Command::Rebuild(args)) => rebuild(&args).await,
        Some(Command::Snapshot(crate::args::SnapshotCommand::Create { file, database })) => {
            snapshot_create(&file, &database.database_url, database.read_database_url.as_deref()).await
        }
        Some(Command::Projections(db)) => projections(&db.database_url, db.read_database_url.as_deref()).await,
        Some(Command::DeadLetters(args)) => dead_letters(&args).await,
        Some(Command::DemoData(args)) => demo_data(&args).await,
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(args)) => serve(crate::settings::Settings::from(&*args), args.bind).await,
        None => serve(crate::settings::Settings::from(&cli.serve), cli.serve.bind).await,
    }
}

/// `twofold serve`: binds, starts, serves until SIGINT or SIGTERM, then
/// lets in-flight requests finish.
pub async fn serve(settings: crate::settings::Settings, bind: std::net::SocketAddr) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| StartError::Bind { addr: bind.to_string(), source: e })?;
    // The address really bound: with port 0 the system picked one.
    let bind = listener.local_addr().unwrap_or(bind);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        signal.cancel();
    });
    tracing::info!(addr = %bind, "twofold listening at http://{bind}/ (starting: /healthz answers now, /readyz once the database is reached)");
    let (services, listener) = crate::app::start_answering(listener, &settings, &shutdown).await?;
    if settings.role.serves_api() {
        tracing::info!(addr = %bind, "twofold serving GraphQL at http://{bind}/graphql (GraphiQL at http://{bind}/, the order board at http://{bind}/board)");
    } else if settings.role == crate::catalog::Role::Exporter {
        tracing::info!(addr = %bind, role = "exporter", "twofold running the exporter; /healthz, /readyz and /metrics at http://{bind}/");
    } else {
        tracing::info!(addr = %bind, role = "projector", "twofold running projections; /healthz, /readyz and /metrics at http://{bind}/");
    }
    Ok(crate::app::serve(listener, services, &settings, shutdown).await?)
}

/// `twofold token`: prints a bearer token for the given role.
pub fn token(args: &crate::args::TokenArgs) -> Result<(), CliError> {
    use crate::domain::Role;
    // The same reading of the identity flags as `serve` (blanks are
    // absent); minting uses the secret, issuer and audience.
    let identity = crate::settings::identity(&args.identity, None);
    let role = Role::parse(&args.role)
        .filter(|r| *r != Role::Anonymous)
        .ok_or_else(|| CliError::Failed(format!("--role must be customer, staff or admin, not '{}'", args.role)))?;
    let actor = match (role, args.customer_id) {
        (Role::Customer, Some(id)) => Actor::customer(args.sub.clone().unwrap_or_else(|| id.to_string()), id),
        (Role::Customer, None) => return Err(CliError::Failed("--role customer needs --customer-id".into())),
        (_, Some(_)) => return Err(CliError::Failed("--customer-id goes with --role customer only".into())),
        (Role::Staff, None) => Actor::staff(args.sub.clone().unwrap_or_else(|| "staff".into())),
        (_, None) => Actor::admin(args.sub.clone().unwrap_or_else(|| "admin".into())),
    };
    let token = crate::auth::mint(&identity, &actor, args.ttl).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{token}");
    Ok(())
}

/// Applies migrations to the write database and, when separate, the read
/// database, and says what it applied (or that the schema was current).
pub async fn migrate(database_url: &str, read_database_url: Option<&str>) -> Result<(), CliError> {
    for migrated in crate::app::migrate(database_url, read_database_url).await? {
        println!("migrate {migrated}");
    }
    Ok(())
}

/// A progress display: a bar on a terminal, a line a second otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    label: String,
    last_line: Instant,
}

impl Reporter {
    fn new(label: &str, unit: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let template = format!("{{prefix}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_owned());
            bar
        });
        Self { bar, label: label.to_owned(), last_line: Instant::now() }
    }

    fn update(&mut self, done: u64, total: u64, elapsed: Duration) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(1) || done == total => {
                let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
                let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
                eprintln!("{}: {done}/{total} ({rate:.0}/s, eta {eta:.0} s)", self.label);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub async fn rebuild(args: &RebuildArgs) -> Result<(), CliError> {
    crate::app::migrate(&args.database.database_url, args.database.read_database_url.as_deref()).await?;
    let events_db = Db::connect(&args.database.database_url, 4).await?;
    let read_db = match &args.database.read_database_url {
        Some(url) if *url != args.database.database_url => Db::connect(url, 4).await?,
        _ => events_db.clone(),
    };
    let projections: Vec<String> = if args.all {
        crate::catalog::View::names().into_iter().map(str::to_owned).collect()
    } else {
        args.projections.clone()
    };
    let until = match &args.until {
        Some(t) => Some(t.parse::<LogPosition>().map_err(|e| CliError::Failed(e.to_string()))?),
        None => None,
    };
    let options = RebuildOptions {
        projections,
        until,
        copy_name: args.copy_name.clone(),
        batch_size: args.batch_size.max(1),
        from_snapshot: None,
    };
    let mut reporter = Reporter::new("rebuild", "events");
    let reports = match &args.from_snapshot {
        Some(file) => crate::projection::recovery::rebuild_from(
            &events_db,
            &read_db,
            file,
            &options.projections,
            options.batch_size,
            |p| reporter.update(p.done, p.total, p.elapsed),
        )
        .await
        .map_err(|e| CliError::Failed(format!("rebuild failed: {e}")))?,
        None => {
            rebuild::rebuild(&events_db, &read_db, &options, |p| reporter.update(p.done, p.total, p.elapsed)).await?
        }
    };
    reporter.finish();
    for r in &reports {
        println!(
            "rebuilt {}: {} events in {:.3} s ({:.0} events/s)",
            r.projection,
            r.events,
            r.elapsed.as_secs_f64(),
            r.events_per_second()
        );
        for table in &r.copy_tables {
            println!("  as of {}: table {table}", r.checkpoint);
        }
    }
    Ok(())
}

/// `twofold snapshot create FILE`: every view with its checkpoint, from one moment.
pub async fn snapshot_create(
    file: &std::path::Path,
    database_url: &str,
    read_database_url: Option<&str>,
) -> Result<(), CliError> {
    crate::app::migrate(database_url, read_database_url).await?;
    let read_db = Db::connect(read_database_url.unwrap_or(database_url), 1).await?;
    let started = Instant::now();
    crate::projection::recovery::create(&read_db, file)
        .await
        .map_err(|e| CliError::Failed(format!("snapshot failed: {e}")))?;
    println!("snapshot {} written in {:.3} s", file.display(), started.elapsed().as_secs_f64());
    Ok(())
}

pub async fn projections(database_url: &str, read_database_url: Option<&str>) -> Result<(), CliError> {
    let events_db = Db::connect(database_url, 2).await?;
    let read_db = match read_database_url {
        Some(url) if url != database_url => Db::connect(url, 2).await?,
        _ => events_db.clone(),
    };
    let admin = crate::admin::Admin::new(
        events_db.clone(),
        read_db.clone(),
        events_db,
        read_db,
        crate::notice::Notices::default(),
    );
    let states = admin.projections().await?;
    println!(
        "{:<16} {:<7} {:<11} {:>16} {:>8} {:>10}  last error",
        "projection", "mode", "status", "checkpoint", "lag", "applied"
    );
    for s in states {
        let status = match s.rebuild_percent() {
            Some(percent) => format!("{} {percent:.0}%", s.status().as_str()),
            None => s.status().as_str().to_owned(),
        };
        println!(
            "{:<16} {:<7} {:<11} {:>16} {:>8} {:>10}  {}",
            s.name(),
            s.mode().as_str(),
            status,
            s.checkpoint().to_string(),
            s.lag,
            s.events_applied(),
            s.last_error().as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `twofold dead-letters list|retry|skip`.
pub async fn dead_letters(args: &crate::args::DeadLettersArgs) -> Result<(), CliError> {
    use crate::args::DeadLetterAction;
    let database = args.action.database();
    let read_url = database.read_database_url.as_deref().unwrap_or(&database.database_url);
    crate::app::migrate(&database.database_url, database.read_database_url.as_deref()).await?;
    let db = Db::connect(read_url, 2).await?;
    let notices = crate::notice::Notices::default();
    let fail = |e: dead_letters::DeadLetterError| CliError::Failed(e.to_string());
    match &args.action {
        DeadLetterAction::List { projection, all, .. } => {
            let rows = dead_letters::list(&db, projection.as_deref(), *all, 1000).await.map_err(CliError::Database)?;
            println!("{:>6} {:<16} {:>16} {:<20} {:<10} error", "id", "projection", "event", "type", "status");
            for r in rows {
                let event = LogPosition::new(r.event_tx_id, r.event_position).to_string();
                let status = r.resolution.map_or_else(|| "open".to_owned(), |r| r.to_string());
                println!(
                    "{:>6} {:<16} {:>16} {:<20} {:<10} {}",
                    r.id, r.projection, event, r.event_type, status, r.error
                );
            }
        }
        DeadLetterAction::Retry { id, .. } => {
            let done = dead_letters::retry(&db, &notices, *id).await.map_err(fail)?;
            println!("dead letter {id}: retried; {} resumes from {}", done.dead_letter.projection, done.checkpoint);
        }
        DeadLetterAction::Skip { id, .. } => {
            let done = dead_letters::skip(&db, &notices, *id).await.map_err(fail)?;
            println!("dead letter {id}: skipped; {} goes on from {}", done.dead_letter.projection, done.checkpoint);
        }
    }
    Ok(())
}

/// Registers customers, adds products and places orders through the
/// command handlers (so the event log and the views are real); about one
/// order in five is then cancelled and one in three shipped.
pub async fn demo_data(args: &DemoDataArgs) -> Result<(), CliError> {
    let mut settings = crate::settings::Settings::for_database(&args.database.database_url);
    settings.read_database_url = args.database.read_database_url.clone();
    // Commands only: it runs no projector, so a database whose views are
    // split into segments is no reason to refuse (see `app::start`).
    settings.role = crate::catalog::Role::Api;
    let services = crate::app::start(&settings).await?;
    let commands = services.commands.clone();
    let run = format!("{:x}", chrono::Utc::now().timestamp());
    let customers = run_many(&commands, "customers", args.customers, args.concurrency, {
        let run = run.clone();
        move |c, i| {
            let run = run.clone();
            async move {
                let cmd = RegisterCustomer { name: demo_name(i), email: format!("customer{i}.{run}@example.com") };
                c.register_customer(cmd, CommandMeta::by(Actor::operator("demo-data"))).await.map(|a| a.id)
            }
        }
    })
    .await?;
    let products = run_many(&commands, "products", args.products, args.concurrency, {
        let run = run.clone();
        move |c, i| {
            let run = run.clone();
            async move {
                let cmd = AddProduct {
                    sku: format!("SKU-{run}-{i:05}"),
                    title: demo_title(i),
                    price_cents: 199 + (i as i64 * 137) % 9800,
                };
                c.add_product(cmd, CommandMeta::by(Actor::operator("demo-data"))).await.map(|a| a.id)
            }
        }
    })
    .await?;
    if customers.is_empty() || products.is_empty() {
        return Err(CliError::Failed("demo data needs at least one customer and one product".into()));
    }
    let (customers, products) = (Arc::new(customers), Arc::new(products));
    run_many(&commands, "orders", args.orders, args.concurrency, move |c, i| {
        let (customers, products) = (customers.clone(), products.clone());
        async move {
            let lines = (0..1 + i % 5)
                .map(|k| LineRequest {
                    product_id: products[(i * 7 + k * 13) % products.len()],
                    quantity: 1 + ((i + k) % 3) as i32,
                })
                .collect();
            let lines = OrderLines::parse(lines)?;
            let channel = [SalesChannel::Web, SalesChannel::Mobile, SalesChannel::Api][i % 3];
            let cmd = PlaceOrder { order_id: None, customer_id: Some(customers[i % customers.len()]), lines, channel };
            let ack = c.place_order(cmd, CommandMeta::by(Actor::operator("demo-data"))).await?;
            let order_id =
                ack.id.ok_or_else(|| crate::command::CommandError::Internal("placeOrder created no id".into()))?;
            if i % 5 == 1 {
                c.cancel_order(
                    CancelOrder { order_id, reason: Some("changed my mind".into()), expected_version: None },
                    CommandMeta::by(Actor::operator("demo-data")),
                )
                .await?;
            } else if i % 3 == 0 {
                let ship = ShipOrder {
                    order_id,
                    carrier: "DHL".into(),
                    tracking_number: format!("1Z{i:08}"),
                    expected_version: None,
                };
                c.ship_order(ship, CommandMeta::by(Actor::operator("demo-data"))).await?;
            }
            Ok(Some(order_id))
        }
    })
    .await?;
    println!("demo data: {} customers, {} products, {} orders", args.customers, args.products, args.orders);
    Ok(())
}

/// Runs `count` commands, `concurrency` at a time, with a progress display.
async fn run_many<F, Fut>(
    commands: &CommandService,
    label: &str,
    count: usize,
    concurrency: usize,
    make: F,
) -> Result<Vec<uuid::Uuid>, CliError>
where
    F: Fn(CommandService, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<uuid::Uuid>, crate::command::CommandError>> + Send + 'static,
{
    use futures_util::StreamExt;
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut reporter = Reporter::new(label, label);
    let make = Arc::new(make);
    let mut results = futures_util::stream::iter(0..count)
        .map(|i| {
            let (make, commands, done) = (make.clone(), commands.clone(), done.clone());
            async move {
                let r = make(commands, i).await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut ids = Vec::with_capacity(count);
    while let Some(result) = results.next().await {
        match result {
            Ok(Some(id)) => ids.push(id),
            Ok(None) => {}
            Err(e) => return Err(CliError::Failed(format!("demo data: a command failed: {e}"))),
        }
        reporter.update(done.load(Ordering::Relaxed) as u64, count as u64, started.elapsed());
    }
    reporter.finish();
    Ok(ids)
}

fn demo_name(i: usize) -> String {
    const FIRST: [&str; 10] =
        ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tony"];
    const LAST: [&str; 10] =
        ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Hoare"];
    format!("{} {} {}", FIRST[i % 10], LAST[(i / 10) % 10], i)
}

fn demo_title(i: usize) -> String {
    const KIND: [&str; 8] = ["tea", "coffee", "cake", "biscuits", "honey", "jam", "chocolate", "bread"];
    const ADJ: [&str; 6] = ["Green", "Smoky", "Lemon", "Dark", "Wild", "Golden"];
    format!("{} {} #{i}", ADJ[i % 6], KIND[(i / 6) % 8])
}
