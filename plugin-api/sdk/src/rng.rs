//! Randomness for augmentors: the host's per-batch seed, drawn with the plugin API's SplitMix64.
//!
//! Augmentors run on several threads at once; libtorch's global generator would make their
//! output depend on scheduling. The host passes a seed per batch instead, and this generator
//! turns it into reproducible draws, as CPU tensors when batched operations need them.

use gymnos_plugin_api::rng::SplitMix64;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0.next_f64()
    }

    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// A float32 CPU tensor of standard normal draws (Box-Muller, both values of each pair).
    pub fn normal(&mut self, shape: &[i64]) -> Tensor {
        let n = shape.iter().product::<i64>().max(0) as usize;
        let mut draws = Vec::with_capacity(n + 1);
        while draws.len() < n {
            let u1 = self.next_f64().max(f64::MIN_POSITIVE);
            let (sin, cos) = (std::f64::consts::TAU * self.next_f64()).sin_cos();
            let r = (-2.0 * u1.ln()).sqrt();
            draws.push((r * cos) as f32);
            draws.push((r * sin) as f32);
        }
        draws.truncate(n);
        Tensor::from_slice(&draws).view(shape)
    }

    /// A float32 CPU tensor of uniform draws in `[low, high)`.
    pub fn uniform_tensor(&mut self, shape: &[i64], low: f64, high: f64) -> Tensor {
        let n = shape.iter().product::<i64>().max(0) as usize;
        let draws: Vec<f32> = (0..n).map(|_| self.uniform(low, high) as f32).collect();
        Tensor::from_slice(&draws).view(shape)
    }

    /// A boolean CPU tensor of `n` independent draws that are true with probability `p`.
    pub fn bernoulli_mask(&mut self, n: i64, p: f64) -> Tensor {
        let draws: Vec<bool> = (0..n.max(0)).map(|_| self.next_f64() < p).collect();
        Tensor::from_slice(&draws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_sound_distributions() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(1);
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mask = Rng::new(3).bernoulli_mask(1000, 0.25);
        let ones = mask.to_kind(tch::Kind::Float).sum(tch::Kind::Float).double_value(&[]);
        assert!((ones - 250.0).abs() < 50.0, "ones {ones}");
        let z = Rng::new(4).normal(&[100, 101]);
        assert_eq!(z.size(), [100, 101]);
        assert!(z.mean(tch::Kind::Float).double_value(&[]).abs() < 0.05);
        assert!((z.std(false).double_value(&[]) - 1.0).abs() < 0.05);
        let u = Rng::new(5).uniform_tensor(&[1000], -2.0, 2.0);
        assert!(u.min().double_value(&[]) >= -2.0 && u.max().double_value(&[]) < 2.0);
    }
}
