use crate::Stub;
use bff::config::{Config, Loader, Source};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

/// One [`Stub`] for every service of a config file, and that config with each service on its stub: a
/// project's tests start its own `bff.toml` this way, so a service added there is stubbed without
/// touching them.
///
/// ```no_run
/// # async fn t() {
/// let services = bff_testkit::Stubs::start("bff.toml").await;
/// services["users"].on("/users/42").json(serde_json::json!({"name": "Ada"}));
/// let bff = bff_testkit::TestBff::start_app(bff::App::new(services.config()).unwrap()).await;
/// # }
/// ```
pub struct Stubs {
    path: PathBuf,
    stubs: BTreeMap<String, Stub>,
}

impl Stubs {
    /// Starts a stub for every `[services.NAME]` of the config file at `path` (read as it is, with no
    /// variable needed). Panics with the file's errors when it cannot be read.
    pub async fn start(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let source = Source::file(&path).unwrap_or_else(|e| panic!("{e}"));
        let raw = Loader::new()
            .with_env(HashMap::new())
            .raw(&source)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stubs = BTreeMap::new();
        for name in raw["services"]
            .as_object()
            .into_iter()
            .flat_map(|s| s.keys())
        {
            stubs.insert(name.clone(), Stub::start().await);
        }
        Self { path, stubs }
    }

    /// The stub of service `name`; panics naming the services there are.
    pub fn service(&self, name: &str) -> &Stub {
        self.stubs.get(name).unwrap_or_else(|| {
            panic!(
                "{}: no service {name:?} (services: {:?})",
                self.path.display(),
                self.stubs.keys().collect::<Vec<_>>()
            )
        })
    }

    /// The names of the services, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stubs.keys().map(String::as_str)
    }

    /// Requests the stubs received, all services together.
    pub fn calls(&self) -> usize {
        self.stubs.values().map(|s| s.requests().len()).sum()
    }

    /// The config file with no environment: see [`Stubs::config_with_env`].
    pub fn config(&self) -> Config {
        self.config_with_env(HashMap::new())
    }

    /// The config file loaded with `env` as its whole environment (for its `${VAR}`s and `BFF__...`
    /// overrides), and then, whatever the file says: every service's `endpoints` on its stub (its
    /// `discovery` dropped, the `${VAR}`s of both never read; its `tls` dropped, as a stub speaks plain
    /// HTTP), the listeners on `127.0.0.1:0`, the access log off. Each health-checked service's stub
    /// answers its probe path with 200, unrecorded, unless the test programmed that path. Panics with every
    /// config error when the config is refused.
    pub fn config_with_env(&self, env: HashMap<String, String>) -> Config {
        let mut loader = Loader::new()
            .with_env(env)
            .with_value(&["bff", "listen"], "127.0.0.1:0".into())
            .with_value(&["bff", "admin_listen"], "127.0.0.1:0".into())
            .with_value(&["telemetry", "access_log"], false.into());
        for (name, stub) in &self.stubs {
            loader = loader
                .with_value(&["services", name, "endpoints"], json!([stub.endpoint()]))
                .with_value(&["services", name, "discovery"], Value::Null)
                .with_value(&["services", name, "tls"], Value::Null);
        }
        let config = loader
            .load_file(&self.path)
            .unwrap_or_else(|e| panic!("{e}"));
        for (name, service) in &config.services {
            if let (Some(check), Some(stub)) = (&service.health_check, self.stubs.get(name))
                && !stub.programmed(&check.path)
            {
                stub.on(&check.path)
                    .json(json!({"status": "ok"}))
                    .unrecorded();
            }
        }
        // A config to adjust (tests trust their own keys) and then validate again: `Config::validate`.
        config.into_config()
    }
}

impl std::ops::Index<&str> for Stubs {
    type Output = Stub;

    fn index(&self, name: &str) -> &Stub {
        self.service(name)
    }
}
