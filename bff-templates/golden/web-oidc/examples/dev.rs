//! Run with: `cargo run --example dev`, then open http://127.0.0.1:8080/ and sign in with any name.
//!
//! The BFF in front of stub services (orders and catalog of `bff_testkit::demo`, on free loopback ports)
//! and a local OpenID Provider (the framework's test OP, `bff_testkit::oidc`: the npm package
//! oidc-provider, so Node.js is needed; its login page takes any name and password): the quickest way to
//! try the whole sign-in before your own provider and services are reachable. It reads `bff.toml` like the
//! binary, with the provider, the client, `ORDERS_ADDR` and `CATALOG_ADDR` set to the local ones; other
//! variables still apply (e.g. `BFF__BFF__LISTEN=127.0.0.1:8090 PUBLIC_URL=http://127.0.0.1:8090` when
//! port 8080 is taken).

use std::{collections::HashMap, process::ExitCode};

#[tokio::main]
async fn main() -> ExitCode {
    bff::init_tracing();
    let stubs = bff_testkit::demo::start().await;
    let op = bff_testkit::oidc::Provider::start().await;
    let mut env: HashMap<String, String> = std::env::vars().collect();
    let public_url = env
        .get("PUBLIC_URL")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let client = op.register_bff(&[&public_url]).await;
    env.insert("OIDC_ISSUER".into(), op.issuer().into());
    env.insert("OIDC_CLIENT_ID".into(), client.id);
    env.insert("OIDC_CLIENT_SECRET".into(), client.secret);
    env.insert("PUBLIC_URL".into(), public_url.clone());
    env.insert("ORDERS_ADDR".into(), stubs.orders.to_string());
    env.insert("CATALOG_ADDR".into(), stubs.catalog.to_string());
    let server = match start(env).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{}", e.to_string().trim_end());
            return ExitCode::FAILURE;
        }
    };
    let admin = server.admin_addr();
    println!(
        "golden-web-oidc on {public_url} (admin http://{admin}), in front of stub services and a local \
         OpenID Provider ({issuer})\n\
         \n\
         Open {public_url}/ and sign in with any name and password.\n\
         \n\
         Ctrl-C stops it.",
        issuer = op.issuer(),
    );
    server.run_until_signal().await;
    ExitCode::SUCCESS
}

async fn start(env: HashMap<String, String>) -> Result<bff::Server, bff::StartError> {
    let config = bff::config::Loader::new()
        .with_env(env)
        .load_file(bff::config_path_from_args())?;
    golden_web_oidc::app(config)?.bind().await
}
