//! One flight a key: the first caller starts the work (a task of its own, so that no caller going away
//! cancels it halfway, e.g. after the provider rotated a refresh token and before the store has the new
//! one); callers arriving while it runs wait for the same outcome.
//!
//! The outcome is handed over on a `watch` channel, which every waiter reads for itself: no waiter depends
//! on another being polled again (`futures`' `Shared` can lose a wake-up when a caller that was polling it
//! goes away, rust-lang/futures-rs#2706).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::sync::watch;

/// The outcome of a flight: `None` while it runs.
type Landing<T> = watch::Receiver<Option<T>>;

/// Flights by key.
pub(crate) struct Flights<T: Clone + Send + Sync + 'static> {
    map: Arc<Mutex<HashMap<String, Landing<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
        }
    }
}

/// Frees a flight's key when its task ends, whether the work returned or panicked.
struct Takeoff<T> {
    map: Arc<Mutex<HashMap<String, Landing<T>>>>,
    key: String,
}

impl<T> Drop for Takeoff<T> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// The outcome of the flight of `key`: joined when one is in the air, else started with `work`.
    /// `None` when the work panicked.
    pub(crate) async fn run<F>(&self, key: &str, work: impl FnOnce() -> F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (mut landing, start) = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(key) {
                Some(landing) => (landing.clone(), None),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.to_string(), rx.clone());
                    (rx, Some(tx))
                }
            }
        };
        // Spawned with the map unlocked: a runtime shutting down drops the task (its `Takeoff`, which
        // locks the map) on this thread at once.
        if let Some(tx) = start {
            let takeoff = Takeoff {
                map: self.map.clone(),
                key: key.to_string(),
            };
            let fut = work();
            tokio::spawn(async move {
                let out = fut.await;
                tx.send_replace(Some(out));
                // The key is freed after the outcome is out: a caller in between joins a landed flight
                // and gets its outcome at once.
                drop(takeoff);
            });
        }
        // Without an outcome the sender is gone: the work panicked.
        let landed = landing.wait_for(Option::is_some).await.ok()?;
        landed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    /// 20 concurrent callers of one key: one piece of work, every caller gets its outcome; a caller after
    /// it landed starts another; another key flies on its own.
    #[tokio::test(start_paused = true)]
    async fn one_flight_a_key_shared_by_concurrent_callers() {
        let flights = Arc::new(Flights::<usize>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let call = |flights: Arc<Flights<usize>>, calls: Arc<AtomicUsize>, key: &'static str| async move {
            flights
                .run(key, || {
                    let calls = calls.clone();
                    async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        n
                    }
                })
                .await
        };
        let all: Vec<_> = (0..20)
            .map(|_| tokio::spawn(call(flights.clone(), calls.clone(), "s1")))
            .collect();
        for t in all {
            assert_eq!(t.await.unwrap(), Some(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(call(flights.clone(), calls.clone(), "s1").await, Some(2));
        assert_eq!(call(flights.clone(), calls.clone(), "s2").await, Some(3));
        assert!(flights.map.lock().unwrap().is_empty());
    }

    /// The first caller going away does not cancel the work: the others get its outcome.
    #[tokio::test(start_paused = true)]
    async fn a_caller_going_away_leaves_the_work_to_the_others() {
        let flights = Arc::new(Flights::<u32>::default());
        let first = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        7
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let second = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run("k", || async { 8 }).await })
        };
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.unwrap(), Some(7));
    }

    /// Work that panics lands as `None` for every caller, and the next caller of the key starts new work
    /// (the key does not stay taken by the failed flight).
    #[tokio::test(start_paused = true)]
    async fn a_panicking_flight_gives_none_and_frees_its_key() {
        let flights = Arc::new(Flights::<u32>::default());
        let failing = |flights: Arc<Flights<u32>>| async move {
            flights
                .run("k", || async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    panic!("the work failed");
                })
                .await
        };
        let (a, b) = tokio::join!(failing(flights.clone()), failing(flights.clone()));
        assert_eq!((a, b), (None, None));
        assert_eq!(flights.run("k", || async { 9 }).await, Some(9));
        assert!(flights.map.lock().unwrap().is_empty());
    }
}
