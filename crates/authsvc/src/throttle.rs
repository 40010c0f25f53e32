//! Login throttling that an attacker cannot turn against the owner (NIST SP 800-63B §5.2.2:
//! limit failed attempts without enabling denial of service).
//!
//! Three counters of failed logins, each with growing delays once past its free attempts:
//!
//! - **(account, source)**: the source is the caller's address, or its known-device cookie when
//!   it has one for this account. Past [`ThrottlePolicy::pair_free`] failures the pair is
//!   locked for 1 s, doubling per failure up to [`ThrottlePolicy::max_delay`]. One address
//!   guessing one account is slowed at once, and nobody else is.
//! - **source address**: failures over every account, past [`ThrottlePolicy::address_free`]
//!   (password spraying). A known device is not held back by its address's counter.
//! - **account ceiling**: failures on the account from anywhere, past
//!   [`ThrottlePolicy::account_ceiling`] (far more than one address gets through quickly) —
//!   a distributed guess. Then only sources that have logged in to the account before (a
//!   known device, or an address with an earlier success) may try; strangers wait.
//!
//! A success clears its pair and the account's counter and remembers the source. Counters of
//! an account that does not exist work the same, so throttling reveals nothing about which
//! accounts exist. Attempts refused by a lock do not count (a locked caller cannot push its
//! own lock further out). A counter left alone for [`ThrottlePolicy::quiet_reset`] starts over.

pub use vigil_store::identity::{Attempt, Standing, ThrottlePolicy};

/// Which counter held a caller back (the `scope` of the audit event and the metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This source on this account.
    Source,
    /// This address, over all accounts.
    Address,
    /// The account's ceiling, for a stranger.
    Account,
}

impl Scope {
    /// The label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Source => "source",
            Scope::Address => "address",
            Scope::Account => "account",
        }
    }
}

/// Whether to refuse the attempt without checking the password, and for how many
/// milliseconds more.
pub fn decide(p: &ThrottlePolicy, s: &Standing, now: i64) -> Option<(Scope, i64)> {
    if s.pair_locked_until > now {
        return Some((Scope::Source, s.pair_locked_until - now));
    }
    if !s.device_known && s.address_locked_until > now {
        return Some((Scope::Address, s.address_locked_until - now));
    }
    let known = s.device_known || s.address_known;
    if !known && s.account_failures >= p.account_ceiling && s.account_locked_until > now {
        return Some((Scope::Account, s.account_locked_until - now));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_attempts_and_double_to_the_cap() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.delay(4, 5), 0);
        assert_eq!(p.delay(5, 5), 1);
        assert_eq!(p.delay(6, 5), 2);
        assert_eq!(p.delay(9, 5), 16);
        assert_eq!(p.delay(100, 5), 900);
        assert_eq!(p.delay(10_000, 5), 900);
    }

    #[test]
    fn a_known_source_passes_the_account_ceiling_and_a_stranger_does_not() {
        let p = ThrottlePolicy::default();
        let over = Standing {
            account_failures: 100,
            account_locked_until: 1_000,
            ..Standing::default()
        };
        assert_eq!(decide(&p, &over, 500), Some((Scope::Account, 500)));
        let device = Standing {
            device_known: true,
            ..over
        };
        assert_eq!(decide(&p, &device, 500), None);
        let address = Standing {
            address_known: true,
            ..over
        };
        assert_eq!(decide(&p, &address, 500), None);
        // A known device is not held back by its address's counter either; its own pair is.
        let sprayed = Standing {
            address_locked_until: 1_000,
            device_known: true,
            ..Standing::default()
        };
        assert_eq!(decide(&p, &sprayed, 500), None);
        let own = Standing {
            pair_locked_until: 600,
            ..sprayed
        };
        assert_eq!(decide(&p, &own, 500), Some((Scope::Source, 100)));
        assert_eq!(decide(&p, &Standing::default(), 500), None);
    }
}
