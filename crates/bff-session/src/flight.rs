//! One flight a key: the first caller starts the work (a task of its own, so that no caller going away
//! cancels it halfway, e.g. after the provider rotated a refresh token and before the store has the new
//! one); callers arriving while it runs wait for the same outcome.

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

type Flight<T> = Shared<BoxFuture<'static, Option<T>>>;

/// Flights by key.
pub(crate) struct Flights<T: Clone + Send + Sync + 'static> {
    map: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// The outcome of the flight of `key`: joined when one is in the air, else started with `work`.
    /// `None` when the work panicked.
    pub(crate) async fn run<F>(&self, key: &str, work: impl FnOnce() -> F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let flight = {
            let Ok(mut map) = self.map.lock() else {
                return None;
            };
            match map.get(key) {
                Some(f) => f.clone(),
                None => {
                    let fut = work();
                    let done = self.map.clone();
                    let k = key.to_string();
                    let task = tokio::spawn(async move {
                        let out = fut.await;
                        if let Ok(mut map) = done.lock() {
                            map.remove(&k);
                        }
                        out
                    });
                    let flight = async move { task.await.ok() }.boxed().shared();
                    map.insert(key.to_string(), flight.clone());
                    flight
                }
            }
        };
        flight.await
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
}
