//! The `bff` command: `new` makes a project, `run` serves a BFF from config alone, `check` validates a
//! config (and its backends against the services' OpenAPI documents), `record` serves as `run` does and
//! stores the downstream exchanges as fixtures, `mock` serves from them with no service running, `schema`
//! prints the config's JSON Schema, `k8s` renders its Kubernetes ConfigMap, `demo` starts the embedded
//! demo, `openapi` and `client` the frontend's contract (its OpenAPI document and a typed TypeScript
//! client). Run with: `cargo run -p bff-cli -- demo`.
#![forbid(unsafe_code)]

mod contract;
mod demo;
mod mock;
mod record;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers (headers,
/// JSON values, futures), and glibc's malloc took about 15% of the CPU of a loaded `bff run` in profiles
/// (docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod new;
mod openapi;

use bff::{
    App,
    config::{Loader, Source},
};
use clap::{Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(
    name = "bff",
    version,
    about = "Backends-for-Frontends with the gateway and the mesh in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a BFF project from a template: code, tests, bff.toml, Dockerfile, k8s manifests.
    New {
        /// The project's name: a crate name (letters, digits, '-', '_'; starting with a letter).
        name: String,
        /// web (JWT, CORS, a page aggregation), mobile (API keys, trimmed payloads, rate limits, batch) or minimal.
        #[arg(long, default_value = "web")]
        template: String,
        /// oidc: browser sessions (the OAuth 2.0 BFF pattern: sign-in at an OpenID Provider, tokens kept
        /// server-side, an HttpOnly cookie, CSRF header) and a page that uses them; web template only.
        #[arg(long, value_name = "oidc")]
        auth: Option<String>,
        /// The folder to create the project in (as DIR/NAME); default: the current folder.
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// A checkout of this framework for the project's path dependencies; default: the one bff was built from.
        #[arg(long, value_name = "PATH")]
        framework_path: Option<PathBuf>,
    },
    /// Serve a BFF from configuration alone (declarative routes, no Rust code).
    Run {
        /// Config file (.toml, .yaml/.yml or .json); default $BFF_CONFIG, then ./bff.toml.
        #[arg(long, env = "BFF_CONFIG", default_value = "bff.toml")]
        config: PathBuf,
        /// KEY=VALUE lines read on top of the environment (for `${VAR}` and `BFF__...` overrides).
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
    },
    /// Validate a config: exit 0, or print every error with file, line and key and exit 1.
    Check {
        /// Config file (.toml, .yaml/.yml or .json); default $BFF_CONFIG, then ./bff.toml.
        #[arg(long, env = "BFF_CONFIG", default_value = "bff.toml")]
        config: PathBuf,
        /// KEY=VALUE lines read on top of the environment (for `${VAR}` and `BFF__...` overrides).
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
    },
    /// Serve as `run` does, and store each downstream exchange (credentials redacted) as fixtures, with
    /// a JSON Schema inferred per declarative backend.
    Record(record::Args),
    /// Serve the routes with no service running: each downstream call is answered from fixtures (as
    /// `record` stores them) or from an example of the backend's schema.
    Mock(mock::Args),
    /// Print the OpenAPI 3.1 document (JSON) of the config's public routes.
    Openapi(openapi::OpenapiArgs),
    /// Write a typed TypeScript client (DIR/client.ts, no dependency) of the config's public routes.
    Client(openapi::ClientArgs),
    /// Print the JSON Schema of bff.toml (for editors: `#:schema bff.schema.json` at the top of the file).
    Schema,
    /// Kubernetes: render k8s/configmap.yaml from bff.toml and k8s/cluster.toml, or say where it drifted.
    K8s {
        #[command(subcommand)]
        action: K8sAction,
    },
    /// Start demo services, a web BFF and a mobile BFF on loopback, and print curl commands to try.
    Demo {
        /// Public address of the web BFF.
        #[arg(long, default_value = "127.0.0.1:8080")]
        web_listen: String,
        /// Admin address of the web BFF.
        #[arg(long, default_value = "127.0.0.1:9901")]
        web_admin: String,
        /// Public address of the mobile BFF.
        #[arg(long, default_value = "127.0.0.1:8081")]
        mobile_listen: String,
        /// Admin address of the mobile BFF.
        #[arg(long, default_value = "127.0.0.1:9902")]
        mobile_admin: String,
    },
}

#[derive(Subcommand)]
enum K8sAction {
    /// Write the ConfigMap: bff.toml with the cluster file's keys over it, and the files it reads.
    Render {
        #[command(flatten)]
        files: K8sFiles,
    },
    /// Print each key where the ConfigMap differs from its rendering, one a line; exit 1 if any.
    Diff {
        #[command(flatten)]
        files: K8sFiles,
    },
}

#[derive(clap::Args)]
struct K8sFiles {
    /// The project's config.
    #[arg(long, default_value = "bff.toml")]
    config: PathBuf,
    /// The cluster's differences from it.
    #[arg(long, default_value = "k8s/cluster.toml")]
    cluster: PathBuf,
    /// The ConfigMap.
    #[arg(long, default_value = "k8s/configmap.yaml")]
    out: PathBuf,
}

impl K8sFiles {
    fn project(self) -> bff_testkit::k8s::Project {
        bff_testkit::k8s::Project {
            dir: PathBuf::from("."),
            config: self.config,
            cluster: self.cluster,
            configmap: self.out,
        }
    }
}

fn k8s(action: K8sAction) -> ExitCode {
    let refused = |errors: Vec<String>| {
        for e in errors {
            eprintln!("bff k8s: {e}");
        }
        ExitCode::FAILURE
    };
    match action {
        K8sAction::Render { files } => {
            let project = files.project();
            let text = match project.render() {
                Ok(text) => text,
                Err(errors) => return refused(errors),
            };
            let out = project.dir.join(&project.configmap);
            if let Err(e) = std::fs::write(&out, text) {
                return refused(vec![format!("{}: cannot write it: {e}", out.display())]);
            }
            println!("bff k8s: wrote {}", project.configmap.display());
            ExitCode::SUCCESS
        }
        K8sAction::Diff { files } => match files.project().diff() {
            Ok(lines) if lines.is_empty() => ExitCode::SUCCESS,
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::FAILURE
            }
            Err(errors) => refused(errors),
        },
    }
}

/// Loads, validates and builds: the one path `check` and `run` share, so they report the same errors.
fn load(path: &PathBuf, env_file: Option<&PathBuf>) -> Result<App, bff::StartError> {
    let source = Source::file(path)?;
    let mut loader = Loader::new();
    if let Some(file) = env_file {
        loader = loader.with_env(bff::config::env_with_file(file)?);
    }
    let config = loader.load(&source)?;
    let app = App::new(config)?;
    Ok(app)
}

/// The config's JSON Schema as `bff schema` prints it and `bff new` writes it (docs/config.schema.json).
pub(crate) fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&bff_config::config_schema())
        .expect("a JSON value serializes");
    text.push('\n');
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bff::init_tracing();
    match cli.command {
        Command::New {
            name,
            template,
            auth,
            path,
            framework_path,
        } => new::run(&new::Args {
            name,
            template,
            auth,
            path,
            framework_path,
        }),
        Command::Schema => {
            print!("{}", schema_text());
            ExitCode::SUCCESS
        }
        Command::Check { config, env_file } => {
            match load(&config, env_file.as_ref()).and_then(|app| {
                let summary = format!(
                    "{}: ok ({} services, {} routes)",
                    config.display(),
                    app.config().services.len(),
                    app.config().routes.len()
                );
                let broken = contract::check(app.config());
                if !broken.is_empty() {
                    return Err(bff::StartError::Config(bff::config::ConfigErrors(broken)));
                }
                app.into_router().map(|_| summary)
            }) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, env_file } => match load(&config, env_file.as_ref()) {
            Ok(app) => serve(app),
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Record(args) => record::run(args),
        Command::Mock(args) => mock::run(args),
        Command::K8s { action } => k8s(action),
        Command::Openapi(args) => openapi::openapi(&args),
        Command::Client(args) => openapi::client(&args),
        Command::Demo {
            web_listen,
            web_admin,
            mobile_listen,
            mobile_admin,
        } => bff::runtime().block_on(demo::run(demo::Addrs {
            web_listen,
            web_admin,
            mobile_listen,
            mobile_admin,
        })),
    }
}

/// Serves `app` until SIGTERM or Ctrl-C (`run`, `record`, `mock`).
pub(crate) fn serve(app: App) -> ExitCode {
    bff::runtime().block_on(async {
        match app.bind().await {
            Ok(server) => {
                // From here on SIGHUP means "reload", never the default exit, even before the server's
                // own handler listens.
                #[cfg(unix)]
                let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
                println!(
                    "bff: listening on http://{} (admin http://{})",
                    server.local_addr(),
                    server.admin_addr()
                );
                server.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}
