//! The runtime of a BFF binary.

/// The tokio runtime a BFF binary runs on, the one `bff run` uses: on one CPU (as
/// `std::thread::available_parallelism` sees it: the affinity mask as `taskset` or a cpuset sets it, a
/// cgroup quota such as a container's CPU limit of 1), the current-thread scheduler, which does the same
/// work as a one-worker multi-thread runtime without its cross-thread machinery (atomics on every wake,
/// the injection queue, the parked worker's condvar); on more, the multi-thread one with a worker a CPU.
/// `TOKIO_WORKER_THREADS` set picks the multi-thread runtime with that many workers.
///
/// # Panics
///
/// When the runtime cannot be built (the operating system refuses its threads or its I/O driver), as
/// `#[tokio::main]` does.
///
/// ```no_run
/// fn main() -> Result<(), bff::StartError> {
///     bff::init_tracing();
///     bff::runtime().block_on(async { bff::App::from_args()?.serve().await })
/// }
/// ```
pub fn runtime() -> tokio::runtime::Runtime {
    let parallelism = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let flavor = runtime_flavor(
        parallelism,
        std::env::var_os("TOKIO_WORKER_THREADS").is_some(),
    );
    let mut builder = match flavor {
        tokio::runtime::RuntimeFlavor::CurrentThread => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().expect("the tokio runtime")
}

/// [`runtime`]'s choice for `parallelism` CPUs (0: unknown), `TOKIO_WORKER_THREADS` set or not.
fn runtime_flavor(parallelism: usize, workers_set: bool) -> tokio::runtime::RuntimeFlavor {
    if parallelism == 1 && !workers_set {
        tokio::runtime::RuntimeFlavor::CurrentThread
    } else {
        tokio::runtime::RuntimeFlavor::MultiThread
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::RuntimeFlavor::{CurrentThread, MultiThread};

    #[test]
    fn one_cpu_runs_on_the_current_thread_unless_workers_are_set() {
        assert_eq!(runtime_flavor(1, false), CurrentThread);
        assert_eq!(runtime_flavor(1, true), MultiThread);
        assert_eq!(runtime_flavor(2, false), MultiThread);
        assert_eq!(runtime_flavor(0, false), MultiThread);
    }
}
