//! Run with: `USERS_ADDR=... ORDERS_ADDR=... CATALOG_ADDR=... cargo run` (host:port of each service; the
//! config is `--config FILE`, else `$BFF_CONFIG`, else `./bff.toml`), or `cargo run --example dev` in
//! front of stub services.

use std::process::ExitCode;

fn main() -> ExitCode {
    bff::init_tracing();
    // On one CPU (a container's limit of 1) the current-thread runtime, else one worker a CPU.
    match bff::runtime().block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every config error with its file, line and key.
            eprintln!("{}", e.to_string().trim_end());
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), bff::StartError> {
    let config = bff::config::Loader::new().load_file(bff::config_path_from_args())?;
    {{crate_name}}::app(config)?.serve().await
}
