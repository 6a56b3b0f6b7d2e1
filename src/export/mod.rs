//! The exporter: the event log, published to a NATS JetStream stream for
//! other services (issue 14), exactly once and in log order.
//!
//! It is a consumer of the log like a projection, and runs in the same
//! runtime ([`crate::projection::projector::Projector`]): the same
//! horizon-safe reader, the same leadership (one exporter per log across
//! instances, with take-over), its own checkpoint row
//! ([`crate::catalog::EXPORTER`]) shown in `projections` with its lag, the
//! same retries with back-off (`retrying`) and the same stop/skip policy for
//! an event the broker rejects for good (it is dead-lettered). It is not a
//! read view: `writeVisible` and `consistentWith` never wait for it, and it
//! cannot be rebuilt.
//!
//! Each batch is published inside the runtime's checkpoint transaction,
//! pipelined (every message sent, then every acknowledgement awaited), and
//! the checkpoint moves only once the broker has acknowledged them all.
//!
//! ## Exactly once, in order
//!
//! Every message carries `Nats-Msg-Id` = its log position (inside the
//! stream's duplicate window the broker drops a re-sent one and answers with
//! the sequence of the first) and `Nats-Expected-Last-Sequence` = the
//! sequence its predecessor has in the stream, counted from the exporter's
//! own durable record ([`export_state`](#the-durable-record)). The broker
//! stores a message only at exactly the place the log gives it, so:
//!
//! - a crash after the publish but before the checkpoint commit re-sends the
//!   batch: inside the window the broker drops the copies; after it, the
//!   first copy is refused (`wrong last sequence`) and the exporter
//!   *reconciles*: the stream's last message names (by its `Nats-Msg-Id`)
//!   how far the previous attempt got, and the exporter goes on from there;
//! - a second exporter that wrongly thinks it leads (its lock lost
//!   unnoticed) publishes nothing twice: its expected sequence is stale.
//!
//! ## The durable record
//!
//! `export_state` holds the stream's name and the sequence of the last
//! message this exporter published, written in the same read-database
//! transaction as the checkpoint, so the two always agree. The exporter
//! never publishes into a stream that disagrees with it (purged, recreated
//! or another stream): it keeps retrying with a clear `lastError` until an
//! operator acts.
pub mod message;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, stream::StorageType};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};

use crate::catalog::EXPORTER;
use crate::db::Db;
use crate::domain::event::RecordedEvent;
use crate::projection::runtime::RuntimeSettings;
use crate::projection::{ApplyContext, ApplyError, Projection};
use message::Outgoing;

/// How the exporter reaches its stream, and how much it publishes at once
/// (built from the `--nats-url`/`--export-*` flags by `crate::settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    pub nats_url: String,
    pub stream: String,
    /// Subjects are `<prefix>.<stream type>.<event type>`.
    pub subject_prefix: String,
    /// The CloudEvents `source`.
    pub source: String,
    pub duplicate_window: Duration,
    /// Events per exported batch (published together; the checkpoint moves
    /// once all are acknowledged): the exporter's runner reads this many at
    /// a time ([`Self::runtime`]).
    pub batch_size: u64,
    /// Bounds connecting, every API call and a batch's acknowledgements.
    pub timeout: Duration,
}

impl ExportSettings {
    /// The settings the exporter's runner is built with: the projections'
    /// own (polls, standby tries, its poison policy), with the exporter's
    /// batch size instead of theirs, at most [`crate::projection::MAX_BATCH`]
    /// (the most any consumer of the log is given at once).
    pub fn runtime(&self, projections: &RuntimeSettings) -> RuntimeSettings {
        RuntimeSettings { batch_size: self.batch_size.min(crate::projection::MAX_BATCH as u64), ..projections.clone() }
    }

    /// What the stream captures.
    pub fn subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// Checks what can be checked before connecting (the URL's form).
    pub fn validate(&self) -> Result<(), BadNatsUrl> {
        for address in self.nats_url.split(',') {
            address
                .trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(|source| BadNatsUrl { address: crate::db::redact(address.trim()), source })?;
        }
        Ok(())
    }
}

/// A `--nats-url` entry that is no NATS server address (password redacted).
#[derive(Debug, thiserror::Error)]
#[error("--nats-url: '{address}' is not a NATS server address: {source}")]
pub struct BadNatsUrl {
    pub address: String,
    #[source]
    pub source: std::io::Error,
}

/// The most times one batch reconciles with the stream before it gives up
/// (and retries later): more means something else writes to the stream.
const MAX_RECONCILES: u32 = 4;

/// The exporter (a [`Projection`] whose apply publishes).
pub struct Exporter {
    settings: ExportSettings,
    /// The read database, where `export_state` lives beside the checkpoint.
    state_db: Db,
    broker: tokio::sync::Mutex<Option<Broker>>,
}

/// A connection whose stream has been created or verified.
#[derive(Clone)]
struct Broker {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// The durable record: the stream and its last sequence this exporter published.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    stream: String,
    last_sequence: u64,
}

/// Why a run of publishes stopped early.
#[derive(Debug)]
enum Stop {
    /// The stream's last sequence is not the one expected: reconcile.
    WrongSequence,
    /// The broker refused the first message not acknowledged for good
    /// (too large…): a poison event.
    Rejected { reason: String },
    /// Unreachable, timed out, the stream is gone…: retry later.
    Failed { reason: String, stream_missing: bool },
}

fn unavailable(message: impl Into<String>) -> ApplyError {
    ApplyError::Unavailable(message.into())
}

impl Exporter {
    pub fn new(settings: ExportSettings, state_db: Db) -> Self {
        Self { settings, state_db, broker: tokio::sync::Mutex::new(None) }
    }

    /// The connection, verified; connects (and creates or verifies the
    /// stream against `state`) when there is none.
    async fn broker(&self, state: Option<&State>) -> Result<Broker, ApplyError> {
        let mut slot = self.broker.lock().await;
        if let Some(broker) = slot.as_ref() {
            return Ok(broker.clone());
        }
        let timeout = self.settings.timeout;
        let options = async_nats::ConnectOptions::new()
            .name("twofold-exporter")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            // Reconnect forever, soon: the exporter reports itself `retrying` meanwhile.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5))).min(Duration::from_secs(2))
            });
        let addresses: Vec<async_nats::ServerAddr> = self
            .settings
            .nats_url
            .split(',')
            .map(|a| a.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| unavailable(format!("--nats-url is not a NATS server address: {e}")))?;
        let url = crate::db::redact(&self.settings.nats_url);
        let client = match tokio::time::timeout(timeout + Duration::from_millis(500), options.connect(addresses)).await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unavailable(format!("cannot reach the NATS server at {url}: {e}"))),
            Err(_) => return Err(unavailable(format!("cannot reach the NATS server at {url}: timed out"))),
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            .max_ack_inflight(2 * crate::projection::MAX_BATCH)
            .build(client.clone());
        let broker = Broker { client, js };
        self.ensure_stream(&broker.js, state).await?;
        tracing::info!(stream = %self.settings.stream, subjects = %self.settings.subjects(), "exporter connected to NATS JetStream");
        *slot = Some(broker.clone());
        Ok(broker)
    }

    fn unreachable(&self) -> ApplyError {
        unavailable(format!(
            "the NATS server at {} is unreachable (reconnecting)",
            crate::db::redact(&self.settings.nats_url)
        ))
    }

    /// Fails (counted as a publish error) unless the connection is up.
    fn connected(&self, broker: &Broker) -> Result<(), ApplyError> {
        if broker.client.connection_state() == async_nats::connection::State::Connected {
            return Ok(());
        }
        metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "unavailable").increment(1);
        Err(self.unreachable())
    }

    /// Forgets the connection (the stream must be verified again).
    async fn disconnect(&self) {
        if let Some(broker) = self.broker.lock().await.take() {
            if let Err(e) = broker.client.drain().await {
                tracing::debug!(error = %e, "draining the dropped NATS connection failed; it is forgotten either way");
            }
        }
    }

    /// Creates the stream, or checks the one there: it captures the
    /// exporter's subjects in file storage with the configured duplicate
    /// window (updated if it differs), and holds at least what the durable
    /// record says was published into it.
    async fn ensure_stream(&self, js: &jetstream::Context, state: Option<&State>) -> Result<(), ApplyError> {
        let (name, subjects) = (&self.settings.stream, self.settings.subjects());
        let published = state.map_or(0, |s| s.last_sequence);
        match js.get_stream(name).await {
            Ok(stream) => {
                let info = stream.cached_info();
                if !info.config.subjects.contains(&subjects) {
                    return Err(unavailable(format!(
                        "stream {name} captures {:?}, not {subjects}: choose another --export-stream or --export-subject-prefix",
                        info.config.subjects
                    )));
                }
                if info.config.storage != StorageType::File {
                    return Err(unavailable(format!(
                        "stream {name} keeps its messages in memory; the exporter needs file storage"
                    )));
                }
                if info.state.last_sequence < published {
                    return Err(diverged(name, info.state.last_sequence, published));
                }
                if info.config.duplicate_window != self.settings.duplicate_window {
                    let mut config = info.config.clone();
                    config.duplicate_window = self.settings.duplicate_window;
                    js.update_stream(config)
                        .await
                        .map_err(|e| unavailable(format!("cannot set the duplicate window of stream {name}: {e}")))?;
                    tracing::info!(stream = %name, duplicate_window_ms = self.settings.duplicate_window.as_millis() as u64, "updated the stream's duplicate window");
                }
                Ok(())
            }
            Err(e) if is_stream_not_found(&e) => {
                if published > 0 {
                    return Err(diverged(name, 0, published));
                }
                let config = jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![subjects.clone()],
                    storage: StorageType::File,
                    duplicate_window: self.settings.duplicate_window,
                    description: Some("Twofold's event log (CloudEvents 1.0, binary mode)".to_owned()),
                    ..Default::default()
                };
                js.create_stream(config).await.map_err(|e| unavailable(format!("cannot create stream {name}: {e}")))?;
                tracing::info!(stream = %name, subjects = %subjects, "created the export stream");
                Ok(())
            }
            Err(e) => Err(unavailable(format!("cannot look up stream {name}: {e}"))),
        }
    }

    /// The durable record, read (and created when missing) inside the
    /// batch's transaction; refuses a record of another stream that already
    /// holds events.
    async fn state_in(&self, txn: &DatabaseTransaction) -> Result<State, ApplyError> {
        let state = match read_state(txn).await? {
            Some(state) => state,
            None => {
                let insert =
                    "INSERT INTO export_state (consumer, stream, last_sequence, updated_at) VALUES ($1, $2, 0, $3) \
                              ON CONFLICT (consumer) DO NOTHING";
                run(txn, insert, vec![EXPORTER.into(), self.settings.stream.clone().into(), chrono::Utc::now().into()])
                    .await?;
                read_state(txn).await?.ok_or_else(|| unavailable("the exporter's record could not be created"))?
            }
        };
        self.check_state(state)
    }

    fn check_state(&self, state: State) -> Result<State, ApplyError> {
        if state.stream == self.settings.stream {
            return Ok(state);
        }
        if state.last_sequence > 0 {
            return Err(unavailable(format!(
                "this log was exported into stream {} (up to its sequence {}), not {}: to export into {} from the start, \
                 delete the rows '{EXPORTER}' of export_state and projection_checkpoint while no exporter runs",
                state.stream, state.last_sequence, self.settings.stream, self.settings.stream
            )));
        }
        // Nothing published yet: the record follows the configuration.
        Ok(State { stream: self.settings.stream.clone(), last_sequence: 0 })
    }

    /// The messages of `events`, or the first that cannot be exported (a
    /// poison event).
    fn messages(&self, events: &[RecordedEvent]) -> Result<Vec<Outgoing>, ApplyError> {
        events
            .iter()
            .map(|e| {
                // The actor the reader took from the event's metadata.
                let actor = e.actor.as_ref().and_then(|a| serde_json::to_value(a).ok());
                message::to_message(e, actor.as_ref(), &self.settings.subject_prefix, &self.settings.source)
                    .map_err(|reason| ApplyError::Poison { position: e.position, reason: reason.to_string() })
            })
            .collect()
    }

    /// Publishes the messages of `events` after stream sequence `sequence`
    /// and returns the stream's sequence of the last one. Messages already
    /// in the stream (a re-sent batch) are recognized, never stored twice.
    ///
    /// Every message of a run is built before any is sent, so a poison
    /// event stops the batch before it publishes anything. Each is then
    /// handed to the client as it is (its headers moved, not copied: the
    /// copy was a tenth of the exporter's CPU); the rare run sent again
    /// after a refusal is built again from its events.
    async fn publish(&self, broker: &Broker, events: &[RecordedEvent], mut sequence: u64) -> Result<u64, ApplyError> {
        let started = Instant::now();
        let (mut next, mut reconciles, mut stored, mut duplicates) = (0usize, 0u32, 0u64, 0u64);
        while next < events.len() {
            let run = self.messages(&events[next..])?;
            let (acks, stop) = send_run(&broker.js, run, sequence).await;
            for ack in acks {
                if ack.sequence != sequence + 1 {
                    metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "diverged").increment(1);
                    return Err(unavailable(format!(
                        "stream {} acknowledged event {} at sequence {}, expected {}: the stream holds messages this exporter did not publish in this order",
                        self.settings.stream, events[next].position, ack.sequence, sequence + 1
                    )));
                }
                sequence = ack.sequence;
                next += 1;
                if ack.duplicate {
                    duplicates += 1;
                } else {
                    stored += 1;
                }
            }
            match stop {
                None => {}
                Some(Stop::WrongSequence) => {
                    metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "wrong_last_sequence").increment(1);
                    reconciles += 1;
                    if reconciles > MAX_RECONCILES {
                        return Err(unavailable(format!(
                            "stream {}'s last sequence keeps moving: something else publishes into it",
                            self.settings.stream
                        )));
                    }
                    let found = self.reconcile(broker, &events[next..], sequence).await?;
                    tracing::info!(stream = %self.settings.stream, from_sequence = sequence, already_published = found, "reconciled with the stream after a refused publish");
                    sequence += found as u64;
                    next += found;
                    duplicates += found as u64;
                }
                Some(Stop::Rejected { reason }) => {
                    metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "rejected").increment(1);
                    // Every message before it was acknowledged (and counted above).
                    let position = events[next].position;
                    return Err(ApplyError::Poison { position, reason: format!("the broker refused it: {reason}") });
                }
                Some(Stop::Failed { reason, stream_missing }) => {
                    metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "unavailable").increment(1);
                    if stream_missing {
                        // Verify (and never silently recreate) the stream on the next attempt.
                        self.disconnect().await;
                    }
                    return Err(unavailable(format!("publishing to stream {} failed: {reason}", self.settings.stream)));
                }
            }
        }
        metrics::histogram!(crate::metrics::EXPORT_ACK_LATENCY).record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::metrics::EXPORT_EVENTS).increment(stored);
        metrics::counter!(crate::metrics::EXPORT_DUPLICATES).increment(duplicates);
        Ok(sequence)
    }

    /// After a refused publish: how many of the messages of `events` the
    /// stream already holds right after `sequence`, read from the
    /// `Nats-Msg-Id` of the last of them. Anything else (fewer messages than
    /// recorded, a message that is not the expected event) means the stream
    /// is not this log's export, and nothing is published.
    async fn reconcile(&self, broker: &Broker, events: &[RecordedEvent], sequence: u64) -> Result<usize, ApplyError> {
        let name = &self.settings.stream;
        let stream = broker
            .js
            .get_stream_no_info(name)
            .await
            .map_err(|e| unavailable(format!("cannot look up stream {name}: {e}")))?;
        let info = stream.get_info().await.map_err(|e| unavailable(format!("cannot read stream {name}: {e}")))?;
        let last = info.state.last_sequence;
        if last < sequence {
            return Err(diverged(name, last, sequence));
        }
        let ahead = usize::try_from(last - sequence).unwrap_or(usize::MAX).min(events.len());
        if ahead == 0 {
            return Ok(0);
        }
        let expected = &events[ahead - 1];
        let at = sequence + ahead as u64;
        let found = stream
            .get_raw_message(at)
            .await
            .map_err(|e| unavailable(format!("cannot read message {at} of stream {name}: {e}")))?;
        let id = found.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        if id.as_deref() != Some(expected.position.to_string().as_str()) {
            metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "diverged").increment(1);
            return Err(unavailable(format!(
                "message {at} of stream {name} has Nats-Msg-Id {id:?}, but event {} belongs there: the stream holds messages this exporter did not publish",
                expected.position
            )));
        }
        Ok(ahead)
    }
}

/// Sends every message (expected last sequences counted up from
/// `sequence`), then awaits the acknowledgements in order, stopping at the
/// first failure.
async fn send_run(
    js: &jetstream::Context,
    run: Vec<Outgoing>,
    sequence: u64,
) -> (Vec<jetstream::publish::PublishAck>, Option<Stop>) {
    let mut pending = Vec::with_capacity(run.len());
    let mut stop = None;
    for (i, m) in run.into_iter().enumerate() {
        let publish = jetstream::message::PublishMessage::build()
            .payload(m.body)
            .headers(m.headers)
            .expected_last_sequence(sequence + i as u64);
        match js.send_publish(m.subject, publish).await {
            Ok(ack) => pending.push(ack),
            Err(e) => {
                stop = Some(classify(&e));
                break;
            }
        }
    }
    let mut acks = Vec::with_capacity(pending.len());
    for ack in pending {
        match ack.await {
            Ok(ack) => acks.push(ack),
            // The acknowledgements still pending are dropped (and awaited
            // in the background): the messages they belong to are either
            // refused for their expected sequence or correctly placed.
            Err(e) => return (acks, Some(classify(&e))),
        }
    }
    (acks, stop)
}

/// What a publish error means for the exporter.
fn classify(e: &jetstream::context::PublishError) -> Stop {
    let server_code =
        std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>()).map(|err| err.error_code());
    match e.kind() {
        PublishErrorKind::WrongLastSequence => Stop::WrongSequence,
        PublishErrorKind::MaxPayloadExceeded => Stop::Rejected { reason: e.to_string() },
        PublishErrorKind::Other if server_code == Some(jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => {
            Stop::Rejected { reason: e.to_string() }
        }
        PublishErrorKind::StreamNotFound => Stop::Failed {
            reason: "no stream captures the subject (was the stream deleted?)".to_owned(),
            stream_missing: true,
        },
        _ => Stop::Failed { reason: e.to_string(), stream_missing: false },
    }
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(err) if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn diverged(stream: &str, last: u64, published: u64) -> ApplyError {
    metrics::counter!(crate::metrics::EXPORT_ERRORS, "kind" => "diverged").increment(1);
    unavailable(format!(
        "stream {stream} ends at sequence {last}, but this exporter published up to {published} into it: it was purged or recreated. \
         To export the whole log into it again, delete the rows '{EXPORTER}' of export_state and projection_checkpoint while no exporter runs"
    ))
}

async fn read_state(conn: &impl ConnectionTrait) -> Result<Option<State>, DbErr> {
    let sql = "SELECT stream, last_sequence FROM export_state WHERE consumer = $1";
    let row = conn
        .query_one_raw(crate::projection::sql::statement(conn.get_database_backend(), sql, vec![EXPORTER.into()]))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let last: i64 = row.try_get("", "last_sequence")?;
    Ok(Some(State { stream: row.try_get("", "stream")?, last_sequence: u64::try_from(last).unwrap_or(0) }))
}

async fn run(txn: &DatabaseTransaction, sql: &str, values: Vec<Value>) -> Result<(), DbErr> {
    crate::projection::sql::execute(txn, sql, values).await.map(|_| ())
}

#[async_trait::async_trait]
impl Projection for Exporter {
    fn name(&self) -> &'static str {
        EXPORTER
    }

    /// Publishes the batch and records the stream's new last sequence in
    /// the batch's transaction; the runtime then commits it with the checkpoint.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        _: ApplyContext,
    ) -> Result<(), ApplyError> {
        if events.is_empty() {
            return Ok(());
        }
        let state = self.state_in(txn).await?;
        let broker = self.broker(Some(&state)).await?;
        // Disconnected: fail at once rather than queue publishes in the
        // client until the acknowledgements time out.
        self.connected(&broker)?;
        // The publish's span (traces only), a child of the batch's, which
        // links to each event's command; each message carries its event's
        // `traceparent` as a CloudEvents extension.
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "publish",
            otel.name = %format_args!("publish {}", self.settings.stream),
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.destination.name = %self.settings.stream,
            messaging.batch.message_count = events.len(),
        );
        let publishing = self.publish(&broker, events, state.last_sequence);
        let sequence = tracing::Instrument::instrument(publishing, span).await?;
        let now = chrono::Utc::now();
        let delay = metrics::histogram!(crate::metrics::EXPORT_DELAY);
        for e in events {
            delay.record((now - e.recorded_at).to_std().unwrap_or_default().as_secs_f64());
        }
        let sequence =
            i64::try_from(sequence).map_err(|_| unavailable("the stream's sequence left the 64-bit range"))?;
        let update = "UPDATE export_state SET stream = $1, last_sequence = $2, updated_at = $3 WHERE consumer = $4";
        run(txn, update, vec![self.settings.stream.clone().into(), sequence.into(), now.into(), EXPORTER.into()])
            .await?;
        Ok(())
    }

    /// The apply mostly waits for the broker: read the next batch meanwhile.
    fn reads_ahead(&self) -> bool {
        true
    }

    /// While there is nothing to export: connects (creating or verifying
    /// the stream) and checks the connection is up, so an unreachable
    /// broker shows as `retrying` (and `/readyz` as degraded) even when idle.
    async fn probe(&self) -> Result<(), ApplyError> {
        let connected = self.broker.lock().await.clone();
        let broker = match connected {
            Some(broker) => broker,
            None => {
                let state = read_state(&self.state_db.conn).await?.map(|s| self.check_state(s)).transpose()?;
                self.broker(state.as_ref()).await?
            }
        };
        match broker.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(self.unreachable()),
        }
    }
}
