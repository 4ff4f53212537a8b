//! Opening the log: connecting, getting or creating the stream, and refusing a stream whose
//! configuration would break the log's guarantees (limits, memory storage, deletes, gaps,
//! a duplicate window shorter than the append timeout).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fairness::{listen_for_yields, Fairness};
use super::follower::follow;
use super::writer::Writer;
use super::{Inner, NatsLog, Tails};
use crate::error::{other, NatsError};
use crate::NatsOptions;

impl NatsLog {
    /// Connects to `url` (for example `"nats://127.0.0.1:4222"`, or several URLs separated
    /// by commas) and opens the log described by `options`.
    ///
    /// # Errors
    /// [`NatsError::Unreachable`] when no server answers within the request timeout; see
    /// [`NatsLog::open`] for the rest.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the connection; nothing is written, except that an
    /// interrupted batch may have been completed (see [`NatsLog::open`]).
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsLog, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(options.request_timeout)
            .request_timeout(Some(options.request_timeout))
            .ping_interval(options.request_timeout)
            .max_reconnects(None)
            .connect(
                url.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| NatsError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        NatsLog::open(client, options).await
    }

    /// Opens the log described by `options` on an existing client connection, creating
    /// the stream when it is missing and [`NatsOptions::create`] is on.
    ///
    /// The stream is created with file storage, [`NatsOptions::replicas`] replicas, no limits
    /// (nothing expires), deletes and purges denied, direct gets allowed and the configured
    /// duplicate window. An existing stream is checked for the same properties.
    ///
    /// If a writer crashed in the middle of a batch (its batch message stored, some fillers
    /// missing), opening completes the batch, so that its records become visible.
    ///
    /// # Errors
    /// [`NatsError::StreamMissing`], [`NatsError::Misconfigured`] (limits, storage, deletes
    /// allowed, direct get off, gaps in the stream), [`NatsError::Unavailable`] (no
    /// JetStream, no leader), [`NatsError::Foreign`] when the stream's last message is not
    /// in this crate's format.
    ///
    /// # Cancel safety
    /// As for [`NatsLog::connect`].
    pub async fn open(
        client: async_nats::Client,
        options: NatsOptions,
    ) -> Result<NatsLog, NatsError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .ack_timeout(options.request_timeout)
            .build(client.clone());
        let name = options.stream.clone();
        let subject = options.subject();
        let stream = open_stream(&js, &options, &subject).await?;
        let max_payload = client.server_info().max_payload;
        let id_prefix = format!("{:016x}", rand::random::<u64>());
        let fairness = Arc::new(Fairness::new(
            format!("_flume.yield.{name}"),
            id_prefix.clone(),
        ));
        let inner = Arc::new(Inner {
            js,
            stream,
            name,
            subject,
            options,
            max_payload,
            since: Arc::new(Tails::default()),
            writer: tokio::sync::Mutex::new(Writer {
                tail: 0,
                last_id: None,
                stale: true,
                generation: 0,
            }),
            closed: CancellationToken::new(),
            id_prefix,
            next_id: AtomicU64::new(0),
            fairness: Arc::clone(&fairness),
        });
        tokio::spawn(listen_for_yields(client, fairness, inner.closed.clone()));
        let tail = {
            let mut w = inner.writer.lock().await;
            inner
                .refresh(&mut w, Instant::now() + inner.options.append_timeout)
                .await?;
            w.tail
        };
        tracing::debug!(stream = %inner.name, tail, "opened the NATS log");
        tokio::spawn(follow(
            inner.stream.clone(),
            Arc::clone(&inner.since),
            tail + 1,
            inner.closed.clone(),
            inner.name.clone(),
            inner.options.follow_interval,
        ));
        Ok(NatsLog { inner })
    }
}

/// Gets or creates the stream and checks its configuration.
async fn open_stream(
    js: &jetstream::Context,
    options: &NatsOptions,
    subject: &str,
) -> Result<stream::Stream, NatsError> {
    let name = &options.stream;
    let unavailable = |what: &'static str, e: &dyn std::fmt::Display| {
        tracing::warn!(stream = %name, error = %e, "{what} failed");
        NatsError::Unavailable {
            stream: name.clone(),
            what,
            waited: options.request_timeout,
            reason: e.to_string(),
        }
    };
    let mut stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            async_nats::jetstream::context::GetStreamErrorKind::JetStream(err)
                if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                if !options.create {
                    return Err(NatsError::StreamMissing {
                        stream: name.clone(),
                    });
                }
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.to_owned()],
                    storage: stream::StorageType::File,
                    num_replicas: options.replicas,
                    retention: stream::RetentionPolicy::Limits,
                    max_age: Duration::ZERO,
                    max_messages: -1,
                    max_bytes: -1,
                    max_messages_per_subject: -1,
                    discard: stream::DiscardPolicy::New,
                    duplicate_window: options.duplicate_window,
                    deny_delete: true,
                    deny_purge: true,
                    allow_direct: true,
                    description: Some("flume-rs log (flumelog-nats)".into()),
                    ..Default::default()
                };
                tracing::info!(stream = %name, replicas = options.replicas, "creating the JetStream stream");
                match js.create_stream(config).await {
                    Ok(stream) => stream,
                    // Another process created it meanwhile.
                    Err(_) => js
                        .get_stream(name)
                        .await
                        .map_err(|e| other("creating the stream", e))?,
                }
            }
            async_nats::jetstream::context::GetStreamErrorKind::Request => {
                return Err(unavailable("stream lookup", &e));
            }
            _ => return Err(other("stream lookup", e)),
        },
    };
    let info = stream
        .info()
        .await
        .map_err(|e| unavailable("stream info", &e))?;
    check_config(info, subject, options.append_timeout)?;
    Ok(stream)
}

/// Refuses a stream whose configuration would break the log's guarantees.
fn check_config(
    info: &stream::Info,
    subject: &str,
    append_timeout: Duration,
) -> Result<(), NatsError> {
    let c = &info.config;
    let problem = if c.subjects != [subject.to_owned()] {
        Some(format!(
            "it stores subjects {:?}, where the log needs exactly [{subject:?}]",
            c.subjects
        ))
    } else if c.storage != stream::StorageType::File {
        Some("it keeps messages in memory; the log needs file storage".into())
    } else if c.max_age != Duration::ZERO
        || c.max_messages > 0
        || c.max_bytes > 0
        || c.max_messages_per_subject > 0
    {
        Some("it has limits (max_age, max_msgs, max_bytes or max_msgs_per_subject) under which old records would expire".into())
    } else if c.retention != stream::RetentionPolicy::Limits {
        Some("its retention is not `limits`, so acknowledged records could disappear".into())
    } else if !c.deny_delete || !c.deny_purge {
        Some("it allows deletes or purges, which would leave gaps in the seqs".into())
    } else if !c.allow_direct {
        Some("direct gets are off (allow_direct: false)".into())
    } else if c.duplicate_window <= append_timeout {
        Some(format!(
            "its duplicate window ({:?}) is not longer than the append timeout ({append_timeout:?}), \
             so a retried append could be stored twice; raise the window or lower \
             NatsOptions::append_timeout",
            c.duplicate_window
        ))
    } else if info.state.messages != info.state.last_sequence {
        Some(format!(
            "it holds {} messages for {} sequences: some were deleted, so seqs would have gaps",
            info.state.messages, info.state.last_sequence
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NatsError::Misconfigured {
            stream: c.name.clone(),
            problem,
        }),
        None => Ok(()),
    }
}
