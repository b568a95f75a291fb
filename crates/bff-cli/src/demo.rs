//! `bff demo`: the demo services, a web BFF and a mobile BFF in front of them, in this process.

use bff::{
    App,
    config::{Format, Loader},
};
use std::{collections::HashMap, process::ExitCode};

pub(crate) struct Addrs {
    pub(crate) web_listen: String,
    pub(crate) web_admin: String,
    pub(crate) mobile_listen: String,
    pub(crate) mobile_admin: String,
}

const WEB: &str = include_str!("../demo/web.toml");
const MOBILE: &str = include_str!("../demo/mobile.toml");

/// The `response_schema` of the demo's backends, by backend name: embedded, as the configs are, so that
/// `bff demo` runs from anywhere (a config on disk names its files: `response_schema = "schemas/x.json"`).
/// Its documents (`GET /admin/openapi.json`) and clients (`bff client --openapi`) are typed by them.
const SCHEMAS: [(&str, &str); 6] = [
    ("user", include_str!("../demo/schemas/profile.json")),
    ("orders", include_str!("../demo/schemas/orders.json")),
    (
        "recommendations",
        include_str!("../demo/schemas/recommendations.json"),
    ),
    ("me", include_str!("../demo/schemas/card.json")),
    ("order_ids", include_str!("../demo/schemas/ids.json")),
    ("picks", include_str!("../demo/schemas/ids.json")),
];

/// The demo's configs with their backends' response schemas.
pub(crate) fn with_schemas(config: &mut bff::config::Config) {
    for b in config.routes.iter_mut().flat_map(|r| r.backends.iter_mut()) {
        if let Some((_, text)) = SCHEMAS.iter().find(|(name, _)| *name == b.name) {
            let schema = serde_json::from_str(text).expect("the demo's schemas are JSON");
            b.response_schema = Some(bff::config::ResponseSchema::value(schema));
        }
    }
}

pub(crate) async fn run(addrs: Addrs) -> ExitCode {
    let services = bff_testkit::demo::start().await;
    let env: HashMap<String, String> = [
        ("DEMO_USERS", services.users),
        ("DEMO_ORDERS", services.orders),
        ("DEMO_CATALOG", services.catalog),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let start = |text: &str, listen: &str, admin: &str| {
        let env = env.clone();
        let (text, listen, admin) = (text.to_string(), listen.to_string(), admin.to_string());
        async move {
            let mut config = Loader::new()
                .with_env(env)
                .load_str(&text, Format::Toml)?
                .into_config();
            let addr = |a: &str| {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|e| bff::StartError::Build {
                        what: Some(format!("{a:?} is not an address like 127.0.0.1:8080")),
                        source: Box::new(e),
                    })
            };
            with_schemas(&mut config);
            config.bff.listen = addr(&listen)?;
            config.bff.admin_listen = addr(&admin)?;
            App::new(config)?.bind().await
        }
    };
    let web = match start(WEB, &addrs.web_listen, &addrs.web_admin).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("web BFF: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mobile = match start(MOBILE, &addrs.mobile_listen, &addrs.mobile_admin).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mobile BFF: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (w, wa, m, ma) = (
        web.local_addr(),
        web.admin_addr(),
        mobile.local_addr(),
        mobile.admin_addr(),
    );
    println!(
        "bff demo: users {}, orders {}, catalog {} (demo services)\n\
         web BFF     http://{w}   admin http://{wa}\n\
         mobile BFF  http://{m}   admin http://{ma}\n\
         \n\
         Try:\n\
         curl -s http://{w}/api/home/42\n\
         curl -s http://{m}/m/home/42\n\
         curl -s http://{wa}/admin/services\n\
         curl -s http://{wa}/readyz\n\
         \n\
         Ctrl-C stops all.",
        services.users, services.orders, services.catalog
    );
    let (wh, mh) = (web.shutdown_handle(), mobile.shutdown_handle());
    let signal = tokio::spawn(async move {
        wait_for_signal().await;
        wh.shutdown();
        mh.shutdown();
    });
    tokio::join!(web.run(), mobile.run());
    signal.abort();
    drop(services);
    println!("bff demo: stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
