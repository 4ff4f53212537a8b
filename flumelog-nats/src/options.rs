//! [`NatsOptions`]: how a [`NatsLog`](crate::NatsLog) names, creates and talks to its stream.

use std::time::Duration;

/// Settings of a [`NatsLog`](crate::NatsLog). Every default is written next to its field.
///
/// The largest record (and the largest batch, framed with 4 bytes per record) is the
/// server's `max_payload` less 512 bytes for headers. nats-server's default `max_payload`
/// is 1 MB; raise it in the server configuration (`max_payload: 8MB`, at most 64 MB) for
/// larger records or batches.
///
/// ```
/// use std::time::Duration;
/// use flumelog_nats::NatsOptions;
///
/// let options = NatsOptions::new("orders")
///     .replicas(3)
///     .duplicate_window(Duration::from_secs(600));
/// assert_eq!(options.subject(), "flume.orders");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsOptions {
    /// The JetStream stream's name. Default: `"flume"`.
    pub stream: String,
    /// The one subject the stream stores (the log owns it: nothing else may publish to it).
    /// Default: `None`, meaning `flume.<stream>`.
    pub subject: Option<String>,
    /// Replicas of the stream when this handle creates it (1, 3 or 5). Default: 1.
    pub replicas: usize,
    /// Create the stream when it does not exist. Default: `true`.
    pub create: bool,
    /// The stream's deduplication window: an append retried within it (after a timeout)
    /// is stored once. Default: 2 minutes (the server's default).
    pub duplicate_window: Duration,
    /// How long one request (an acknowledgement, a read) may take before it is retried or
    /// reported. Default: 5 seconds.
    pub request_timeout: Duration,
    /// How long an append (or a read) keeps retrying (through a leader election, or while
    /// other writers take the tail first) before it fails with
    /// [`NatsError::Unavailable`](crate::NatsError::Unavailable) or
    /// [`NatsError::Contended`](crate::NatsError::Contended). Must be shorter than the
    /// duplicate window. Default: 30 seconds.
    ///
    /// **The bound**: every append answers, with its seq or a typed error, within
    /// `append_timeout + request_timeout` of its call (the last request sent before the
    /// deadline may take up to one request timeout to be answered); a read of one record
    /// within the same bound.
    pub append_timeout: Duration,
    /// How many reads a stream or a batch lookup keeps in flight. Default: 64.
    pub read_concurrency: usize,
    /// How often the follower (which keeps `since` up with other processes' appends) also
    /// polls the stream's state, as a safety net for its consumer. Default: 1 second.
    pub follow_interval: Duration,
    /// How long a stream's ordered consumer (which reads long histories) may deliver
    /// nothing before the stream gives up on it and reads on by message gets from the
    /// stream leader, which then succeed or fail within the append timeout. Guards against
    /// a consumer stuck on a replica that stopped applying the stream. Default: 5 seconds.
    pub progress_timeout: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self::new("flume")
    }
}

impl NatsOptions {
    /// The defaults, for the stream `name`.
    pub fn new(stream: impl Into<String>) -> Self {
        NatsOptions {
            stream: stream.into(),
            subject: None,
            replicas: 1,
            create: true,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            append_timeout: Duration::from_secs(30),
            read_concurrency: 64,
            follow_interval: Duration::from_secs(1),
            progress_timeout: Duration::from_secs(5),
        }
    }
    /// Sets [`NatsOptions::subject`].
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    /// Sets [`NatsOptions::replicas`].
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }
    /// Sets [`NatsOptions::create`].
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Sets [`NatsOptions::duplicate_window`].
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }
    /// Sets [`NatsOptions::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// Sets [`NatsOptions::append_timeout`].
    pub fn append_timeout(mut self, timeout: Duration) -> Self {
        self.append_timeout = timeout;
        self
    }
    /// Sets [`NatsOptions::read_concurrency`].
    pub fn read_concurrency(mut self, n: usize) -> Self {
        self.read_concurrency = n.max(1);
        self
    }
    /// Sets [`NatsOptions::follow_interval`].
    pub fn follow_interval(mut self, interval: Duration) -> Self {
        self.follow_interval = interval.max(Duration::from_millis(10));
        self
    }
    /// Sets [`NatsOptions::progress_timeout`].
    pub fn progress_timeout(mut self, timeout: Duration) -> Self {
        self.progress_timeout = timeout.max(Duration::from_millis(10));
        self
    }
    /// The subject the log publishes to: [`NatsOptions::subject`] or `flume.<stream>`.
    pub fn subject(&self) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("flume.{}", self.stream))
    }
}
