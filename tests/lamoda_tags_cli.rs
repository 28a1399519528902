//! `lamoda-tags` as an installed user runs it: a project written by `init` outside the
//! checkout, found from the flag, the variable or the current directory, giving the same
//! figures as the checkout; clear one-line errors; no `cargo xtask` in any help.

#[path = "support/output.rs"]
mod output;
use output::{assert_fails, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_lamoda-tags");

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference data, or `None` (the test then skips, saying so).
fn data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout().join("../shared/lamoda"));
    if dir.join("labeled").is_dir() {
        return Some(dir);
    }
    eprintln!(
        "SKIP {test}: no data at {} (set LAMODA_DATA)",
        dir.display()
    );
    None
}

/// `lamoda-tags args…` run in `cwd` with no project named in the environment.
fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("LAMODA_PROJECT")
        .output()
        .expect("lamoda-tags runs")
}

#[test]
fn init_writes_a_project_that_is_found_and_scores_as_the_checkout() {
    let Some(data) = data("init_writes_a_project") else {
        return;
    };
    let outside = tempfile::tempdir().expect("temp dir");
    let project = outside.path().join("team");
    let out = run(outside.path(), &["init", "team"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("lamoda-tags fetch-base"),
        "{}",
        stdout(&out)
    );
    assert!(project.join("configs/routing.toml").is_file());
    assert!(project.join("etalon_tags/bags.toml").is_file());

    // A second init overwrites nothing.
    let out = run(outside.path(), &["init", "team"]);
    assert_fails(&out, 1, &["exists", "overwrites nothing"]);

    // No project named and none above: one line saying how to name one.
    let eval = ["eval", "--model", "prior", "--category", "bags", "--json"];
    let out = run(outside.path(), &eval);
    assert_fails(
        &out,
        1,
        &["no project", "--project DIR", "lamoda-tags init"],
    );

    // The figures from the new project, found from one of its subdirectories, equal the
    // checkout's.
    let data_flag = data.to_string_lossy().into_owned();
    let mut args: Vec<&str> = eval.to_vec();
    args.extend(["--data", &data_flag]);
    let ours = run(&project.join("etalon_tags"), &args);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let checkout_root = checkout().to_string_lossy().into_owned();
    let mut theirs_args = vec!["--project", &checkout_root];
    theirs_args.extend(&args);
    let theirs = run(outside.path(), &theirs_args);
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    let parse = |out: &Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).expect("eval --json prints JSON")
    };
    let (ours, theirs) = (parse(&ours), parse(&theirs));
    assert!(
        ours["categories"]["bags"]["prior_micro_f1"]
            .as_f64()
            .is_some()
    );
    assert_eq!(ours, theirs);

    // A directory named as the project that is none.
    let empty = outside.path().to_string_lossy().into_owned();
    let out = run(
        outside.path(),
        &["--project", &empty, "eval", "--model", "prior"],
    );
    assert_fails(&out, 1, &["is not a Lamoda Tags project", "--project"]);
}

#[test]
fn usage_errors_are_one_line_and_no_help_names_cargo_xtask() {
    let here = checkout();
    let out = run(&here, &["train", "--category", "nope"]);
    assert_fails(&out, 2, &["nope"]);
    let out = run(&here, &["predict"]);
    assert_fails(&out, 2, &["required"]);
    let help = run(&here, &["--help"]);
    assert!(help.status.success());
    let mut texts = vec![stdout(&help)];
    for line in stdout(&help).lines() {
        // The subcommand lines: two spaces, the name, then its description.
        let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.split_whitespace().next())
        else {
            continue;
        };
        if name.starts_with('-') || name == "help" {
            continue;
        }
        let out = run(&here, &[name, "--help"]);
        assert!(out.status.success(), "{name} --help: {}", stderr(&out));
        texts.push(stdout(&out));
    }
    assert!(
        texts.len() > 15,
        "every workflow's help was read: {}",
        texts.len()
    );
    for text in texts {
        assert!(
            !text.contains("cargo xtask"),
            "help names cargo xtask: {text}"
        );
    }
}
