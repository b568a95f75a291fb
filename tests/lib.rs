//! Shared pieces of the end-to-end tests: configs around testkit stubs.

/// A config with services `users`, `orders` and `catalog` at the given endpoints, and `routes` appended.
pub fn config(users: &str, orders: &str, catalog: &str, routes: &str) -> String {
    format!(
        r#"
[bff]
name = "e2e-bff"

[edge]
request_timeout = "5s"

[services.users]
endpoints = ["{users}"]
timeout = "2s"

[services.orders]
endpoints = ["{orders}"]
timeout = "300ms"

[services.catalog]
endpoints = ["{catalog}"]
timeout = "2s"

{routes}
"#
    )
}

/// `bff_discovery_failures_total` of `service` in the BFF's `/metrics`.
pub async fn discovery_failures(bff: &bff_testkit::TestBff, service: &str) -> u64 {
    let text = bff.admin_text("/metrics").await;
    let prefix = format!("bff_discovery_failures_total{{service=\"{service}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}
