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
