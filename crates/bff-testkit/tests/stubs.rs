//! `Stubs`: a project's own config file started with every service on a stub, whatever services it
//! names and however it addresses them.

use bff_testkit::{Stubs, TestBff};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[bff]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"

[services.catalog]
discovery = "dns://catalog.default.svc.cluster.local:8080"

[services.reviews]
endpoints = ["${REVIEWS_ADDR}"]

[services.reviews.tls]
ca = "no-such-ca.pem"

[services.reviews.health_check]
path = "/ping"
interval = "50ms"
timeout = "50ms"

[[routes]]
path = "/product/{id}"

[[routes.backends]]
name = "product"
service = "catalog"
path = "/products/{id}"

[[routes.backends]]
name = "reviews"
service = "reviews"
path = "/reviews/{id}"
required = false
"#;

#[tokio::test]
async fn every_service_of_the_file_is_on_its_stub_with_no_variable_set() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stubs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bff.toml");
    std::fs::write(&file, CONFIG).unwrap();

    let services = Stubs::start(&file).await;
    assert_eq!(services.names().collect::<Vec<_>>(), ["catalog", "reviews"]);
    services["catalog"]
        .on("/products/7")
        .json(json!({"sku": "b-7"}));
    services["reviews"].on("/reviews/7").json(json!([5, 4]));
    let config = services.config();
    let bff = TestBff::start_app(bff::App::new(config).unwrap()).await;

    let res = bff.get("/product/7").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"product": {"sku": "b-7"}, "reviews": [5, 4]})
    );
    // The reviews' probe is answered (the BFF turns ready) and never counted as a call.
    let ready = bff.admin_url("/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bff.client().get(&ready).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(services.calls(), 2);
    assert_eq!(services["reviews"].requests()[0].uri, "/reviews/7");
    let _ = std::fs::remove_dir_all(&dir);
}
