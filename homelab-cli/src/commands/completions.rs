//! `homelab-cli completions <shell>`: a shell completion script on stdout (clap_complete),
//! generated from the same grammar as the parser, so it never drifts from the flags.

use clap::CommandFactory;

use crate::context::{Context, Exit, print_text};

/// Flags of `homelab-cli completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script for `shell` (pure).
pub fn script(shell: clap_complete::Shell) -> Result<String, std::string::FromUtf8Error> {
    let mut cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "homelab-cli", &mut out);
    String::from_utf8(out)
}

/// Run `homelab-cli completions`.
pub async fn run(args: Args, _ctx: &Context) -> miette::Result<Exit> {
    let text =
        script(args.shell).map_err(|e| miette::miette!("completion script is not UTF-8: {e}"))?;
    print_text(&text)?;
    Ok(Exit::Success)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn scripts_name_the_binary_and_its_commands() {
        let bash = script(Shell::Bash).unwrap();
        assert!(bash.contains("_homelab__cli()"), "{bash}");
        assert!(bash.contains("complete -F _homelab__cli"));
        for cmd in ["plan", "up", "down", "completions", "secrets"] {
            assert!(bash.contains(cmd), "{cmd} missing");
        }
        assert!(
            script(Shell::Zsh)
                .unwrap()
                .starts_with("#compdef homelab-cli")
        );
        assert!(
            script(Shell::Fish)
                .unwrap()
                .contains("complete -c homelab-cli")
        );
    }
}
