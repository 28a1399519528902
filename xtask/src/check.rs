//! `cargo xtask check`: one build of the dependencies, formatting, lints and the whole
//! test suite, as CI runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::common::project;

/// Checks that `cargo xtask`, `predict-tags` and the tests resolve the same features, then runs
/// `cargo fmt --check`, `cargo clippy -D warnings` and `cargo test` on the workspace.
pub fn run() -> anyhow::Result<()> {
    let root = project().root().to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "== one build: xtask, predict-tags and the workspace's tests resolve the same features"
    );
    one_build(&cargo, &root)?;
    hakari_current(&cargo, &root)?;
    eprintln!("== the runtime's binaries link neither the trainer nor the curation pipeline");
    runtime_links(&cargo, &root)?;
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
                // A stale Cargo.lock fails here, as `cargo install --locked` would.
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("test", &["test", "--workspace", "--locked"]),
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

/// The features `cargo tree` resolves for each package of the build `selection` names
/// (`-p xtask -e normal,build`, …).
fn resolved_features(
    cargo: &OsStr,
    root: &Path,
    selection: &[&str],
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let out = Command::new(cargo)
        .args(["tree", "--quiet"])
        .args(selection)
        .args(["--prefix", "none", "-f", "{p}|{f}"])
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run cargo tree {}", selection.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cargo tree {} failed: {}",
            selection.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.replace(" (*)", "");
        let Some((name, list)) = line.split_once('|') else {
            continue;
        };
        features.entry(name.trim().to_owned()).or_default().extend(
            list.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(features)
}

/// Fails when `crates/workspace-hack` is not what `cargo hakari generate` writes, or a
/// workspace crate lacks its dependency on it; skipped (with a line saying so) where
/// cargo-hakari is not installed (`.ci/run` installs it).
fn hakari_current(cargo: &OsStr, root: &Path) -> anyhow::Result<()> {
    let installed = Command::new(cargo)
        .args(["hakari", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!(
            "   (cargo-hakari is not installed: the workspace-hack's freshness is not checked)"
        );
        return Ok(());
    }
    for step in [
        &["hakari", "generate", "--diff"][..],
        &["hakari", "manage-deps", "--dry-run"][..],
    ] {
        let out = Command::new(cargo)
            .args(step)
            .current_dir(root)
            .output()
            .with_context(|| format!("cannot run cargo {}", step.join(" ")))?;
        if !out.status.success() {
            bail!(
                "cargo {} failed: the workspace-hack is stale (run `cargo hakari generate && \
                 cargo hakari manage-deps`): {}",
                step.join(" "),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
    }
    Ok(())
}

/// Crates the runtime's binaries must never link.
const NOT_IN_THE_RUNTIME: [&str; 2] = ["lamoda-trainer", "lamoda-curation"];

/// Fails when `lamoda-server`, `lamoda-predict` (all of `predict-tags`) or `lamoda-python`
/// (the Python package) depends on a crate of [`NOT_IN_THE_RUNTIME`] (normal and build
/// dependencies, as a release build links them).
/// The built `predict-tags` binary is checked too, by `tests/runtime_links.rs`.
fn runtime_links(cargo: &OsStr, root: &Path) -> anyhow::Result<()> {
    for package in ["lamoda-server", "lamoda-predict", "lamoda-python"] {
        let linked = resolved_features(cargo, root, &["-p", package, "-e", "normal,build"])?;
        let found: Vec<&str> = NOT_IN_THE_RUNTIME
            .into_iter()
            .filter(|name| linked.keys().any(|p| p.split(' ').next() == Some(*name)))
            .collect();
        if !found.is_empty() {
            bail!(
                "{package} links {}: the runtime's binaries must not (ARCHITECTURE.md, \
                 Invariants)",
                found.join(" and ")
            );
        }
    }
    Ok(())
}

/// Fails when a crate that `xtask` builds resolves other features when `lamoda-tags`
/// (predict-tags) is built alone or when the whole workspace's tests are: it would be
/// compiled twice, and with it everything above it (Burn).
fn one_build(cargo: &OsStr, root: &Path) -> anyhow::Result<()> {
    let xtask = resolved_features(cargo, root, &["-p", "xtask", "-e", "normal,build"])?;
    for (what, args) in [
        (
            "predict-tags",
            &["-p", "lamoda-tags", "-e", "normal,build"][..],
        ),
        (
            "cargo test --workspace",
            &["--workspace", "-e", "normal,build,dev"][..],
        ),
    ] {
        let theirs = resolved_features(cargo, root, args)?;
        let differ: Vec<String> = theirs
            .iter()
            .filter_map(|(name, features)| {
                let other = xtask.get(name)?;
                (other != features).then(|| {
                    let only: Vec<&String> = other.symmetric_difference(features).collect();
                    format!("{name} ({only:?})")
                })
            })
            .collect();
        if !differ.is_empty() {
            bail!(
                "cargo xtask and {what} resolve other features for {}: run `cargo hakari \
                 generate` (crates/workspace-hack; README, Developing)",
                differ.join(", ")
            );
        }
    }
    Ok(())
}
