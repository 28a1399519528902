//! Per-dimension mean and standard deviation of a stream of vectors, summed in f64: the
//! standardisation of the encoder's head and of the frozen view both come from here.

/// Running sums of values and squares, one per dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: usize,
}

impl Moments {
    /// No vectors yet, of width `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
            count: 0,
        }
    }

    /// The width the accumulator was made for.
    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    /// Vectors added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds one vector; its length must be [`Moments::dim`] (callers check it, values past
    /// the width are ignored and missing ones count as nothing).
    pub fn add(&mut self, values: &[f32]) {
        for ((s, q), &v) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(values) {
            let v = f64::from(v);
            *s += v;
            *q += v * v;
        }
        self.count += 1;
    }

    /// The mean per dimension (zeros before any vector).
    pub fn mean(&self) -> Vec<f32> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|s| (s / n) as f32).collect()
    }

    /// The population standard deviation per dimension plus `floor` (so that dividing by
    /// it is safe when `floor > 0`).
    pub fn std(&self, floor: f64) -> Vec<f32> {
        let n = self.count.max(1) as f64;
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() + floor) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_deviation_by_hand() {
        let mut m = Moments::new(2);
        for v in [[1.0, -2.0], [3.0, -2.0], [5.0, -2.0]] {
            m.add(&v);
        }
        assert_eq!(m.count(), 3);
        assert_eq!(m.mean(), [3.0, -2.0]);
        // Population deviation of 1, 3, 5 is sqrt(8/3); a constant has none.
        let std = m.std(0.0);
        assert!((std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6, "{std:?}");
        assert_eq!(std[1], 0.0);
        assert_eq!(m.std(0.5)[1], 0.5);
    }

    #[test]
    fn empty_gives_zeros_not_nan() {
        let m = Moments::new(3);
        assert_eq!(m.dim(), 3);
        assert_eq!(m.mean(), [0.0; 3]);
        assert_eq!(m.std(0.0), [0.0; 3]);
    }
}
