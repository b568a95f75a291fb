//! `bff mock`: serves the config's routes with no service running; the mesh answers every downstream
//! call in-process from fixtures or from an example of the backend's schema (docs/mocking.md).

use bff::config::{Loader, Source};
use bff_testkit::Replay;
use serde_json::{Value, json};
use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Config file (.toml, .yaml/.yml or .json); default $BFF_CONFIG, then ./bff.toml.
    #[arg(long, env = "BFF_CONFIG", default_value = "bff.toml")]
    config: PathBuf,
    /// A folder written by `bff record` (services/ and schemas/); without it, calls are answered from
    /// schemas only.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// KEY=VALUE lines read on top of the environment (for `${VAR}` and `BFF__...` overrides).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let app = match load(&args) {
        Ok(app) => app,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let replay = match &args.fixtures {
        Some(dir) => match Replay::load(dir, app.config()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bff mock: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Replay::empty(app.config()),
    };
    println!(
        "bff mock: {} fixtures; no downstream call leaves this process",
        replay.fixtures().len()
    );
    match replay.install(app) {
        Ok(app) => crate::serve(app),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The config as `run` loads it, except that no service needs an address: each one's `endpoints` is a
/// placeholder and its `discovery` and `tls` are dropped (their `${VAR}`s are never read).
fn load(args: &Args) -> Result<bff::App, bff::StartError> {
    let source = Source::file(&args.config)?;
    let mut loader = Loader::new();
    if let Some(file) = &args.env_file {
        loader = loader.with_env(bff::config::env_with_file(file)?);
    }
    let raw = loader.raw(&source)?;
    let names: Vec<String> = raw
        .get("services")
        .and_then(Value::as_object)
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    for name in &names {
        loader = loader
            .with_value(&["services", name, "endpoints"], json!(["127.0.0.1:9"]))
            .with_value(&["services", name, "discovery"], Value::Null)
            .with_value(&["services", name, "tls"], Value::Null);
    }
    let config = loader.load(&source)?;
    bff::App::new(config)
}
