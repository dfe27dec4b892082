fn main() -> std::process::ExitCode {
    homelab_cli::main()
}
