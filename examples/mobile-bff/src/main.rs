//! Run with: `cargo run -p mobile-bff -- --config examples/mobile-bff/bff.toml` (with `USERS_ADDR`,
//! `ORDERS_ADDR` and `CATALOG_ADDR` set, e.g. to the demo services that `bff demo` prints).

use std::process::ExitCode;

fn main() -> ExitCode {
    bff::init_tracing();
    // The app is built inside the runtime: what it starts at once (a Redis store's first connection)
    // needs one.
    let served = bff::runtime().block_on(async {
        let config = bff::config::Loader::new().load_file(bff::config_path_from_args())?;
        mobile_bff::app(config)?.serve().await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Every config error with its file, line and key, as `bff check` prints them.
fn fail(e: &bff::StartError) -> ExitCode {
    eprintln!("{}", e.to_string().trim_end());
    ExitCode::FAILURE
}
