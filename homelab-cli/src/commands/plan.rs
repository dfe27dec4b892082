//! `homelab-cli plan`: what `up` would change, shown like a Terraform plan.

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::render;
use crate::session::{Session, SimArgs};
use crate::workspace::ConfigArg;

/// Flags of `homelab-cli plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit 0 when there is nothing to do and 2 when there are changes (1 on errors).
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub config_mode: crate::engine::config_change::ConfigModeArg,
}

/// Run `homelab-cli plan`.
pub async fn run(args: Args, ctx: &Context) -> miette::Result<Exit> {
    let mut session = Session::open_env(&args.config.config, args.config.env(), &args.sim).await?;
    session.config_mode = args.config_mode.config_mode;
    let planned = session.plan().await;
    session.close().await;
    let planned = planned?;
    match args.output {
        OutputFormat::Json => print_json(&planned.plan)?,
        OutputFormat::Text => print_text(&render::plan_text(&planned.plan, ctx.color))?,
    }
    Ok(if args.detailed_exitcode && !planned.plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Success
    })
}
