//! Run with: `cargo run -p web-bff -- --config examples/web-bff/bff.toml`

#[tokio::main]
async fn main() -> Result<(), bff::StartError> {
    bff::init_tracing();
    let config = bff::config::Loader::new().load_file(bff::config_path_from_args())?;
    web_bff::app(config)?.serve().await
}
