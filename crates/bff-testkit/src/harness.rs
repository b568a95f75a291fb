use bff::{
    App, Server, ShutdownHandle,
    config::{Format, Loader},
};
use std::{collections::HashMap, net::SocketAddr};
use tokio::task::JoinHandle;

/// A BFF started in-process on `127.0.0.1:0` (public and admin), stopped when dropped.
///
/// ```no_run
/// # async fn t() {
/// let users = bff_testkit::Stub::start().await;
/// let bff = bff_testkit::TestBff::start(&format!(r#"
///     [services.users]
///     endpoints = ["{}"]
///     [[routes]]
///     path = "/u/{{id}}"
///     [[routes.backends]]
///     name = "user"
///     service = "users"
///     path = "/users/{{id}}"
/// "#, users.endpoint())).await;
/// let body = bff.get("/u/1").await.text().await.unwrap();
/// # }
/// ```
pub struct TestBff {
    addr: SocketAddr,
    admin: SocketAddr,
    handle: ShutdownHandle,
    task: Option<JoinHandle<()>>,
    client: reqwest::Client,
}

impl TestBff {
    /// Starts a BFF from an inline TOML config; `bff.listen` and `bff.admin_listen` are forced to port 0, the
    /// access log is off, and the process environment is not read. Panics with every config error when the config is invalid.
    pub async fn start(toml: &str) -> Self {
        let mut config = Loader::new()
            .with_env(HashMap::new())
            .load_str(toml, Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_config();
        config.bff.listen = ([127, 0, 0, 1], 0).into();
        config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
        // Tests read responses and metrics; an access log on stdout would only be noise in their output.
        config.telemetry.access_log = false;
        Self::start_app(App::new(config).unwrap_or_else(|e| panic!("{e}"))).await
    }

    /// Starts an [`App`] (with its Rust routes) as it is configured.
    pub async fn start_app(app: App) -> Self {
        let server: Server = app.bind().await.unwrap_or_else(|e| panic!("{e}"));
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let handle = server.shutdown_handle();
        let task = tokio::spawn(server.run());
        let client = crate::http_client();
        Self {
            addr,
            admin,
            handle,
            task: Some(task),
            client,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `http://ADDR{path}` on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADMIN{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GET on the public listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request to the BFF")
    }

    /// GET on the admin listener, the body as JSON (`/admin/services`, `/admin/config`, ...).
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let res = self
            .client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("request to the admin listener");
        res.json().await.expect("a JSON body")
    }

    /// GET on the admin listener, the body as text (`/metrics`).
    pub async fn admin_text(&self, path: &str) -> String {
        let res = self
            .client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("request to the admin listener");
        res.text().await.expect("a text body")
    }

    /// Starts the drain and waits until it is over; panics when it is not within
    /// [`REQUEST_DEADLINE`](crate::REQUEST_DEADLINE).
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let ended = tokio::time::timeout(crate::REQUEST_DEADLINE, task).await;
            assert!(ended.is_ok(), "the drain did not end");
        }
    }
}

impl Drop for TestBff {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
