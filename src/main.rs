//! `lamoda-tags`: every Lamoda Tags workflow in one installable command (`lamoda-tags
//! --help`). The code is `lamoda_cli`.

fn main() -> std::process::ExitCode {
    lamoda_cli::main()
}
