//! The BFF against stub services: the trimmed home card, the batch of cards, what they ask the services
//! for, and what the gateway in front of them lets through (API keys, rate limits). Requests carry the dev
//! API key of tests/keys/; the BFF under test trusts that key whatever bff.toml trusts.

use bff_testkit::{Rendezvous, Stubs, TestBff};
use serde_json::{Value, json};

const BFF_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml");

const API_KEY: &str = "mobile-dev-key";

fn user(id: &str, name: &str) -> Value {
    json!({
        "id": id,
        "profile": {
            "name": name,
            "email": "someone@example.com",
            "avatar": {"small": format!("https://cdn.example.com/{id}-64.png"), "large": format!("https://cdn.example.com/{id}-512.png")},
            "favoriteCategory": "music"
        },
        "createdAt": "2024-03-01T10:00:00Z"
    })
}

/// The BFF from its own `bff.toml`: every service (whatever services it has) on a stub of `services`,
/// the listeners on free ports.
async fn start(services: &Stubs) -> TestBff {
    let mut config = services.config();
    // Trust the tests' dev key, whatever bff.toml trusts in production.
    if let Some(keys) = config.edge.auth.api_keys.as_mut() {
        keys.keys_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/dev-api-keys.txt").into();
    }
    let config = config.validate().unwrap_or_else(|e| panic!("{e}"));
    TestBff::start_app(golden_mobile::app(config).unwrap()).await
}

async fn get(bff: &TestBff, path: &str) -> reqwest::Response {
    bff.client()
        .get(bff.url(path))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
}

async fn post(bff: &TestBff, path: &str, body: Value) -> reqwest::Response {
    bff.client()
        .post(bff.url(path))
        .header("x-api-key", API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_home_card_holds_only_what_the_screen_shows() {
    let services = Stubs::start(BFF_TOML).await;
    services["users"]
        .on("/users/42")
        .json(user("42", "Ada Lovelace"));
    services["orders"].on("/orders").json(json!([
        {"id": "o-1", "status": "shipped", "total": {"amount": 1200, "currency": "EUR"}},
        {"id": "o-2", "status": "delivered", "total": {"amount": 900, "currency": "EUR"}}
    ]));
    services["catalog"]
        .on("/recommendations/music")
        .json(json!({
            "category": "music",
            "items": [{"sku": "music-1", "title": "A"}, {"sku": "music-2", "title": "B"}]
        }));
    let bff = start(&services).await;
    let res = get(&bff, "/m/home/42").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({
            "me": {"name": "Ada Lovelace", "avatar": "https://cdn.example.com/42-64.png", "category": "music"},
            "order_ids": ["o-1", "o-2"],
            "picks": ["music-1", "music-2"]
        })
    );
    assert_eq!(services["orders"].requests()[0].uri, "/orders?userId=42");
}

#[tokio::test]
async fn cards_are_fetched_concurrently_and_kept_in_order() {
    let services = Stubs::start(BFF_TOML).await;
    // Each user answers only once all three calls are in flight: a sequential batch would hang.
    let together = Rendezvous::new(3);
    for (id, name) in [("1", "Ada"), ("2", "Grace"), ("3", "Alan")] {
        services["users"]
            .on(&format!("/users/{id}"))
            .rendezvous(&together)
            .json(user(id, name));
    }
    let bff = start(&services).await;
    let res = post(&bff, "/m/cards", json!({"ids": ["3", "1", "2"]})).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-bff-partial").is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"cards": [
            {"id": "3", "name": "Alan", "avatar": "https://cdn.example.com/3-64.png"},
            {"id": "1", "name": "Ada", "avatar": "https://cdn.example.com/1-64.png"},
            {"id": "2", "name": "Grace", "avatar": "https://cdn.example.com/2-64.png"}
        ]})
    );
}

#[tokio::test]
async fn a_card_that_fails_is_null_and_the_list_is_partial() {
    let services = Stubs::start(BFF_TOML).await;
    services["users"].on("/users/1").json(user("1", "Ada"));
    services["users"].on("/users/2").status(404);
    let bff = start(&services).await;
    let res = post(&bff, "/m/cards", json!({"ids": ["1", "2"]})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-bff-partial"], "true");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["cards"][0]["name"], "Ada");
    assert_eq!(body["cards"][1], Value::Null);
    assert_eq!(
        body["_errors"],
        json!([{"backend": "users", "id": "2", "error": "upstream_status", "status": 404}])
    );
}

#[tokio::test]
async fn an_id_is_one_path_segment_downstream() {
    let services = Stubs::start(BFF_TOML).await;
    services["users"]
        .on("/users/1%3Fadmin%3Dtrue%2F..")
        .json(user("1", "Ada"));
    let bff = start(&services).await;
    let res = post(&bff, "/m/cards", json!({"ids": ["1?admin=true/.."]})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        services["users"].requests()[0].uri,
        "/users/1%3Fadmin%3Dtrue%2F..",
        "no query, no extra segment"
    );
}

#[tokio::test]
async fn oversized_or_malformed_batches_are_refused_before_any_call() {
    let services = Stubs::start(BFF_TOML).await;
    let bff = start(&services).await;
    let too_many = golden_mobile::MAX_CARDS + 1;
    let ids: Vec<String> = (0..too_many).map(|i| i.to_string()).collect();
    for body in [json!({"ids": ids}), json!({"id": "1"})] {
        let res = post(&bff, "/m/cards", body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "bad_request", "{body}");
    }
    assert!(services["users"].requests().is_empty(), "no call went out");
}

#[tokio::test]
async fn every_route_needs_an_api_key() {
    let services = Stubs::start(BFF_TOML).await;
    let bff = start(&services).await;
    for key in [None, Some("not-a-key")] {
        let mut home = bff.client().get(bff.url("/m/home/42"));
        let mut cards = bff
            .client()
            .post(bff.url("/m/cards"))
            .json(&json!({"ids": ["1"]}));
        if let Some(key) = key {
            home = home.header("x-api-key", key);
            cards = cards.header("x-api-key", key);
        }
        for req in [home, cards] {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "key {key:?}");
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], "unauthenticated");
        }
    }
    assert!(services["users"].requests().is_empty(), "no call went out");
}

#[tokio::test]
async fn an_app_key_past_its_burst_is_rate_limited() {
    let services = Stubs::start(BFF_TOML).await;
    services["users"]
        .on("/users/42")
        .json(user("42", "Ada Lovelace"));
    let bff = start(&services).await;
    // [edge.rate_limit]: bursts of 10, then 5 a second. 30 requests in a row cannot all pass, however
    // slow the machine.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let res = get(&bff, "/m/home/42").await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], "rate_limited");
        }
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}
