//! Where an acknowledgement feed's cursors come from, and how far a reader
//! may go.
//!
//! A feed entry's cursor starts with the time it was minted (milliseconds,
//! 13 digits), and readers page through a partner's feed in cursor order.
//! A write that minted its cursor earlier can commit after a later one, so
//! a reader must not pass a cursor while an entry that sorts before it may
//! still appear. Two bounds keep readers behind such writes:
//!
//! - **In this process, exactly**: cursors are minted by one [`FeedClock`]
//!   that keeps every stamp until its write has committed (the
//!   [`FeedStamp`] is dropped after the write returns). A reader never
//!   passes the oldest stamp still in flight, and every stamp minted later
//!   sorts after the reader's horizon.
//! - **Across processes, by time**: writes of other processes (workers on
//!   other machines, or intake and workers split into two processes) are
//!   unknown here; a reader stays `settle` behind the clock for them
//!   (`server.feed_settle_ms`). A lone `serve` process on the embedded
//!   backend is the only writer of its feeds and needs no settle window.

use crate::records::now_ms;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Mints feed cursors and remembers which are not yet durable.
#[derive(Debug, Default)]
pub struct FeedClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The newest millisecond minted: cursors never go back, even if the
    /// wall clock does.
    last_ms: i64,
    /// Stamps whose writes have not returned, by minted millisecond.
    in_flight: BTreeMap<i64, usize>,
}

/// A minted cursor time, in flight until dropped. Drop it once the write
/// that holds its feed entries has returned (committed or failed).
#[derive(Debug)]
#[must_use = "a stamp must live until its feed entries are written"]
pub struct FeedStamp {
    clock: &'static FeedClock,
    ms: i64,
}

/// This process's clock.
pub fn clock() -> &'static FeedClock {
    static CLOCK: OnceLock<FeedClock> = OnceLock::new();
    CLOCK.get_or_init(FeedClock::default)
}

impl FeedClock {
    /// A stamp at the current time (never before an earlier stamp), in
    /// flight until dropped.
    pub fn stamp(&'static self) -> FeedStamp {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = now_ms().max(s.last_ms);
        s.last_ms = ms;
        *s.in_flight.entry(ms).or_insert(0) += 1;
        FeedStamp { clock: self, ms }
    }

    /// The newest cursor time a reader may pass: before every stamp still
    /// in flight, before any stamp minted from now on, and `settle` behind
    /// the clock for writers in other processes. Take it **before** reading
    /// the page it filters: every stamp at or before it was written by
    /// then, whereas one whose write returns between the read and a
    /// horizon taken after it would be missing from the page and passed.
    pub fn horizon_ms(&self, settle: Duration) -> i64 {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now_ms();
        // Stamps minted after this call are at `now.max(last_ms)` or later.
        let next = now.max(s.last_ms);
        let oldest = s.in_flight.keys().next().copied().unwrap_or(next);
        let settled = now - i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
        (oldest.min(next) - 1).min(settled)
    }

    /// How many stamps are in flight.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).in_flight.values().sum()
    }

    fn release(&self, ms: i64) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = s.in_flight.get_mut(&ms) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(&ms);
            }
        }
    }
}

impl FeedStamp {
    /// The stamp's time (Unix milliseconds).
    pub fn ms(&self) -> i64 {
        self.ms
    }

    /// The cursor of the feed entry of acknowledgement `ack_id`.
    pub fn cursor(&self, ack_id: &str) -> String {
        crate::records::FeedEntry::cursor(self.ms, ack_id)
    }
}

impl Drop for FeedStamp {
    fn drop(&mut self) {
        self.clock.release(self.ms);
    }
}

/// Writes `writes` (which hold feed entries under cursors of `stamp`) in
/// a task of its own, dropping the stamp once they have returned. A write
/// already handed to a store may commit after its caller went away (a
/// request timed out, a client hung up): the stamp must stay in flight
/// until then, or a reader could pass the entry's cursor first.
pub async fn write_stamped(
    state: std::sync::Arc<dyn crate::ports::StateStore>,
    writes: Vec<Vec<crate::ports::WriteOp>>,
    stamp: FeedStamp,
) -> crate::PortResult<()> {
    tokio::spawn(async move {
        for w in writes {
            state.write(w).await?;
        }
        drop(stamp);
        Ok(())
    })
    .await
    .map_err(|e| crate::PortError::with_cause(crate::ErrorKind::Internal, "feed write", e))?
}

/// The time a cursor was minted at (its first 13 digits).
pub fn cursor_ms(cursor: &str) -> Option<i64> {
    cursor.get(..13).and_then(|t| t.parse().ok())
}

/// Whether a reader may pass `cursor` with this process's clock and
/// `settle` for other writers.
pub fn settled(cursor: &str, horizon_ms: i64) -> bool {
    cursor_ms(cursor).is_some_and(|t| t <= horizon_ms)
}

/// Most a reader waits before looking again while an entry is held back.
pub fn recheck_after(settle: Duration) -> Duration {
    if settle.is_zero() { Duration::from_millis(20) } else { settle.min(Duration::from_millis(250)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_stays_behind_a_stamp_in_flight_and_passes_it_once_dropped() {
        let c = clock();
        let first = c.stamp();
        let second = c.stamp();
        assert!(second.ms() >= first.ms(), "stamps never go back");
        let h = c.horizon_ms(Duration::ZERO);
        assert!(h < first.ms(), "the oldest stamp in flight holds readers back");
        drop(first);
        let h2 = c.horizon_ms(Duration::ZERO);
        assert!(h2 < second.ms(), "the next one still does");
        drop(second);
        // Nothing of ours in flight: the horizon is just behind the clock,
        // and a stamp minted now sorts after it.
        let h3 = c.horizon_ms(Duration::ZERO);
        let next = c.stamp();
        assert!(next.ms() > h3, "a stamp minted after a read sorts after its horizon");
        assert!(c.horizon_ms(Duration::from_secs(60)) <= now_ms() - 60_000, "settle bounds other processes");
    }

    #[test]
    fn cursors_compare_by_their_minted_time() {
        assert_eq!(cursor_ms("1765000000123-ack"), Some(1_765_000_000_123));
        assert!(settled("1765000000123-ack", 1_765_000_000_123));
        assert!(!settled("1765000000124-ack", 1_765_000_000_123));
        assert!(!settled("garbage", i64::MAX), "an unreadable cursor is never passed");
    }
}
