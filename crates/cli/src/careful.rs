//! The careful-dev tables (`eval --labels careful`, `calibrate`): a
//! [`lamoda_eval::CarefulReport`] as text.

use std::path::PathBuf;

use lamoda_eval::{CarefulReport, Figures};

/// One source's precision, recall and F1, as a cell of the tables.
fn cell(f: &Figures) -> String {
    format!("{:.3} {:.3} {:.3}", f.precision, f.recall, f.micro_f1)
}

/// Prints the careful-dev table: precision, recall and F1 of each source per category and
/// pooled, then the reliability of the shipped probabilities.
pub fn print_careful_table(report: &CarefulReport) {
    println!(
        "model: {}   rows: careful dev split (configs/careful.toml), scored against the careful labels",
        report.model
    );
    println!(
        "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10}",
        "category",
        "n",
        "model P / R / F1",
        "uncalibrated",
        "data set's labels",
        "prior",
        "F1 vs noisy"
    );
    for (category, f) in &report.categories {
        println!(
            "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10.3}",
            category.name(),
            f.model.n,
            cell(&f.model),
            cell(&f.uncalibrated),
            cell(&f.noisy_labels),
            cell(&f.prior),
            f.model_vs_noisy.micro_f1
        );
    }
    if report.categories.len() > 1 {
        let all = &report.all;
        println!(
            "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10.3}",
            "all",
            all.model.n,
            cell(&all.model),
            cell(&all.uncalibrated),
            cell(&all.noisy_labels),
            cell(&all.prior),
            all.model_vs_noisy.micro_f1
        );
    }
    let line: Vec<String> = report
        .reliability
        .iter()
        .map(|(p, a, n)| format!("{p:.2}→{a:.2} ({n})"))
        .collect();
    println!(
        "reliability (mean probability → share a careful reader agrees with): {}",
        line.join(", ")
    );
}

/// Prints the team-reviewed table (the bundle and the prior on the products of `files`),
/// when the report has team-reviewed figures.
pub fn print_reviewed_table(report: &CarefulReport, files: &[PathBuf]) {
    if report.reviewed.is_empty() {
        return;
    }
    println!();
    println!(
        "team-reviewed products ({}):",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<8} {:>4}  {:<19} {:<19}",
        "category", "n", "model P / R / F1", "prior"
    );
    for (category, f) in &report.reviewed {
        println!(
            "{:<8} {:>4}  {:<19} {:<19}",
            category.name(),
            f.model.n,
            cell(&f.model),
            cell(&f.prior)
        );
    }
}
