//! `cargo xtask check`: formatting, lints and the whole test suite, as CI runs them.

use std::process::Command;

use anyhow::{Context, bail};

use crate::common::project;

/// Runs `cargo fmt --check`, `cargo clippy -D warnings` and `cargo test` on the workspace.
pub fn run() -> anyhow::Result<()> {
    let root = project().root().to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Build into the target dir xtask itself was built in (target/debug/xtask → target),
    // the workspace's: Burn then compiles once for xtask and the checks alike.
    let target_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| root.join("target"));
    let steps: [(&str, &[&str]); 3] = [
        ("format", &["fmt", "--all", "--", "--check"]),
        (
            "lint",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("test", &["test", "--workspace"]),
    ];
    for (name, step_args) in steps {
        eprintln!("== {name}: cargo {}", step_args.join(" "));
        let status = Command::new(&cargo)
            .args(step_args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(&root)
            .status()
            .with_context(|| format!("cannot run cargo for the {name} step"))?;
        if !status.success() {
            bail!(
                "{name} step failed: cargo {} ({status})",
                step_args.join(" ")
            );
        }
    }
    eprintln!("== all checks passed");
    Ok(())
}
