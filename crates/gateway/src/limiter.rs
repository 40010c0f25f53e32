//! Per-tenant rate limits by GCRA (the generic cell rate algorithm): each key holds one number,
//! its theoretical arrival time (TAT). A request is admitted when the TAT is no further ahead
//! of now than the burst tolerance; admitting moves the TAT one emission interval (a minute
//! divided by the limit) forward. A key whose TAT has passed holds no information, which is
//! what keeps both engines' memory bounded: such keys are dropped (memory) or expire (Redis).
//!
//! Two engines implement [`RateLimiter`]: [`MemoryLimiter`] for one instance, and
//! [`RedisLimiter`], one atomic script and one round trip per decision, shared by every
//! gateway instance. [`Breaker`] puts a short timeout and a circuit breaker around Redis and
//! decides with the in-memory engine (or refuses, if so configured) while Redis is away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::per_thread;

/// A limit: `per_minute` requests on average, at most `burst` back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests that may arrive at once.
    pub burst: u32,
}

impl Limit {
    /// `per_minute` with a burst of a tenth of a minute's worth (at least 1).
    pub fn per_minute(per_minute: u32) -> Limit {
        Limit {
            per_minute: per_minute.max(1),
            burst: (per_minute / 10).max(1),
        }
    }

    /// The limit divided among `n` instances (each at least 1 per minute).
    pub fn divided(self, n: u32) -> Limit {
        let n = n.max(1);
        Limit {
            per_minute: (self.per_minute / n).max(1),
            burst: (self.burst / n).max(1),
        }
    }

    /// Microseconds between admissions (at least 1: limits above 60 million a minute are
    /// treated as 60 million).
    fn interval_us(&self) -> u64 {
        (60_000_000 / u64::from(self.per_minute.max(1))).max(1)
    }

    /// Microseconds the TAT may run ahead of now.
    fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.burst.max(1) - 1)
    }
}

/// One decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Admitted?
    pub allowed: bool,
    /// Requests that could still be admitted right now.
    pub remaining: u32,
    /// Until the key is fully replenished.
    pub reset: Duration,
    /// When refused: until a request would be admitted.
    pub retry_after: Duration,
}

/// The GCRA step: given the stored TAT (µs, 0 when none) and now, the decision and the TAT to
/// store (unchanged when refused).
pub fn gcra(tat: u64, now: u64, limit: &Limit) -> (Decision, u64) {
    let (t, tau) = (limit.interval_us(), limit.tolerance_us());
    let tat = tat.max(now);
    if tat - now > tau {
        let wait = tat - now - tau;
        return (
            Decision {
                allowed: false,
                remaining: 0,
                reset: Duration::from_micros(tat - now),
                retry_after: Duration::from_micros(wait),
            },
            tat,
        );
    }
    let new_tat = tat + t;
    let ahead = new_tat - now;
    (
        Decision {
            allowed: true,
            remaining: ((tau + t).saturating_sub(ahead) / t) as u32,
            reset: Duration::from_micros(ahead),
            retry_after: Duration::ZERO,
        },
        new_tat,
    )
}

/// Why an engine could not decide.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The engine did not answer in time.
    #[error("rate limiter timed out")]
    Timeout,
    /// The engine failed.
    #[error("rate limiter failed: {0}")]
    Failed(String),
}

/// Decides whether a request under `key` is admitted.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// One decision (and, when admitted, the admission recorded).
    async fn check(&self, key: &str, limit: &Limit) -> Result<Decision, LimiterError>;

    /// Called once on each serving thread, on its runtime, before it serves: an engine
    /// with connections may open one for that thread's decisions (see [`RedisLimiter`]).
    async fn attach_thread(&self) {}
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// The in-memory engine: sharded maps of TATs, with memory bounded however many keys appear.
#[derive(Debug)]
pub struct MemoryLimiter {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    per_shard: usize,
}

const SHARDS: usize = 16;

impl MemoryLimiter {
    /// An engine tracking at most about `max_keys` keys at once.
    pub fn new(max_keys: usize) -> MemoryLimiter {
        MemoryLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (max_keys / SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, u64>> {
        // FNV-1a: stable, cheap, and the map inside the shard is keyed anyway.
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        &self.shards[(x as usize) % SHARDS]
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key whose TAT has passed (fully replenished: the same as absent).
    pub fn evict_idle(&self) {
        let now = unix_micros();
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|_, tat| *tat > now);
        }
    }

    /// The decision now.
    pub fn check_now(&self, key: &str, limit: &Limit) -> Decision {
        self.decide(key, limit, unix_micros())
    }

    /// The synchronous decision at `now` (µs since the epoch).
    pub fn decide(&self, key: &str, limit: &Limit, now: u64) -> Decision {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = shard.get(key).copied().unwrap_or(0);
        let (d, new_tat) = gcra(tat, now, limit);
        if d.allowed {
            if !shard.contains_key(key) && shard.len() >= self.per_shard {
                shard.retain(|_, t| *t > now);
                if shard.len() >= self.per_shard {
                    // Still full of active keys: forget the one closest to replenished.
                    if let Some(k) = shard
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(k, _)| k.clone())
                    {
                        shard.remove(&k);
                    }
                }
            }
            shard.insert(key.to_owned(), new_tat);
        }
        d
    }
}

#[async_trait::async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, key: &str, limit: &Limit) -> Result<Decision, LimiterError> {
        Ok(self.decide(key, limit, unix_micros()))
    }
}

/// GCRA in one Lua script, on Redis's own clock so every instance agrees. `ARGV[3]` asks for
/// up to that many admissions at once (a lease, see [`RedisLimiter`]); it grants as many as
/// the limit allows now, moving the TAT one interval for each. Returns
/// `{granted, remaining, reset_us, retry_us}` (granted 0: refused); the key expires when it
/// is replenished.
const SCRIPT: &str = r#"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3] or '1')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tau then
  return {0, 0, tat - now, tat - now - tau}
end
local granted = math.min(want, math.floor((tau - (tat - now)) / t) + 1)
local new_tat = tat + granted * t
local ahead = new_tat - now
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {granted, math.floor((tau + t - ahead) / t), ahead, 0}
"#;

/// Most admissions one lease takes, by default (`rate_limit.max_lease`).
pub const MAX_LEASE: u32 = 64;
/// How long a lease's admissions may be used; unused ones are lost (counted as admitted).
const LEASE_TTL: Duration = Duration::from_millis(50);
/// Keys with a lease, at most (beyond that, decisions go to Redis one by one).
const MAX_LEASED_KEYS: usize = 10_000;

/// Admissions taken from Redis ahead of the requests that use them.
#[derive(Debug)]
struct Lease {
    /// Admissions left to hand out.
    left: u32,
    /// How many the last lease took.
    size: u32,
    /// Until when they may be used.
    until: Instant,
    /// What Redis said remained after granting them.
    remaining: u32,
    /// When the key is replenished, as Redis said.
    reset_at: Instant,
    /// For the same limit only.
    limit: Limit,
}

impl Lease {
    /// How many to ask for next: double the last when it was used up in time, half when
    /// some expired unused; never more than a quarter of what remained, nor [`MAX_LEASE`].
    /// Near the limit (fewer than 8 remaining) that is 1: every decision is Redis's own.
    fn next_size(prev: Option<&Lease>, now: Instant, max: u32) -> u32 {
        let Some(p) = prev else { return 1 };
        let wanted = if p.left == 0 && now <= p.until + LEASE_TTL {
            p.size.saturating_mul(2)
        } else {
            p.size / 2
        };
        wanted.min(p.remaining / 4).clamp(1, max.max(1))
    }
}

/// The Redis engine: one `EVALSHA` round trip per decision — or, for a key far below its
/// limit, per lease of several. A lease takes up to `max_lease` admissions from Redis at
/// once (atomically, as that many decisions) and hands them to this instance's next requests
/// for that key within [`LEASE_TTL`]. The bound: no instance ever admits more than Redis
/// granted, so the limit is never exceeded; a lease's unused admissions are lost when it
/// expires, so a tenant can be refused early by at most what its leases hold unused — never
/// more than a quarter of what remained when each was taken, and nothing near the limit
/// (fewer than 8 remaining: one decision per round trip, as without leases). Leases grow
/// while they are used up in time and shrink when they expire unused.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    leases: Mutex<HashMap<String, Lease>>,
    max_lease: u32,
    /// Round trips to Redis (decisions and leases).
    round_trips: AtomicU64,
    script: redis::Script,
    prefix: String,
    /// To open a serving thread's own connection.
    client: redis::Client,
    config: redis::aio::ConnectionManagerConfig,
    timeout: Duration,
}

thread_local! {
    /// A serving thread's own connection, with the limiter (its address) it belongs to: its
    /// decisions are written, read and answered on that thread, never waking the runtime
    /// that holds the shared connection.
    static THREAD_REDIS: per_thread::Slot<redis::aio::ConnectionManager> =
        const { std::cell::RefCell::new(None) };
}

impl RedisLimiter {
    /// Takes at most `max` admissions per round trip (1: every decision is one).
    pub fn with_max_lease(mut self, max: u32) -> RedisLimiter {
        self.max_lease = max.max(1);
        self
    }

    /// Round trips made to Redis so far (decisions and leases).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// This thread's connection when it has one, else the shared one.
    fn connection(&self) -> redis::aio::ConnectionManager {
        per_thread::get(&THREAD_REDIS, self).unwrap_or_else(|| self.conn.clone())
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to `url`; keys are `prefix` + the caller's key. The connection reconnects by
    /// itself after Redis comes back.
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisLimiter, LimiterError> {
        let client = redis::Client::open(url).map_err(|e| LimiterError::Failed(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let conn = tokio::time::timeout(
            timeout * 10,
            redis::aio::ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        .map_err(|_| LimiterError::Timeout)?
        .map_err(|e| LimiterError::Failed(e.to_string()))?;
        Ok(RedisLimiter {
            conn,
            leases: Mutex::new(HashMap::new()),
            max_lease: MAX_LEASE,
            round_trips: AtomicU64::new(0),
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            client,
            config,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, limit: &Limit) -> Result<Decision, LimiterError> {
        let now = Instant::now();
        let want = {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let mut lease = leases.get_mut(key).filter(|l| l.limit == *limit);
            if let Some(l) = lease.as_deref_mut().filter(|l| l.left > 0 && now < l.until) {
                l.left -= 1;
                return Ok(Decision {
                    allowed: true,
                    remaining: l.remaining + l.left,
                    reset: l.reset_at.saturating_duration_since(now),
                    retry_after: Duration::ZERO,
                });
            }
            Lease::next_size(lease.as_deref(), now, self.max_lease)
        };
        let mut conn = self.connection();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let (granted, remaining, reset, retry): (i64, i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(limit.interval_us())
            .arg(limit.tolerance_us())
            .arg(want)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimiterError::Failed(e.to_string()))?;
        let granted = granted.clamp(0, i64::from(want)) as u32;
        let remaining = remaining.max(0) as u32;
        let reset = Duration::from_micros(reset.max(0) as u64);
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        // Concurrent requests may each have taken a lease: what another still holds is used
        // or kept, never thrown away.
        let held = leases
            .get(key)
            .filter(|l| l.limit == *limit && now < l.until)
            .map_or(0, |l| l.left);
        if granted == 0 {
            if held > 0 {
                let l = leases.get_mut(key).expect("held");
                l.left -= 1;
                // Redis just refused: what remains is what this lease still holds.
                return Ok(Decision {
                    allowed: true,
                    remaining: l.left,
                    reset: l.reset_at.saturating_duration_since(now),
                    retry_after: Duration::ZERO,
                });
            }
            leases.remove(key);
            return Ok(Decision {
                allowed: false,
                remaining: 0,
                reset,
                retry_after: Duration::from_micros(retry.max(0) as u64),
            });
        }
        let left = held + granted - 1;
        if self.max_lease <= 1 || (left == 0 && remaining < 8) {
            // Near the limit: the next decision is Redis's own again.
            leases.remove(key);
        } else {
            if leases.len() >= MAX_LEASED_KEYS && !leases.contains_key(key) {
                leases.retain(|_, l| l.until + LEASE_TTL > now);
            }
            if leases.len() < MAX_LEASED_KEYS || leases.contains_key(key) {
                leases.insert(
                    key.to_owned(),
                    Lease {
                        left,
                        size: granted,
                        until: now + LEASE_TTL,
                        remaining,
                        reset_at: now + reset,
                        limit: *limit,
                    },
                );
            }
        }
        Ok(Decision {
            allowed: true,
            remaining: remaining + left,
            reset,
            retry_after: Duration::ZERO,
        })
    }

    /// Opens this thread's connection. When Redis is away now, the thread uses the shared
    /// connection (which reconnects by itself) and the breaker decides as it does for all.
    async fn attach_thread(&self) {
        let opened = tokio::time::timeout(
            self.timeout * 10,
            redis::aio::ConnectionManager::new_with_config(
                self.client.clone(),
                self.config.clone(),
            ),
        )
        .await;
        match opened {
            Ok(Ok(conn)) => {
                per_thread::set(&THREAD_REDIS, self, conn);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a serving thread's Redis connection did not open; it uses the shared one")
            }
            Err(_) => {
                tracing::warn!(
                    "a serving thread's Redis connection timed out; it uses the shared one"
                )
            }
        }
    }
}

/// What to do while the shared engine is away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Decide with the in-memory engine, each tenant's limit divided by the instance count.
    OpenLocal,
    /// Refuse every request (429) until the shared engine is back.
    Closed,
}

/// Which engine decides now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The shared engine (Redis).
    Shared,
    /// The fallback (memory, or refusing).
    Fallback,
}

/// Told when the deciding engine changes.
pub trait TransitionSink: Send + Sync + std::fmt::Debug {
    /// The deciding engine is now `to`; `why` says what happened.
    fn changed(&self, to: Engine, why: &str);
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// The shared engine behind a timeout and a circuit breaker, with a local fallback.
///
/// Closed: every decision goes to the shared engine, each with `timeout`; after `threshold`
/// failures in a row the breaker opens. Open: decisions go to the fallback at once, with no
/// wait; every `probe_every` one decision is sent to the shared engine as a probe (in the
/// background, so no request waits on it), and its success closes the breaker again.
#[derive(Debug)]
pub struct Breaker {
    shared: Arc<dyn RateLimiter>,
    fallback: MemoryLimiter,
    mode: FailMode,
    instances: u32,
    timeout: Duration,
    threshold: u32,
    probe_every: Duration,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the breaker last opened or probed, µs since `epoch`.
    last_probe: AtomicU64,
    probing: std::sync::atomic::AtomicBool,
    epoch: Instant,
    sink: Arc<dyn TransitionSink>,
}

/// A breaker's decision, with the engine that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// Who decided.
    pub engine: Engine,
}

impl Breaker {
    /// A breaker around `shared`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<dyn RateLimiter>,
        mode: FailMode,
        instances: u32,
        timeout: Duration,
        threshold: u32,
        probe_every: Duration,
        max_local_keys: usize,
        sink: Arc<dyn TransitionSink>,
    ) -> Arc<Breaker> {
        Arc::new(Breaker {
            shared,
            fallback: MemoryLimiter::new(max_local_keys),
            mode,
            instances: instances.max(1),
            timeout,
            threshold: threshold.max(1),
            probe_every,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            last_probe: AtomicU64::new(0),
            probing: std::sync::atomic::AtomicBool::new(false),
            epoch: Instant::now(),
            sink,
        })
    }

    /// Lets the shared engine open this serving thread's own connection (see
    /// [`RateLimiter::attach_thread`]).
    pub async fn attach_thread(&self) {
        self.shared.attach_thread().await;
    }

    /// Which engine decides now.
    pub fn engine(&self) -> Engine {
        if self.state.load(Ordering::Acquire) == CLOSED {
            Engine::Shared
        } else {
            Engine::Fallback
        }
    }

    /// The local engine (for eviction).
    pub fn fallback(&self) -> &MemoryLimiter {
        &self.fallback
    }

    fn since_epoch(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn local(&self, key: &str, limit: &Limit) -> Decision {
        match self.mode {
            FailMode::OpenLocal => {
                self.fallback
                    .decide(key, &limit.divided(self.instances), unix_micros())
            }
            FailMode::Closed => Decision {
                allowed: false,
                remaining: 0,
                reset: self.probe_every,
                retry_after: self.probe_every.max(Duration::from_secs(1)),
            },
        }
    }

    fn failed(&self, why: &str) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold
            && self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.last_probe.store(self.since_epoch(), Ordering::Release);
            self.sink.changed(Engine::Fallback, why);
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
        if self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.sink
                .changed(Engine::Shared, "the shared engine answers again");
        }
    }

    /// One decision.
    pub async fn check(self: &Arc<Self>, key: &str, limit: &Limit) -> Decided {
        if self.state.load(Ordering::Acquire) == OPEN {
            self.maybe_probe(key, limit);
            return Decided {
                decision: self.local(key, limit),
                engine: Engine::Fallback,
            };
        }
        match tokio::time::timeout(self.timeout, self.shared.check(key, limit)).await {
            Ok(Ok(d)) => {
                self.succeeded();
                Decided {
                    decision: d,
                    engine: Engine::Shared,
                }
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                Decided {
                    decision: self.local(key, limit),
                    engine: Engine::Fallback,
                }
            }
            Err(_) => {
                self.failed("timed out");
                Decided {
                    decision: self.local(key, limit),
                    engine: Engine::Fallback,
                }
            }
        }
    }

    /// While open: at most one probe per `probe_every`, in the background.
    fn maybe_probe(self: &Arc<Self>, key: &str, limit: &Limit) {
        let now = self.since_epoch();
        let last = self.last_probe.load(Ordering::Acquire);
        if now.saturating_sub(last) < self.probe_every.as_micros() as u64
            || self.probing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.last_probe.store(now, Ordering::Release);
        let (me, key, limit) = (Arc::clone(self), key.to_owned(), *limit);
        tokio::spawn(async move {
            // The probe records a real admission on the shared engine: the request it stands
            // for was counted locally too, which errs on the side of the limit.
            match tokio::time::timeout(me.timeout * 5, me.shared.check(&key, &limit)).await {
                Ok(Ok(_)) => me.succeeded(),
                _ => me.last_probe.store(me.since_epoch(), Ordering::Release),
            }
            me.probing.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        let limit = Limit {
            per_minute: 60,
            burst: 5,
        };
        let mut tat = 0;
        let now = 1_000_000_000;
        let mut admitted = 0;
        for _ in 0..20 {
            let (d, t) = gcra(tat, now, &limit);
            tat = t;
            admitted += u32::from(d.allowed);
        }
        assert_eq!(admitted, 5);
        let (d, _) = gcra(tat, now, &limit);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        let (d, _) = gcra(tat, now + 1_000_000, &limit);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn a_fresh_key_reports_what_remains() {
        let limit = Limit {
            per_minute: 600,
            burst: 10,
        };
        let (d, _) = gcra(0, 5_000_000, &limit);
        assert!(d.allowed);
        assert_eq!(d.remaining, 9);
        assert_eq!(d.reset, Duration::from_millis(100));
    }

    #[test]
    fn memory_stays_bounded_however_many_keys_appear() {
        let m = MemoryLimiter::new(1_000);
        let limit = Limit::per_minute(60);
        let now = unix_micros();
        for i in 0..100_000 {
            m.decide(&format!("tenant-{i}"), &limit, now);
        }
        assert!(m.len() <= 1_000 + SHARDS, "{}", m.len());
        // Idle keys go: with a TAT in the past they carry nothing.
        let later = Limit {
            per_minute: 6_000_000,
            burst: 1,
        };
        let m = MemoryLimiter::new(1_000);
        for i in 0..100 {
            m.decide(&format!("t{i}"), &later, unix_micros());
        }
        std::thread::sleep(Duration::from_millis(2));
        m.evict_idle();
        assert!(m.is_empty());
    }

    /// A shared engine that is down, or answers, as the test says.
    #[derive(Debug, Default)]
    struct Flaky(std::sync::atomic::AtomicBool);

    #[async_trait::async_trait]
    impl RateLimiter for Flaky {
        async fn check(&self, _key: &str, _limit: &Limit) -> Result<Decision, LimiterError> {
            if self.0.load(Ordering::SeqCst) {
                Ok(Decision {
                    allowed: true,
                    remaining: 9,
                    reset: Duration::ZERO,
                    retry_after: Duration::ZERO,
                })
            } else {
                Err(LimiterError::Failed("connection refused".into()))
            }
        }
    }

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<Engine>>);

    impl TransitionSink for Seen {
        fn changed(&self, to: Engine, _why: &str) {
            self.0.lock().unwrap().push(to);
        }
    }

    #[tokio::test]
    async fn the_breaker_falls_back_with_a_share_of_the_limit_and_returns_by_itself() {
        let shared = Arc::new(Flaky::default());
        let seen = Arc::new(Seen::default());
        let b = Breaker::new(
            shared.clone(),
            FailMode::OpenLocal,
            2,
            Duration::from_millis(20),
            3,
            Duration::from_millis(50),
            1000,
            seen.clone(),
        );
        let limit = Limit {
            per_minute: 60,
            burst: 6,
        };
        // Three failures open the breaker; every one of them was still decided (locally).
        let mut admitted = 0;
        for _ in 0..10 {
            let d = b.check("acme", &limit).await;
            assert_eq!(d.engine, Engine::Fallback);
            admitted += u32::from(d.decision.allowed);
        }
        assert_eq!(b.engine(), Engine::Fallback);
        assert_eq!(admitted, 3, "two instances: each admits half the burst");
        // Redis answers again: a probe (at most one per 50 ms) closes the breaker.
        shared.0.store(true, Ordering::SeqCst);
        for _ in 0..50 {
            b.check("acme", &limit).await;
            if b.engine() == Engine::Shared {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(b.engine(), Engine::Shared);
        assert_eq!(b.check("acme", &limit).await.engine, Engine::Shared);
        assert_eq!(*seen.0.lock().unwrap(), [Engine::Fallback, Engine::Shared]);
    }

    #[tokio::test]
    async fn fail_closed_refuses_while_the_shared_engine_is_away() {
        let b = Breaker::new(
            Arc::new(Flaky::default()),
            FailMode::Closed,
            1,
            Duration::from_millis(20),
            1,
            Duration::from_secs(60),
            1000,
            Arc::new(Seen::default()),
        );
        let d = b.check("acme", &Limit::per_minute(600)).await;
        assert!(!d.decision.allowed);
        assert!(d.decision.retry_after >= Duration::from_secs(1));
    }

    #[test]
    fn limits_beyond_one_per_microsecond_do_not_divide_by_zero() {
        let limit = Limit {
            per_minute: 100_000_000,
            burst: 1_000,
        };
        let (d, _) = gcra(0, 1_000_000, &limit);
        assert!(d.allowed);
    }

    #[test]
    fn a_divided_limit_never_reaches_zero() {
        assert_eq!(
            Limit::per_minute(100).divided(3),
            Limit {
                per_minute: 33,
                burst: 3
            }
        );
        assert_eq!(
            Limit::per_minute(2).divided(8),
            Limit {
                per_minute: 1,
                burst: 1
            }
        );
    }
}
