//! Run with: `cargo run --example dev`
//!
//! The BFF in front of stub services (users, orders and catalog of `bff_testkit::demo`, on free loopback
//! ports): the quickest way to see it answer before your own services are reachable. It reads `bff.toml`
//! like the binary, with `USERS_ADDR`, `ORDERS_ADDR` and `CATALOG_ADDR` pointing at the stubs; other
//! variables still apply (e.g. `BFF__BFF__LISTEN=127.0.0.1:8090` when port 8080 is taken). It trusts the
//! dev key of tests/keys/ and prints a token signed with it (user 42), for the routes that need one.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::{
    collections::HashMap,
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

/// The dev identity: the key of tests/keys/, trusted here in place of what `[edge.auth.jwt]` trusts.
const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "golden-web";

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
        "golden-web on http://{addr} (admin http://{admin}), in front of stub services\n\
         \n\
         Try:\n  \
         TOKEN={token}\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" http://{addr}/api/home\n  \
         curl -s http://{addr}/api/catalog/books\n  \
         curl -s http://{admin}/readyz\n\
         \n\
         Ctrl-C stops it.",
        token = dev_token("42")
    );
    server.run_until_signal().await;
    ExitCode::SUCCESS
}

async fn start(env: HashMap<String, String>) -> Result<bff::Server, bff::StartError> {
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(bff::config_path_from_args())?
        .into_config();
    // Trust the dev identity of the printed token, whatever bff.toml trusts in production.
    if let Some(jwt) = config.edge.auth.jwt.as_mut() {
        jwt.issuer = Some(ISSUER.into());
        jwt.audiences = vec![AUDIENCE.into()];
        jwt.jwks_file =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/dev-jwks.json").into());
        jwt.jwks_url = None;
    }
    golden_web::app(config.validate()?)?.bind().await
}

/// A token of user `sub` from the dev identity, valid for an hour.
fn dev_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bff-dev-1".into());
    let key = EncodingKey::from_rsa_pem(include_bytes!("../tests/keys/dev-private.pem"))
        .expect("the dev key of tests/keys");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign the dev token")
}
