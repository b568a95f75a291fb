//! Run with: `cargo run -p mobile-bff -- --config examples/mobile-bff/bff.toml` (with `USERS_ADDR`,
//! `ORDERS_ADDR` and `CATALOG_ADDR` set, e.g. to the demo services that `bff demo` prints).

use std::process::ExitCode;

fn main() -> ExitCode {
    bff::init_tracing();
    let app = bff::config::Loader::new()
        .load_file(bff::config_path_from_args())
        .map_err(bff::StartError::from)
        .and_then(mobile_bff::app);
    match app {
        Ok(app) => match bff::runtime().block_on(app.serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e),
    }
}

/// Every config error with its file, line and key, as `bff check` prints them.
fn fail(e: &bff::StartError) -> ExitCode {
    eprintln!("{}", e.to_string().trim_end());
    ExitCode::FAILURE
}
