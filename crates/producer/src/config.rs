//! What a producer is told: who it is, how it batches, where it spools and what it does when
//! it cannot keep up.

use std::path::PathBuf;
use std::time::Duration;

/// What the producer does with events it cannot hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Never drop: a batch the transport does not take at once is written to the spool (and
    /// synced to disk) and resent from there, in order, when the transport is back. Only a
    /// full or broken spool, or an emitter far faster than the disk, loses events — counted,
    /// logged, and visible downstream as a `producer_seq` gap.
    #[default]
    Durable,
    /// No spool: while the transport is down events wait in the bounded queue, and when it is
    /// full new events are dropped (counted, logged, and a `producer_seq` gap downstream).
    DropOnFull,
}

impl Mode {
    /// `durable` or `drop_on_full`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "durable" => Some(Mode::Durable),
            "drop_on_full" | "drop-on-full" => Some(Mode::DropOnFull),
            _ => None,
        }
    }
}

/// A producer's settings. [`ProducerConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// `source.service` of every event.
    pub service: String,
    /// The stable part of `source.producer_id` (default: the service name). Each start of the
    /// process adds its own incarnation to it, so a restarted producer never reuses a
    /// `(producer_id, producer_seq)` pair an earlier run sent.
    pub producer_name: Option<String>,
    /// Durable (spool, never drop) or drop-on-full.
    pub mode: Mode,
    /// Events the in-memory queue holds.
    pub queue_capacity: usize,
    /// Most events in one batch.
    pub batch_size: usize,
    /// How long the first event of a batch waits for more.
    pub linger: Duration,
    /// Where the spool lives (required in durable mode).
    pub spool_dir: Option<PathBuf>,
    /// Largest spool, in bytes of event JSON; a batch that would exceed it is dropped.
    pub spool_max_bytes: u64,
    /// A send that takes longer counts as failed (the batch goes to the spool).
    pub send_timeout: Duration,
    /// Longest wait between attempts while the transport is failing.
    pub max_backoff: Duration,
    /// On shutdown, how long to keep trying to deliver what is queued before leaving it in the
    /// spool for the next start.
    pub shutdown_timeout: Duration,
}

impl ProducerConfig {
    /// Defaults for `service`: durable, 65,536 queued events, batches of up to 500 after at
    /// most 5 ms, 1 GiB of spool, 3 s send timeout.
    pub fn new(service: impl Into<String>) -> ProducerConfig {
        ProducerConfig {
            service: service.into(),
            producer_name: None,
            mode: Mode::Durable,
            queue_capacity: 65_536,
            batch_size: 500,
            linger: Duration::from_millis(5),
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            send_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Durable mode with its spool in `dir`.
    pub fn with_spool(mut self, dir: impl Into<PathBuf>) -> Self {
        self.mode = Mode::Durable;
        self.spool_dir = Some(dir.into());
        self
    }
}
