//! Run with: `cargo run --example dev`
//!
//! The BFF in front of stub services (users, orders and catalog of `bff_testkit::demo`, on free loopback
//! ports): the quickest way to see it answer before your own services are reachable. It reads `bff.toml`
//! like the binary, with `USERS_ADDR`, `ORDERS_ADDR` and `CATALOG_ADDR` pointing at the stubs; other
//! variables still apply (e.g. `BFF__BFF__LISTEN=127.0.0.1:8090` when port 8080 is taken). It trusts the
//! dev API key of tests/keys/, the one the printed commands send.

use std::{collections::HashMap, process::ExitCode};

/// The body of a batch of three cards, for the printed curl command.
const CARDS: &str = r#"{"ids": ["1", "2", "3"]}"#;

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
        "golden-mobile on http://{addr} (admin http://{admin}), in front of stub services\n\
         \n\
         Try:\n  \
         curl -s -H 'x-api-key: mobile-dev-key' http://{addr}/m/home/42\n  \
         curl -s -H 'x-api-key: mobile-dev-key' -H 'content-type: application/json' -d '{CARDS}' http://{addr}/m/cards\n  \
         curl -s http://{admin}/readyz\n\
         \n\
         Ctrl-C stops it."
    );
    server.run_until_signal().await;
    ExitCode::SUCCESS
}

async fn start(env: HashMap<String, String>) -> Result<bff::Server, bff::StartError> {
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(bff::config_path_from_args())?
        .into_config();
    // Trust the dev key of the printed commands, whatever bff.toml trusts in production.
    if let Some(keys) = config.edge.auth.api_keys.as_mut() {
        keys.keys_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/dev-api-keys.txt").into();
    }
    golden_mobile::app(config.validate()?)?.bind().await
}
