//! `bff::runtime()` in a process of its own, on the CPUs `taskset` gives it: the current-thread runtime
//! on one CPU, the multi-thread one when `TOKIO_WORKER_THREADS` is set or there are more CPUs.

use bff_testkit::process::OutputWithin;
use std::{process::Command, time::Duration};

/// Prints the flavor of `bff::runtime()`'s runtime, from a task it ran. The test below runs it in
/// processes of its own; run alone, it checks that the runtime runs tasks.
#[test]
fn print_the_runtime_flavor() {
    let flavor = bff::runtime().block_on(async {
        tokio::spawn(async { tokio::runtime::Handle::current().runtime_flavor() })
            .await
            .expect("a task")
    });
    println!("flavor={flavor:?}");
}

/// This test binary's `print_the_runtime_flavor`, under `taskset -c CPUS`, with `env`.
fn flavor_on(cpus: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("taskset")
        .args(["-c", cpus])
        .arg(exe)
        .args(["--exact", "print_the_runtime_flavor", "--nocapture"])
        .env_remove("TOKIO_WORKER_THREADS")
        .envs(env.iter().copied())
        .output_within(Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split("flavor=").nth(1))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no flavor printed: {stdout}"))
        .to_owned()
}

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status: `0-3,6`), in order.
fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(from.parse::<u32>().unwrap()..=to.parse::<u32>().unwrap());
    }
    cpus
}

#[test]
fn one_cpu_gets_the_current_thread_runtime_unless_workers_are_set() {
    let cpus = allowed_cpus();
    let one = cpus[0].to_string();
    assert_eq!(flavor_on(&one, &[]), "CurrentThread");
    assert_eq!(
        flavor_on(&one, &[("TOKIO_WORKER_THREADS", "1")]),
        "MultiThread"
    );
    if let [a, b, ..] = cpus[..] {
        assert_eq!(flavor_on(&format!("{a},{b}"), &[]), "MultiThread");
    }
}
