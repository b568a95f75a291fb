//! Run with: `cargo run --example dev`
//!
//! The BFF in front of stub services (users, orders and catalog of `bff_testkit::demo`, on free loopback
//! ports): the quickest way to see it answer before your own services are reachable. It reads `bff.toml`
//! like the binary, with `USERS_ADDR`, `ORDERS_ADDR` and `CATALOG_ADDR` pointing at the stubs; other
//! variables still apply (e.g. `BFF__BFF__LISTEN=127.0.0.1:8090` when port 8080 is taken).

use std::{collections::HashMap, process::ExitCode};

#[tokio::main]
async fn main() -> ExitCode {
    bff::init_tracing();
    let stubs = bff_testkit::demo::start().await;
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.insert("USERS_ADDR".into(), stubs.users.to_string());
    env.insert("ORDERS_ADDR".into(), stubs.orders.to_string());
    env.insert("CATALOG_ADDR".into(), stubs.catalog.to_string());
    let server = match start(env).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{}", e.to_string().trim_end());
            return ExitCode::FAILURE;
        }
    };
    let (addr, admin) = (server.local_addr(), server.admin_addr());
    println!(
        "golden-minimal on http://{addr} (admin http://{admin}), in front of stub services\n\
         \n\
         Try:\n  \
         curl -s http://{addr}/api/hello/42\n  \
         curl -s http://{admin}/readyz\n\
         \n\
         Ctrl-C stops it."
    );
    server.run_until_signal().await;
    ExitCode::SUCCESS
}

async fn start(env: HashMap<String, String>) -> Result<bff::Server, bff::StartError> {
    let config = bff::config::Loader::new()
        .with_env(env)
        .load_file(bff::config_path_from_args())?;
    golden_minimal::app(config)?.bind().await
}
