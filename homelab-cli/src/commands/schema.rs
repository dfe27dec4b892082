//! `homelab-cli schema`: the JSON Schema of homelab.yaml (for editors via the
//! `yaml-language-server` schema line, and for CI validation).

use crate::context::{Context, Exit, print_text};
use crate::model::config::json_schema;

/// Flags of `homelab-cli schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli schema`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    let text = serde_json::to_string_pretty(&json_schema())
        .map_err(|e| miette::miette!("cannot render the schema: {e}"))?;
    print_text(&format!("{text}\n"))?;
    Ok(Exit::Success)
}
