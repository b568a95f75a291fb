//! The mesh's retry budget against tower's `TpsBudget` (`tower::retry::budget`), which it mirrors: same
//! semantics (deposits expire after a ttl, a minimum of retries per second, a ratio), built the same way
//! (ten slots). A call deposits once; a retry or a hedge withdraws.
//!
//! Run with: `cargo bench -p bff-mesh --bench retry_budget`
//! (docs/performance.md, "Hand-written or a crate: the decisions").

use bff_mesh::__RetryBudget as Ours;
use criterion::{Criterion, criterion_group, criterion_main};
use std::{hint::black_box, time::Duration};
use tower::retry::budget::{Budget, TpsBudget};

const TTL: Duration = Duration::from_secs(10);

/// `threads` threads depositing `iters` times each at once: the time per deposit.
fn contended(iters: u64, threads: u64, deposit: &(dyn Fn() + Sync)) -> Duration {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    deposit();
                }
            });
        }
    });
    start.elapsed() / u32::try_from(threads).unwrap_or(1)
}

fn budgets(c: &mut Criterion) {
    let ours = Ours::new(TTL, 10, 0.2);
    let tower = TpsBudget::new(TTL, 10, 0.2);
    let mut g = c.benchmark_group("retry_budget");
    g.bench_function("deposit/ours", |b| b.iter(|| black_box(&ours).deposit()));
    g.bench_function("deposit/tower_tps_budget", |b| {
        b.iter(|| black_box(&tower).deposit())
    });
    g.bench_function("deposit_withdraw/ours", |b| {
        b.iter(|| {
            ours.deposit();
            black_box(ours.withdraw())
        })
    });
    g.bench_function("deposit_withdraw/tower_tps_budget", |b| {
        b.iter(|| {
            tower.deposit();
            black_box(tower.withdraw())
        })
    });
    g.bench_function("deposit_2_threads/ours", |b| {
        b.iter_custom(|n| contended(n, 2, &|| ours.deposit()))
    });
    g.bench_function("deposit_2_threads/tower_tps_budget", |b| {
        b.iter_custom(|n| contended(n, 2, &|| tower.deposit()))
    });
    g.finish();
}

criterion_group!(benches, budgets);
criterion_main!(benches);
