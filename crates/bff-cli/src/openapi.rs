//! `bff openapi` prints the OpenAPI 3.1 document of a config's public routes; `bff client` writes a typed
//! TypeScript client of them (CONTRACT section 8). Both describe the declarative routes of the config; a
//! BFF with Rust routes serves its whole document at `GET /admin/openapi.json`, which `bff client
//! --openapi FILE` takes instead.

use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args)]
pub(crate) struct OpenapiArgs {
    /// Config file (.toml, .yaml/.yml or .json); default $BFF_CONFIG, then ./bff.toml.
    #[arg(long, env = "BFF_CONFIG", default_value = "bff.toml")]
    config: PathBuf,
    /// KEY=VALUE lines read on top of the environment (for `${VAR}` and `BFF__...` overrides).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ClientArgs {
    /// The client's language (typescript).
    #[arg(long, default_value = "typescript")]
    lang: String,
    /// The folder to write the client to (client.ts), created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An OpenAPI document (e.g. saved from GET /admin/openapi.json) instead of the config's (--config is then ignored).
    #[arg(long, value_name = "FILE")]
    openapi: Option<PathBuf>,
    #[command(flatten)]
    config: OpenapiArgs,
}

/// The document of a config: the app it builds, as `bff check` builds it.
fn document(args: &OpenapiArgs) -> Result<serde_json::Value, bff::StartError> {
    crate::load(&args.config, args.env_file.as_ref()).map(|app| app.openapi())
}

fn failed(command: &str, e: &str) -> ExitCode {
    eprint!("bff {command}: {e}");
    if !e.ends_with('\n') {
        eprintln!();
    }
    ExitCode::FAILURE
}

pub(crate) fn openapi(args: &OpenapiArgs) -> ExitCode {
    match document(args) {
        Ok(doc) => {
            let text = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => failed("openapi", &e.to_string()),
    }
}

pub(crate) fn client(args: &ClientArgs) -> ExitCode {
    if args.lang != "typescript" {
        return failed(
            "client",
            &format!("--lang {:?}: the one language is typescript", args.lang),
        );
    }
    let doc = match &args.openapi {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not JSON: {e}", file.display()))
            }),
        None => document(&args.config).map_err(|e| e.to_string()),
    };
    let text = match doc.and_then(|d| bff_openapi::typescript(&d).map_err(|e| e.to_string())) {
        Ok(text) => text,
        Err(e) => return failed("client", &e),
    };
    let file = args.out.join("client.ts");
    if let Err(e) = std::fs::create_dir_all(&args.out).and_then(|()| std::fs::write(&file, text)) {
        return failed("client", &format!("{}: {e}", file.display()));
    }
    println!("bff client: wrote {}", file.display());
    ExitCode::SUCCESS
}
