use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::collections::HashMap;

async fn start(users: &Stub, orders: &Stub) -> TestBff {
    let env: HashMap<String, String> = [
        ("USERS_ADDR", users.endpoint()),
        ("ORDERS_ADDR", orders.endpoint()),
        ("WEB_ORIGIN", "http://localhost:3000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap()
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    config.telemetry.access_log = false;
    TestBff::start_app(web_bff::app(config.validate().unwrap_or_else(|e| panic!("{e}"))).unwrap())
        .await
}

#[tokio::test]
async fn account_page_merges_profile_and_orders() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com", "extra": 1}}));
    orders
        .on("/orders")
        .json(json!([{"id": "o1", "status": "shipped", "total": 3}]));
    let bff = start(&users, &orders).await;
    let body: Value = bff.get("/api/account/5").await.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "Grace", "email": "g@example.com", "orders": [{"id": "o1", "status": "shipped"}]})
    );
    assert_eq!(orders.requests()[0].uri, "/orders?userId=5");
}

#[tokio::test]
async fn orders_failing_degrades_the_page() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com"}}));
    orders.on("/orders").reset();
    let bff = start(&users, &orders).await;
    let res = bff.get("/api/account/5").await;
    assert_eq!(res.headers()["x-bff-partial"], "true");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["orders"], Value::Null);
    assert_eq!(
        body["_errors"],
        json!([{"backend": "orders", "error": "reset"}])
    );
}

#[tokio::test]
async fn the_id_is_one_segment_of_the_downstream_path() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/1%3Fadmin%3Dtrue")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com"}}));
    orders.on("/orders").json(json!([]));
    let bff = start(&users, &orders).await;
    let res = bff.get("/api/account/1%3Fadmin=true").await;
    assert_eq!(res.status(), 200);
    assert_eq!(users.requests()[0].uri, "/users/1%3Fadmin%3Dtrue");
}

#[tokio::test]
async fn users_failing_is_a_json_error() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/5").status(404);
    let bff = start(&users, &orders).await;
    let res = bff.get("/api/account/5").await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_failed"
    );
}

/// The way `main.rs` builds the BFF (a config from the loader, then `app`) keeps the file and the
/// loader's environment: a reload loads the changed file, `${VAR}` expanded as at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_built_from_a_loaded_file_reloads_it() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com"}}));
    orders
        .on("/orders")
        .json(json!([{"id": "o1", "status": "new"}]));
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-bff-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bff.toml");
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0");
    std::fs::write(&path, &original).unwrap();
    let env: HashMap<String, String> = [
        ("USERS_ADDR", users.endpoint()),
        ("ORDERS_ADDR", orders.endpoint()),
        ("WEB_ORIGIN", "http://localhost:3000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = bff::config::Loader::new()
        .with_env(env)
        .load_file(&path)
        .unwrap();
    let bff = TestBff::start_app(web_bff::app(config).unwrap()).await;
    assert_eq!(bff.get("/api/orders/5").await.status(), 404);

    let route = r#"
[[routes]]
path = "/api/orders/{id}"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders?userId={id}"
select = "$[*].id"
"#;
    std::fs::write(&path, format!("{original}{route}")).unwrap();
    let res = bff
        .client()
        .post(bff.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"status": "applied", "version": 2})
    );
    let body: Value = bff.get("/api/orders/5").await.json().await.unwrap();
    assert_eq!(body, json!({"orders": ["o1"]}), "the new route serves");
    let account = bff.get("/api/account/5").await;
    assert_eq!(account.status(), 200, "the Rust route is kept");
}

#[tokio::test]
async fn an_app_built_from_a_text_says_why_it_cannot_reload() {
    let users = Stub::start().await;
    let config = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(
            &format!(
                "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 [services.users]\nendpoints = [\"{}\"]\n[services.orders]\nendpoints = [\"{}\"]\n",
                users.endpoint(),
                users.endpoint()
            ),
            bff::config::Format::Toml,
        )
        .unwrap();
    let bff = TestBff::start_app(web_bff::app(config).unwrap()).await;
    let res = bff
        .client()
        .post(bff.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_reloadable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in-memory config"),
        "{body}"
    );
}
