//! A small deterministic random number generator (SplitMix64) for augmentors.
//!
//! Augmentors run on several threads at once; libtorch's global generator would make their
//! output depend on scheduling. The host passes a seed per batch instead, and this generator
//! turns it into reproducible draws.

use tch::Tensor;

#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// A float32 CPU tensor of standard normal draws (Box-Muller).
    pub fn normal(&mut self, shape: &[i64]) -> Tensor {
        let n: i64 = shape.iter().product();
        let draws: Vec<f32> = (0..n)
            .map(|_| {
                let u1 = self.next_f64().max(f64::MIN_POSITIVE);
                let u2 = self.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Tensor::from_slice(&draws).view(shape)
    }

    /// A boolean CPU tensor of `n` independent draws that are true with probability `p`.
    pub fn bernoulli_mask(&mut self, n: i64, p: f64) -> Tensor {
        let draws: Vec<bool> = (0..n).map(|_| self.next_f64() < p).collect();
        Tensor::from_slice(&draws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_uniform_range() {
        let a: Vec<u64> = (0..5).map({ let mut r = Rng::new(7); move |_| r.next_u64() }).collect();
        let b: Vec<u64> = (0..5).map({ let mut r = Rng::new(7); move |_| r.next_u64() }).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(1);
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mask = Rng::new(3).bernoulli_mask(1000, 0.25);
        let ones = mask.to_kind(tch::Kind::Float).sum(tch::Kind::Float).double_value(&[]);
        assert!((ones - 250.0).abs() < 50.0, "ones {ones}");
        let z = Rng::new(4).normal(&[100, 100]);
        assert_eq!(z.size(), [100, 100]);
        assert!(z.mean(tch::Kind::Float).double_value(&[]).abs() < 0.05);
        assert!((z.std(false).double_value(&[]) - 1.0).abs() < 0.05);
    }
}
