//! Lower-precision projections for the packed encoder: [`Precision`] and the int8 path.
//!
//! In `int8` a projection `out = a · w` runs on the integer dot-product units:
//!
//! - **Weights** are quantised once, per output column, symmetric: `w ≈ qw · sw[c]` with
//!   `qw` in `-127..=127` (`-63..=63` where the kernel may saturate, below), then packed
//!   for the kernel ([`QuantLinear::new`]).
//! - **Activations** are quantised on the fly, per row, onto the row's own range:
//!   `a ≈ (qa − za[r]) · sa[r]` with `qa` a `u8` and a zero point per row
//!   ([`quantise_rows`]).
//! - The product accumulates in `i32` (rten-gemm's `u8 × i8 → i32` kernels, runtime
//!   dispatched: AVX512-VNNI, AVX-VNNI, AVX2, Arm dot product), and the epilogue is fp32:
//!   `out[r][c] (+)= acc[r][c] · sa[r] · sw[c]`. Bias, GELU, residual, attention and layer
//!   norms stay fp32 ([`crate::packed`]).
//!
//! **Saturation.** Without VNNI, x86's `vpmaddubsw` adds two `u8 × i8` products into a
//! saturating `i16` (up to 2 · 255 · 127 = 64,770 > 32,767). Where the chosen kernel may
//! saturate, weights use 7 bits (2 · 255 · 63 = 32,130 fits), as ONNX Runtime's
//! `reduce_range` does.
//!
//! Why rten-gemm (measured, `docs/experiments.md` §18): its kernels ran e5-small's
//! products 2.25–2.4× faster than the `gemm` crate's f32 ones here, quantisation included,
//! and it needs no `unsafe` of ours.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use multiversion::multiversion;
use rayon::prelude::*;
use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix};
use rten_tensor::NdTensorView;
use serde::{Deserialize, Serialize};

/// How the packed encoder multiplies its projections (`runtime.json`'s `precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats throughout (what training uses).
    #[default]
    Fp32,
    /// The four projections of each layer in int8 (see the module doc); the rest fp32.
    Int8,
}

impl Precision {
    /// Every precision offered, in order.
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Int8];

    /// Its name in files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// The kernel this precision's projections run on, on this CPU.
    pub fn kernel(self) -> &'static str {
        match self {
            Precision::Fp32 => "gemm f32",
            Precision::Int8 => KERNEL_NAME.as_str(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Precision`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown precision `{0}` (expected fp32 or int8; bf16 is not offered: see docs/experiments.md §19)"
)]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPrecision(s.to_owned()))
    }
}

thread_local! {
    /// The `u8 × i8 → i32` executor, one per thread (rten-gemm's executor is `Sync` but
    /// not `Send`). Every thread picks the same kernel for this CPU, so weights packed on
    /// one thread multiply on any (rten-gemm checks the kernel's name and refuses a
    /// mismatch).
    static EXECUTOR: GemmExecutor<u8, i8, i32> = GemmExecutor::default();
}

/// The kernel the int8 products run on here.
static KERNEL_NAME: LazyLock<String> =
    LazyLock::new(|| EXECUTOR.with(|e| e.kernel_name().to_owned()));

/// Largest weight magnitude: 7 bits where the kernel may saturate (module doc).
fn weight_limit() -> f32 {
    if EXECUTOR.with(GemmExecutor::may_saturate) {
        63.0
    } else {
        127.0
    }
}

/// A `[k, n]` weight matrix quantised per column and packed for the int8 kernel.
pub struct QuantLinear {
    packed: PackedBMatrix<i8>,
    /// Per column: the weight that `1` stands for.
    scale: Vec<f32>,
    /// Per column: the sum of its quantised weights (for the activations' zero points).
    col_sums: Vec<i32>,
    k: usize,
    n: usize,
}

impl fmt::Debug for QuantLinear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantLinear")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl QuantLinear {
    /// Quantises row-major `w` (`[k, n]`, `k · n` values).
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "weights are not k × n");
        let limit = weight_limit();
        let mut max = vec![0f32; n];
        for row in w.chunks_exact(n.max(1)) {
            max.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m = m.max(v.abs()));
        }
        let scale: Vec<f32> = max
            .iter()
            .map(|&m| if m > 0.0 { m / limit } else { 1.0 })
            .collect();
        let inv: Vec<f32> = max
            .iter()
            .map(|&m| if m > 0.0 { limit / m } else { 1.0 })
            .collect();
        let q: Vec<i8> = w
            .chunks_exact(n.max(1))
            .flat_map(|row| {
                row.iter()
                    .zip(&inv)
                    .map(|(v, i)| round(v * i).clamp(-limit, limit) as i8)
            })
            .collect();
        let mut col_sums = vec![0i32; n];
        for row in q.chunks_exact(n.max(1)) {
            col_sums
                .iter_mut()
                .zip(row)
                .for_each(|(s, &v)| *s += i32::from(v));
        }
        let packed = EXECUTOR.with(|e| e.prepack_b(NdTensorView::from_data([k, n], q.as_slice())));
        Self {
            packed,
            scale,
            col_sums,
            k,
            n,
        }
    }
}

/// Reused buffers of the int8 products.
#[derive(Default)]
pub struct Int8Scratch {
    qa: Vec<u8>,
    sa: Vec<f32>,
    /// Per row: the activations' zero point.
    zero: Vec<u8>,
    acc: Vec<i32>,
}

/// What an int8 product does with its rows once dequantised (while they are in cache):
/// `out = then((add ? out : 0) + a · w + bias)`.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    bias: &'a [f32],
    add: bool,
    then: Option<RowMap<'a>>,
}

/// A function applied in place to a block of whole output rows.
pub type RowMap<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

impl<'a> Epilogue<'a> {
    /// `out = a · w + bias` (`bias`: one value per output column).
    pub fn bias(bias: &'a [f32]) -> Self {
        Self {
            bias,
            add: false,
            then: None,
        }
    }

    /// Added onto what `out` holds (a residual).
    pub fn add(self) -> Self {
        Self { add: true, ..self }
    }

    /// `f` applied, in place, to each block of whole rows afterwards.
    pub fn then(self, f: RowMap<'a>) -> Self {
        Self {
            then: Some(f),
            ..self
        }
    }
}

/// `out[m×n] = epilogue(a[m×k] · w)`, `a` and `out` row-major, in int8 (module doc); on
/// every core of the current rayon pool.
pub fn matmul_int8(
    out: &mut [f32],
    a: &[f32],
    w: &QuantLinear,
    epilogue: Epilogue,
    s: &mut Int8Scratch,
) {
    let (k, n) = (w.k, w.n);
    let m = a.len() / k.max(1);
    assert!(
        a.len() == m * k && out.len() == m * n && epilogue.bias.len() == n,
        "int8 product: a is {} values for k = {k}, out {} for n = {n}",
        a.len(),
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    quantise_rows(a, k, &mut s.qa, &mut s.sa, &mut s.zero);
    // Grown, never cleared: the product overwrites `acc` (beta = 0). (Running the product
    // in blocks of rows that keep `acc` in cache was slower: 5,000–5,400 against 6,900
    // tokens/s, docs/experiments.md §19.)
    if s.acc.len() < m * n {
        s.acc.resize(m * n, 0);
    }
    let acc = &mut s.acc[..m * n];
    // No zero points given to the kernel: `acc` is `Σ qa · qw`, and the epilogue takes off
    // `za · Σ qw` itself. (rten-gemm 0.25's packing of A gives every panel of rows the
    // zero points of the first one: harmless with one zero point for all rows, wrong with
    // one per row. docs/experiments.md §19.)
    EXECUTOR
        .with(|e| {
            e.gemm(
                acc,
                GemmInputA::Unpacked(NdTensorView::from_data([m, k], s.qa.as_slice())),
                GemmInputB::Packed(&w.packed),
                GemmOptions::default(),
            )
        })
        // Shapes are checked above and the packing is this kernel's: an error here is a
        // bug of ours, not of the input.
        .expect("int8 product: shapes agree");
    let rows = (ROWS_PER_TASK * 1024 / n).max(1);
    let cols = Columns {
        scale: &w.scale,
        sums: &w.col_sums,
        bias: epilogue.bias,
    };
    out.par_chunks_mut(rows * n)
        .zip(acc.par_chunks(rows * n))
        .zip(s.sa.par_chunks(rows).zip(s.zero.par_chunks(rows)))
        .for_each(|((o, acc), (sa, za))| {
            dequantise_rows(o, acc, sa, za, cols, epilogue.add);
            if let Some(f) = epilogue.then {
                f(o);
            }
        });
}

/// Rows per parallel task of quantising (×1024 values for the epilogue).
const ROWS_PER_TASK: usize = 32;

/// Each `k`-wide row of `a` quantised per row onto all 256 `u8` values:
/// `qa = round(a / sa) + za`, with `sa = (max − min) / 255` over the row's range widened
/// to hold 0, and `za = round(−min / sa)`, so 0 is exact (1 and 0 for an all-zero row).
/// Asymmetric, because the feed-forward block's input is GELU's output (≥ −0.17): a
/// symmetric scale would leave its negative half of the codes nearly unused (pooled
/// vectors against fp32, 1,853 real reviews: median cosine 0.99963 against 0.99911
/// symmetric, min 0.99933 against 0.99808; docs/experiments.md §19).
pub fn quantise_rows(a: &[f32], k: usize, qa: &mut Vec<u8>, sa: &mut Vec<f32>, za: &mut Vec<u8>) {
    let m = a.len() / k.max(1);
    // Every element is written below: resized, not cleared.
    qa.resize(m * k, 0);
    sa.resize(m, 1.0);
    za.resize(m, 0);
    qa.par_chunks_mut(ROWS_PER_TASK * k)
        .zip(sa.par_chunks_mut(ROWS_PER_TASK))
        .zip(za.par_chunks_mut(ROWS_PER_TASK))
        .zip(a.par_chunks(ROWS_PER_TASK * k))
        .for_each(|(((q, s), z), a)| quantise_chunk(a, k, q, s, z));
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::manual_clamp)] // `clamp` checks for NaN per element: not vectorised
fn quantise_chunk(a: &[f32], k: usize, q: &mut [u8], s: &mut [f32], z: &mut [u8]) {
    // 1.5 · 2²³: adding it to `x` (0 ≤ x ≤ 255) leaves `round(x)` in the low byte of the
    // sum's bits, a conversion that vectorises (`as u8` from f32 saturates element by
    // element).
    const MAGIC: f32 = 12_582_912.0;
    for (((row, q), s), z) in a.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(s).zip(z) {
        let (min, max) = min_max(row);
        let (min, max) = (min.min(0.0), max.max(0.0));
        let (scale, inv) = if max > min {
            ((max - min) / 255.0, 255.0 / (max - min))
        } else {
            (1.0, 1.0)
        };
        let zero = round(-min * inv).clamp(0.0, 255.0);
        for (q, v) in q.iter_mut().zip(row) {
            let x = v.mul_add(inv, zero);
            // Plain comparisons (they vectorise); NaN stays NaN and gives some code.
            let x = if x < 0.0 {
                0.0
            } else if x > 255.0 {
                255.0
            } else {
                x
            };
            *q = (x + MAGIC).to_bits() as u8;
        }
        *s = scale;
        *z = zero as u8;
    }
}

/// The smallest and largest element of `x` (0 and 0 when empty; NaN ignored), in
/// sixteen lanes of plain comparisons so it vectorises (`f32::min`'s NaN rule keeps it
/// scalar).
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let chunks = x.chunks_exact(16);
    let (mut tlo, mut thi) = (0f32, 0f32);
    for &v in chunks.remainder() {
        tlo = if v < tlo { v } else { tlo };
        thi = if v > thi { v } else { thi };
    }
    for c in chunks {
        for l in 0..16 {
            lo[l] = if c[l] < lo[l] { c[l] } else { lo[l] };
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    (
        lo.iter().fold(tlo, |m, &v| if v < m { v } else { m }),
        hi.iter().fold(thi, |m, &v| if v > m { v } else { m }),
    )
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn dequantise_rows(out: &mut [f32], acc: &[i32], sa: &[f32], za: &[u8], cols: Columns, add: bool) {
    let n = cols.scale.len();
    let rows = out.chunks_exact_mut(n).zip(acc.chunks_exact(n));
    for ((o, acc), (sa, za)) in rows.zip(sa.iter().zip(za)) {
        let za = i32::from(*za);
        let cols = cols.scale.iter().zip(cols.sums).zip(cols.bias);
        if add {
            for ((o, a), ((w, sum), b)) in o.iter_mut().zip(acc).zip(cols) {
                *o += ((a - za * sum) as f32).mul_add(sa * w, *b);
            }
        } else {
            for ((o, a), ((w, sum), b)) in o.iter_mut().zip(acc).zip(cols) {
                *o = ((a - za * sum) as f32).mul_add(sa * w, *b);
            }
        }
    }
}

/// What the epilogue reads per output column.
#[derive(Clone, Copy)]
struct Columns<'a> {
    scale: &'a [f32],
    sums: &'a [i32],
    bias: &'a [f32],
}

/// Round half to even for `|x| < 2²²`, in two additions that vectorise (`f32::round` is a
/// libm call per element at the baseline target: measured 10× slower, §18).
#[inline(always)]
fn round(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (x + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), values in -1..1.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..k {
                let x = a[r * k + j] as f64;
                for c in 0..n {
                    out[r * n + c] += x * w[j * n + c] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn int8_product_is_close_to_the_f64_one() {
        let (m, k, n) = (37, 96, 70);
        // Rows shifted by different amounts, so their zero points differ (rten-gemm's
        // per-row zero points went wrong past the first panel of rows).
        let a: Vec<f32> = values(m * k, 7)
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i / k) % 5) as f32 * 0.3)
            .collect();
        let mut w = values(k * n, 11);
        // One column of large weights and one of zeros: per-column scales must cope.
        for j in 0..k {
            w[j * n] *= 50.0;
            w[j * n + 1] = 0.0;
        }
        let q = QuantLinear::new(&w, k, n);
        let mut out = vec![0f32; m * n];
        let zero = vec![0f32; n];
        matmul_int8(
            &mut out,
            &a,
            &q,
            Epilogue::bias(&zero),
            &mut Int8Scratch::default(),
        );
        let want = reference(&a, &w, m, k, n);
        for c in 0..n {
            let col = |v: &dyn Fn(usize) -> f64| (0..m).map(|r| v(r * n + c)).collect::<Vec<_>>();
            let got = col(&|i| out[i] as f64);
            let exp = col(&|i| want[i]);
            let norm = exp.iter().map(|v| v * v).sum::<f64>().sqrt();
            let err = got
                .iter()
                .zip(&exp)
                .map(|(g, e)| (g - e).powi(2))
                .sum::<f64>()
                .sqrt();
            if c == 1 {
                assert_eq!(err, 0.0, "a zero column gives zeros");
            } else {
                assert!(
                    err <= 0.01 * norm,
                    "column {c}: error {err} against norm {norm}"
                );
            }
        }
    }

    #[test]
    fn int8_product_adds_bias_and_residual_and_applies_then() {
        let (m, k, n) = (5, 16, 8);
        let a = values(m * k, 3);
        let w = values(k * n, 5);
        let q = QuantLinear::new(&w, k, n);
        let mut s = Int8Scratch::default();
        let zero = vec![0f32; n];
        let bias: Vec<f32> = (0..n).map(|c| c as f32).collect();
        let mut plain = vec![0f32; m * n];
        matmul_int8(&mut plain, &a, &q, Epilogue::bias(&zero), &mut s);
        let mut added = vec![10f32; m * n];
        matmul_int8(&mut added, &a, &q, Epilogue::bias(&bias).add(), &mut s);
        for (i, (p, a)) in plain.iter().zip(&added).enumerate() {
            assert!((p + 10.0 + (i % n) as f32 - a).abs() < 1e-4);
        }
        let mut replaced = vec![10f32; m * n];
        matmul_int8(&mut replaced, &a, &q, Epilogue::bias(&zero), &mut s);
        assert_eq!(replaced, plain);
        let double = |rows: &mut [f32]| rows.iter_mut().for_each(|v| *v *= 2.0);
        let mut then = vec![0f32; m * n];
        matmul_int8(
            &mut then,
            &a,
            &q,
            Epilogue::bias(&zero).then(&double),
            &mut s,
        );
        let twice: Vec<f32> = plain.iter().map(|v| v * 2.0).collect();
        assert_eq!(then, twice);
    }

    #[test]
    fn quantised_rows_use_the_rows_range_and_keep_zero_exact() {
        let a = [0.0, 1.25, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 3.0, 5.1];
        let (mut q, mut s, mut z) = (Vec::new(), Vec::new(), Vec::new());
        quantise_rows(&a, 4, &mut q, &mut s, &mut z);
        // Row 0: range −1..1.25, 1 = 0.1¯ (2.25 / 255 = 0.008824); zero at 1 / that =
        // 113.33 → 113. Row 1 all zero: scale 1, zero 0. Row 2 all positive: the range
        // is widened to 0..5.1, zero point 0.
        assert!((s[0] - 2.25 / 255.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s[1], z[1]), (1.0, 0));
        assert!((s[2] - 5.1 / 255.0).abs() < 1e-9, "{s:?}");
        assert_eq!(z, vec![113, 0, 0]);
        assert_eq!(&q[..4], &[113, 255, 0, 170]); // 113 + 0.5 / s = 113 + 56.67 → 170
        assert_eq!(&q[4..8], &[0, 0, 0, 0]);
        assert_eq!(&q[8..], &[100, 50, 150, 255]);
        // Dequantised, every value is back within half a step.
        for r in 0..3 {
            for c in 0..4 {
                let back = (q[r * 4 + c] as f32 - z[r] as f32) * s[r];
                assert!((back - a[r * 4 + c]).abs() <= s[r] / 2.0 + 1e-6);
            }
        }
    }

    #[test]
    fn precision_names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).expect("json"),
                format!("\"{}\"", p.name())
            );
        }
        let err = "bf16".parse::<Precision>().expect_err("not offered");
        assert!(
            err.to_string().starts_with("unknown precision `bf16`"),
            "{err}"
        );
    }
}
