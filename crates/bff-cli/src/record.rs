//! `bff record`: serves as `bff run` does, and stores every downstream exchange as a fixture, with a
//! JSON Schema inferred per declarative backend (docs/mocking.md).

use bff_testkit::Recorder;
use std::{path::PathBuf, process::ExitCode, sync::Arc};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Config file (.toml, .yaml/.yml or .json); default $BFF_CONFIG, then ./bff.toml.
    #[arg(long, env = "BFF_CONFIG", default_value = "bff.toml")]
    config: PathBuf,
    /// The fixtures folder: services/SERVICE/*.json (one file per distinct call) and schemas/*.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// KEY=VALUE lines read on top of the environment (for `${VAR}` and `BFF__...` overrides).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A response header or query parameter whose value is a credential, redacted besides the usual
    /// ones (authorization, cookie, set-cookie, x-api-key, access_token, ...); may be repeated.
    #[arg(long, value_name = "NAME")]
    redact: Vec<String>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let app = match crate::load(&args.config, args.env_file.as_ref()) {
        Ok(app) => app,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let recorder = match Recorder::new(&args.out, app.config(), &args.redact) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bff record: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "bff record: storing downstream exchanges in {}",
        args.out.display()
    );
    match app.with_tap(Arc::new(recorder)) {
        Ok(app) => crate::serve(app),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
