//! Fitting the lexical branch ([`lamoda_inference::lexical`]): each view's first stage
//! (one regression per tag minimising `C · Σ log-loss + ½‖w‖²`, the intercept not
//! penalised, solved by Newton's method with conjugate-gradient steps, so the fit is exact
//! and deterministic) and the second stage over every view's out-of-fold first-stage
//! logits (row `i` in fold `i mod folds`, each fold scored by first stages fitted without
//! it), with the frozen view ([`crate::frozen_fit`]) refitted per fold too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lamoda_inference::frozen::{FrozenView, ProductVectors};
use lamoda_inference::lexical::{
    FirstStage, LexicalModel, LexicalSettings, SecondStage, SparseRow, View, counts, frozen_input,
    second_stage_row, sigmoid,
};

use lamoda_metrics::prior::frequency_logit;

use crate::error::TrainError;
use crate::frozen_fit::{FrozenFit, fit_frozen_view};

/// The document frequency a feature of `view` needs under `settings`.
pub fn min_df_of(settings: &LexicalSettings, view: View) -> usize {
    match view {
        View::Stems(_) => settings.min_df,
        View::CharNgrams(..) => settings.char_min_df,
    }
}

/// How `settings` fit the frozen view.
pub fn frozen_fit(settings: &LexicalSettings) -> FrozenFit {
    FrozenFit {
        iterations: settings.frozen_iterations,
        lr: settings.frozen_lr,
        weight_decay: settings.frozen_weight_decay,
    }
}

/// Fits one view's [`FirstStage`] on the products `rows` of `bags` (that view's counts)
/// and `targets`.
pub fn fit_first_stage(
    bags: &[HashMap<String, u32>],
    targets: &[Vec<f32>],
    rows: &[usize],
    n_tags: usize,
    min_df: usize,
    settings: &LexicalSettings,
) -> FirstStage {
    let mut df: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in rows {
        for feature in bags[i].keys() {
            *df.entry(feature.as_str()).or_insert(0) += 1;
        }
    }
    let n = rows.len() as f64;
    let (vocabulary, idf): (Vec<String>, Vec<f32>) = df
        .into_iter()
        .filter(|&(_, d)| d >= min_df)
        .map(|(s, d)| {
            (
                s.to_string(),
                ((1.0 + n) / (1.0 + d as f64)).ln() as f32 + 1.0,
            )
        })
        .unzip();
    let mut stage = FirstStage::new(vocabulary, idf, Vec::new(), Vec::new());
    let x: Vec<SparseRow> = rows.iter().map(|&i| stage.vectorise(&bags[i])).collect();
    (stage.weights, stage.bias) = fit_tags(
        &x,
        targets,
        rows,
        n_tags,
        stage.vocabulary.len(),
        settings.c,
        settings.max_iterations,
    );
    stage
}

/// Fits a [`LexicalModel`] on training products (`docs[i]` its reviews, `vectors[i]` their frozen review
/// vectors when the frozen view is on, `targets[i]` its 0/1 tags in `tags` order): each
/// view's first stage on all of them, then (when the settings ask) the second stage on
/// their out-of-fold first-stage logits.
pub fn fit_lexical(
    settings: &LexicalSettings,
    tags: &[String],
    docs: &[&[String]],
    vectors: Option<&[ProductVectors]>,
    targets: &[Vec<f32>],
) -> Result<LexicalModel, TrainError> {
    settings.validate(Path::new("<lexical>"))?;
    let vectors = frozen_input(settings.frozen_view, vectors, docs.len())?;
    let folds = settings.folds.min(docs.len());
    if docs.len() != targets.len() || docs.is_empty() || (settings.second_stage && folds < 2) {
        return Err(TrainError::Lexical {
            path: PathBuf::from("<training rows>"),
            reason: format!(
                "cannot fit on {} products with {} target rows{}",
                docs.len(),
                targets.len(),
                if settings.second_stage {
                    " (the second stage needs at least 2 products)"
                } else {
                    ""
                }
            ),
        });
    }
    let views = settings.views();
    let bags: Vec<Vec<HashMap<String, u32>>> = views
        .iter()
        .map(|&view| docs.iter().map(|d| counts(d, view)).collect())
        .collect();
    let fit_views = |rows: &[usize]| -> Vec<FirstStage> {
        views
            .iter()
            .zip(&bags)
            .map(|(&view, bags)| {
                fit_first_stage(
                    bags,
                    targets,
                    rows,
                    tags.len(),
                    min_df_of(settings, view),
                    settings,
                )
            })
            .collect()
    };
    let fit_frozen = |rows: &[usize]| -> Result<Option<FrozenView>, TrainError> {
        vectors
            .map(|v| fit_frozen_view(v, targets, rows, tags.len(), &frozen_fit(settings)))
            .transpose()
    };
    let all: Vec<usize> = (0..docs.len()).collect();
    let mut model = LexicalModel {
        settings: settings.clone(),
        tags: tags.to_vec(),
        first: fit_views(&all),
        frozen: fit_frozen(&all)?,
        second: None,
    };
    if settings.second_stage {
        let mut rows = vec![SparseRow::new(); docs.len()];
        for k in 0..folds {
            let (held, kept): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| i % folds == k);
            let stages = fit_views(&kept);
            let frozen = fit_frozen(&kept)?;
            for i in held {
                let mut logits: Vec<Vec<f64>> = stages
                    .iter()
                    .zip(&bags)
                    .map(|(stage, bags)| stage.logits(&bags[i]))
                    .collect();
                if let (Some(view), Some(vectors)) = (&frozen, vectors) {
                    logits.push(view.logits(&vectors[i]));
                }
                rows[i] = second_stage_row(&logits);
            }
        }
        let (weights, bias) = fit_tags(
            &rows,
            targets,
            &all,
            tags.len(),
            model.n_views() * tags.len(),
            settings.second_stage_c,
            settings.max_iterations,
        );
        model.second = Some(SecondStage { weights, bias });
    }
    Ok(model)
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// One regression per tag on `x` (the rows of the products `rows`, in that order), as
/// `f32` weights `[tag][feature]` and intercepts.
fn fit_tags(
    x: &[SparseRow],
    targets: &[Vec<f32>],
    rows: &[usize],
    n_tags: usize,
    n_features: usize,
    c: f64,
    max_iterations: usize,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    (0..n_tags)
        .map(|t| {
            let y = column(targets, t, rows);
            let (w, b) = fit_logistic(x, &y, n_features, c, max_iterations);
            (w.into_iter().map(|v| v as f32).collect(), b as f32)
        })
        .unzip()
}

/// Tag `t`'s 0/1 targets of the products `rows`.
fn column(targets: &[Vec<f32>], t: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .map(|&i| f64::from(targets[i].get(t).copied().unwrap_or(0.0)))
        .collect()
}

/// Each row's margin `z = b + x·w`.
fn margins(rows: &[SparseRow], w: &[f64], b: f64) -> Vec<f64> {
    rows.iter().map(|row| b + dot(row, w)).collect()
}

/// The regularised objective `C · Σ log-loss + ½‖w‖²` at weights `w` with margins `z`.
fn objective(z: &[f64], y: &[f64], c: f64, w: &[f64]) -> f64 {
    // −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y·z
    let loss: f64 = z.iter().zip(y).map(|(&z, &y)| softplus(z) - y * z).sum();
    c * loss + 0.5 * w.iter().map(|v| v * v).sum::<f64>()
}

fn dot(row: &SparseRow, w: &[f64]) -> f64 {
    row.iter().map(|&(i, v)| w[i] * v).sum()
}

/// Gradient of [`objective`]: `(w + C·Xᵀr, C·Σr)` with `r = σ(z) − y`.
fn gradient_at(rows: &[SparseRow], z: &[f64], y: &[f64], c: f64, w: &[f64]) -> (Vec<f64>, f64) {
    let mut g = w.to_vec();
    let mut gb = 0.0;
    for ((row, &z), &y) in rows.iter().zip(z).zip(y) {
        let r = c * (sigmoid(z) - y);
        gb += r;
        for &(i, v) in row {
            g[i] += r * v;
        }
    }
    (g, gb)
}

/// One tag's logistic regression by Newton–CG with a backtracking line search.
fn fit_logistic(
    rows: &[SparseRow],
    y: &[f64],
    n_features: usize,
    c: f64,
    max_iterations: usize,
) -> (Vec<f64>, f64) {
    let mut w = vec![0.0; n_features];
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let mut b = frequency_logit(mean, 1e-4);
    if mean <= 0.0 || mean >= 1.0 {
        // A tag always (or never) present: nothing to learn beyond the intercept.
        return (w, b);
    }
    let norm = |g: &[f64], gb: f64| (g.iter().map(|v| v * v).sum::<f64>() + gb * gb).sqrt();
    // Margins and objective of the current point, carried over from the line search.
    let mut z = margins(rows, &w, b);
    let mut f = objective(&z, y, c, &w);
    let mut tolerance = None;
    for _ in 0..max_iterations {
        let (g, gb) = gradient_at(rows, &z, y, c, &w);
        let g_norm = norm(&g, gb);
        // Converged once the gradient is 1e-5 of the starting one.
        if g_norm <= *tolerance.get_or_insert(1e-5 * g_norm.max(1.0)) {
            break;
        }
        // Curvature weights C·σ(1 − σ) at the current point.
        let d: Vec<f64> = z
            .iter()
            .map(|&z| {
                let s = sigmoid(z);
                c * s * (1.0 - s)
            })
            .collect();
        let hess = |v: &[f64], vb: f64| -> (Vec<f64>, f64) {
            let mut out = v.to_vec();
            let mut out_b = 0.0;
            for (row, &d) in rows.iter().zip(&d) {
                let u = d * (vb + dot(row, v));
                out_b += u;
                for &(i, x) in row {
                    out[i] += u * x;
                }
            }
            (out, out_b)
        };
        // Conjugate gradient on H s = −g, to a relative residual of 0.1.
        let (mut s, mut sb) = (vec![0.0; n_features], 0.0);
        let (mut r, mut rb): (Vec<f64>, f64) = (g.iter().map(|v| -v).collect(), -gb);
        let (mut p, mut pb) = (r.clone(), rb);
        let mut rr = norm(&r, rb).powi(2);
        for _ in 0..100 {
            if rr.sqrt() <= 0.1 * g_norm {
                break;
            }
            let (hp, hpb) = hess(&p, pb);
            let php = p.iter().zip(&hp).map(|(a, b)| a * b).sum::<f64>() + pb * hpb;
            if php <= 0.0 {
                break;
            }
            let alpha = rr / php;
            s.iter_mut().zip(&p).for_each(|(s, p)| *s += alpha * p);
            sb += alpha * pb;
            r.iter_mut().zip(&hp).for_each(|(r, h)| *r -= alpha * h);
            rb -= alpha * hpb;
            let rr_new = norm(&r, rb).powi(2);
            let beta = rr_new / rr;
            p.iter_mut().zip(&r).for_each(|(p, r)| *p = r + beta * *p);
            pb = rb + beta * pb;
            rr = rr_new;
        }
        // Backtracking (Armijo) along s.
        let slope = g.iter().zip(&s).map(|(g, s)| g * s).sum::<f64>() + gb * sb;
        let mut step = 1.0;
        let mut moved = false;
        for _ in 0..30 {
            let w_new: Vec<f64> = w.iter().zip(&s).map(|(w, s)| w + step * s).collect();
            let b_new = b + step * sb;
            let z_new = margins(rows, &w_new, b_new);
            let f_new = objective(&z_new, y, c, &w_new);
            if f_new <= f + 1e-4 * step * slope {
                (w, b, z, f) = (w_new, b_new, z_new, f_new);
                moved = true;
                break;
            }
            step *= 0.5;
        }
        if !moved {
            break;
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_inference::lexical::{LEXICAL_CONFIG_FILE, LEXICAL_FORMAT, LEXICAL_WEIGHTS_FILE};

    /// The objective the fit minimises, `C · Σ log-loss + ½‖w‖²` (intercept unpenalised),
    /// written out from its definition here rather than taken from the module.
    fn reference_objective(rows: &[SparseRow], y: &[f64], c: f64, w: &[f64], b: f64) -> f64 {
        let mut loss = 0.0;
        for (row, &y) in rows.iter().zip(y) {
            let z = b + row.iter().map(|&(i, v)| w[i] * v).sum::<f64>();
            let p = 1.0 / (1.0 + (-z).exp());
            loss -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
        }
        c * loss + 0.5 * w.iter().map(|v| v * v).sum::<f64>()
    }

    /// The norm of [`reference_objective`]'s gradient at `(w, b)` by central finite
    /// differences: an optimality check independent of the solver's own gradient.
    fn finite_difference_gradient_norm(
        rows: &[SparseRow],
        y: &[f64],
        c: f64,
        w: &[f64],
        b: f64,
    ) -> f64 {
        let h = 1e-6;
        let f = |w: &[f64], b: f64| reference_objective(rows, y, c, w, b);
        let mut sq = ((f(w, b + h) - f(w, b - h)) / (2.0 * h)).powi(2);
        for i in 0..w.len() {
            let (mut up, mut down) = (w.to_vec(), w.to_vec());
            up[i] += h;
            down[i] -= h;
            sq += ((f(&up, b) - f(&down, b)) / (2.0 * h)).powi(2);
        }
        sq.sqrt()
    }

    #[test]
    fn finite_differences_see_a_non_optimum() {
        // The check itself must fail away from the optimum: at w = 0, b = 0 on separable
        // data the gradient is far from zero.
        let rows: Vec<SparseRow> = vec![vec![(0, 1.0)], vec![(1, 1.0)], vec![(0, 1.0)]];
        let y = [1.0, 0.0, 1.0];
        let g = finite_difference_gradient_norm(&rows, &y, 4.0, &[0.0, 0.0], 0.0);
        // Exact: C·Σ(σ(0) − y)·x = 4·(−0.5 − 0.5) = −4 for w₀, 4·0.5 = 2 for w₁ and
        // 4·(−0.5) = −2 for b: norm √24.
        assert!((g - 24f64.sqrt()).abs() < 1e-6, "{g}");
        // And the solver's answer there is optimal.
        let (w, b) = fit_logistic(&rows, &y, 2, 4.0, 50);
        let g = finite_difference_gradient_norm(&rows, &y, 4.0, &w, b);
        assert!(g < 1e-4, "gradient norm at the fit {g}");
    }

    fn docs(texts: &[&str]) -> Vec<Vec<String>> {
        texts.iter().map(|t| vec![t.to_string()]).collect()
    }

    #[test]
    fn fit_reaches_the_optimum_and_separates_the_words() {
        let texts = docs(&[
            "просторная сумка",
            "сумка просторная и легкая",
            "маленькая сумка",
            "легкая маленькая",
            "просторная вместительная",
            "очень маленькая но легкая",
        ]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets = vec![
            vec![1.0, 0.0],
            vec![1.0, 1.0],
            vec![0.0, 0.0],
            vec![0.0, 1.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
        ];
        let settings = LexicalSettings {
            min_df: 1,
            c: 4.0,
            second_stage: false,
            ..LexicalSettings::default()
        };
        let tags = vec!["Вместительная".to_string(), "Легкая".to_string()];
        let model = fit_lexical(&settings, &tags, &stacks, None, &targets).expect("fit");
        // First-order optimality of every tag's objective, by finite differences.
        let bags: Vec<_> = stacks.iter().map(|d| counts(d, View::Stems(5))).collect();
        let stage = &model.first[0];
        let rows: Vec<SparseRow> = bags.iter().map(|b| stage.vectorise(b)).collect();
        for t in 0..tags.len() {
            let y: Vec<f64> = targets.iter().map(|r| f64::from(r[t])).collect();
            let w: Vec<f64> = stage.weights[t].iter().map(|&v| f64::from(v)).collect();
            let g_norm =
                finite_difference_gradient_norm(&rows, &y, 4.0, &w, f64::from(stage.bias[t]));
            assert!(g_norm < 1e-3, "tag {t}: gradient norm {g_norm}");
        }
        let probe = docs(&["просторный рюкзак", "легкая ноша"]);
        let probe: Vec<&[String]> = probe.iter().map(Vec::as_slice).collect();
        let p = model.probabilities(&probe, None).expect("probabilities");
        assert!(p[0][0] > 0.5 && p[0][1] < 0.5, "{p:?}");
        assert!(p[1][1] > 0.5 && p[1][0] < 0.5, "{p:?}");
    }

    #[test]
    fn the_second_stage_is_optimal_on_out_of_fold_logits_and_round_trips() {
        let words = ["легкая", "просторная", "маленькая", "прочная", "мягкая"];
        // 30 products of two or three words; tag t is on a product that names word t
        // (tag 2 never: "маленькая" is the opposite of "Вместительная").
        let texts: Vec<Vec<String>> = (0..30)
            .map(|i| {
                let picked = [i % 5, (i * 3 + 1) % 5, (i * 7 + 2) % 5];
                let n = 2 + i % 2;
                vec![
                    picked[..n]
                        .iter()
                        .map(|&w| words[w])
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect();
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| {
                (0..3)
                    .map(|k| {
                        let named = t[0].contains(words[k]);
                        // The label misses every fourth mention: noisy, as the real ones.
                        f32::from(u8::from(named && t[0].len() % 4 != 0 && k != 2))
                    })
                    .collect()
            })
            .collect();
        let tags: Vec<String> = ["Легкая", "Вместительная", "Маленькая"]
            .map(String::from)
            .to_vec();
        let settings = LexicalSettings {
            min_df: 1,
            char_ngrams: vec![3, 4],
            char_min_df: 2,
            folds: 3,
            ..LexicalSettings::default()
        };
        let model = fit_lexical(&settings, &tags, &stacks, None, &targets).expect("fit");
        let second = model.second.as_ref().expect("second stage");
        // The out-of-fold logits, rebuilt here: product i is scored by a first stage
        // fitted on the other folds.
        let views = [View::Stems(5), View::CharNgrams(3, 4)];
        let bags: Vec<Vec<_>> = views
            .iter()
            .map(|&v| stacks.iter().map(|d| counts(d, v)).collect())
            .collect();
        let rows: Vec<SparseRow> = (0..stacks.len())
            .map(|i| {
                let kept: Vec<usize> = (0..stacks.len()).filter(|j| j % 3 != i % 3).collect();
                let logits: Vec<Vec<f64>> = views
                    .iter()
                    .zip(&bags)
                    .map(|(&v, bags)| {
                        let min_df = min_df_of(&settings, v);
                        fit_first_stage(bags, &targets, &kept, 3, min_df, &settings)
                            .logits(&bags[i])
                    })
                    .collect();
                second_stage_row(&logits)
            })
            .collect();
        assert_eq!(rows[0].len(), 6, "two views of three tags");
        // Tag 2 is never on: it keeps only its intercept (see `a_tag_never_seen_…`).
        for t in 0..2 {
            let y: Vec<f64> = targets.iter().map(|r| f64::from(r[t])).collect();
            let w: Vec<f64> = second.weights[t].iter().map(|&v| f64::from(v)).collect();
            let g_norm =
                finite_difference_gradient_norm(&rows, &y, 0.3, &w, f64::from(second.bias[t]));
            assert!(g_norm < 1e-3, "tag {t}: gradient norm {g_norm}");
        }
        // It changes the probabilities, and save → load keeps them exactly.
        let p = model.probabilities(&stacks, None).expect("probabilities");
        let first_only = LexicalModel {
            second: None,
            ..model.clone()
        };
        assert_ne!(
            first_only
                .probabilities(&stacks, None)
                .expect("probabilities"),
            p
        );
        assert!(p[0][0] > p[2][0], "{p:?}");
        assert!(p.iter().all(|row| row[2] < 1e-3), "{p:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(
            loaded.probabilities(&stacks, None).expect("probabilities"),
            p
        );
        // A branch written by the previous format asks to be refitted.
        let config = dir.path().join(LEXICAL_CONFIG_FILE);
        let text = std::fs::read_to_string(&config).expect("read");
        std::fs::write(&config, text.replace(LEXICAL_FORMAT, "lamoda-lexical/1")).expect("write");
        let err = LexicalModel::load(dir.path()).expect_err("old format");
        assert!(err.to_string().contains("--keep-encoder"), "{err}");
        // One product cannot be split into folds.
        let err = fit_lexical(&settings, &tags, &stacks[..1], None, &targets[..1])
            .expect_err("one product");
        assert!(err.to_string().contains("at least 2 products"), "{err}");
    }

    #[test]
    fn a_tag_never_seen_keeps_a_tiny_probability_and_save_load_is_identity() {
        let texts = docs(&["мягкая", "мягкая кожа", "жесткая"]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets = vec![vec![1.0, 0.0], vec![1.0, 0.0], vec![0.0, 0.0]];
        let tags = vec!["Мягкая".to_string(), "Редкий".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            ..LexicalSettings::default()
        };
        let model = fit_lexical(&settings, &tags, &stacks, None, &targets).expect("fit");
        let p = model.probabilities(&stacks, None).expect("probabilities");
        assert!(p.iter().all(|row| row[1] < 1e-3), "{p:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        assert!(LexicalModel::exists_in(dir.path()));
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(
            loaded.probabilities(&stacks, None).expect("probabilities"),
            p
        );
        LexicalModel::remove_from(dir.path()).expect("remove");
        assert!(!LexicalModel::exists_in(dir.path()));
    }

    #[test]
    fn fuse_mixes_by_the_weight_and_bad_settings_are_named() {
        let model = LexicalModel {
            settings: LexicalSettings {
                weight: 0.25,
                ..LexicalSettings::default()
            },
            tags: vec![],
            first: vec![],
            frozen: None,
            second: None,
        };
        let fused = model.fuse(&[vec![0.8, 0.0]], &[vec![0.4, 1.0]]);
        assert!((fused[0][0] - 0.7).abs() < 1e-6 && (fused[0][1] - 0.25).abs() < 1e-6);
        let err = LexicalSettings {
            weight: 1.5,
            ..LexicalSettings::default()
        }
        .validate(Path::new("configs/bags.toml"))
        .expect_err("weight 1.5");
        assert_eq!(
            err.to_string(),
            "configs/bags.toml: `lexical.weight` = 1.5: must be within [0, 1]"
        );
    }

    #[test]
    fn the_frozen_view_joins_the_second_stage_and_round_trips() {
        // Tag 0 is said by the words, tag 1 only by the review vectors' first dimension
        // (on every fourth product, so each of the 3 folds holds some).
        let n = 24;
        let texts: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let word = if i % 2 == 0 {
                    "мягкая"
                } else {
                    "жесткая"
                };
                vec![format!("{word} сумка"), "обычная".to_string()]
            })
            .collect();
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let vectors: Vec<ProductVectors> = (0..n)
            .map(|i| {
                let signal = if i % 4 == 0 { 1.5 } else { -1.5 };
                vec![vec![signal, (i % 5) as f32 * 0.1], vec![-1.0, 0.3]]
            })
            .collect();
        let targets: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                vec![
                    f32::from(u8::from(i % 2 == 0)),
                    f32::from(u8::from(i % 4 == 0)),
                ]
            })
            .collect();
        let tags = vec!["Мягкая".to_string(), "Скрытый".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            folds: 3,
            frozen_view: true,
            frozen_iterations: 100,
            frozen_lr: 0.05,
            ..LexicalSettings::default()
        };
        let err = fit_lexical(&settings, &tags, &stacks, None, &targets).expect_err("no vectors");
        assert!(err.to_string().contains("review vectors"), "{err}");
        let err = fit_lexical(&settings, &tags, &stacks, Some(&vectors[1..]), &targets)
            .expect_err("one product short");
        assert!(
            err.to_string()
                .contains("review vectors of 23 products for 24 products"),
            "{err}"
        );
        let model = fit_lexical(&settings, &tags, &stacks, Some(&vectors), &targets).expect("fit");
        let second = model.second.as_ref().expect("second stage");
        assert_eq!(second.weights[0].len(), 4, "two views of two tags");
        assert_eq!(model.n_features(), model.first[0].vocabulary.len() + 2);
        let p = model
            .probabilities(&stacks, Some(&vectors))
            .expect("probabilities");
        for (row, t) in p.iter().zip(&targets) {
            assert_eq!(row[0] > 0.5, t[0] > 0.5, "{row:?} for {t:?}");
            assert_eq!(row[1] > 0.5, t[1] > 0.5, "{row:?} for {t:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(loaded.probabilities(&stacks, Some(&vectors)).expect("p"), p);
        // The view needs the second stage.
        let err = LexicalSettings {
            second_stage: false,
            ..settings
        }
        .validate(Path::new("configs/bags.toml"))
        .expect_err("frozen view without the second stage");
        assert_eq!(
            err.to_string(),
            "configs/bags.toml: `lexical.frozen_view` = true: the frozen view needs \
             `second_stage = true`"
        );
    }

    #[test]
    fn a_corrupt_weights_file_names_the_file() {
        let texts = docs(&["мягкая", "жесткая"]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let tags = vec!["Мягкая".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            ..LexicalSettings::default()
        };
        let model =
            fit_lexical(&settings, &tags, &stacks, None, &[vec![1.0], vec![0.0]]).expect("fit");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        std::fs::write(dir.path().join(LEXICAL_WEIGHTS_FILE), b"not safetensors").expect("write");
        let err = LexicalModel::load(dir.path()).expect_err("corrupt");
        assert!(err.to_string().contains(LEXICAL_WEIGHTS_FILE), "{err}");
    }
}
