//! Layer operations faster than tch's on the CPU (SDK 1.3).
//!
//! libtorch draws a dropout mask on the CPU one Mersenne Twister number per element, on one
//! thread: for the MLP of the benchmarks (128 × 256 activations) that is 18 % of a training
//! step (BENCHMARKS.md). [`dropout`] draws one seed from libtorch's generator per call, so a
//! run stays a function of its seed, and expands it with a keyed 32-bit hash of each element's
//! index, written straight into the mask's memory in a vectorised loop: about ten times faster.
//! Elsewhere (a GPU, where libtorch's fused kernel is the fast one, and other dtypes) it is
//! libtorch's dropout.

use gymnos_plugin_api::rng::SplitMix64;
use tch::{Device, Kind, Tensor};

/// Inverted dropout, as `x.dropout(p, train)` computes it: in training each element is zeroed
/// with probability `p` and the others scaled by `1 / (1 - p)`; otherwise `x` itself. The
/// gradient flows through the same mask. Deterministic after `tch::manual_seed`, like libtorch's,
/// though the masks themselves differ from libtorch's.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    let fast = p > 0.0 && p < 1.0 && x.device() == Device::Cpu && x.kind() == Kind::Float && x.numel() > 0;
    if !fast {
        return x.dropout(p, train);
    }
    x * dropout_mask(&x.size(), p, draw_seed())
}

/// One 64-bit seed from libtorch's default CPU generator (what `tch::manual_seed` sets).
fn draw_seed() -> u64 {
    Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64
}

/// A contiguous float32 CPU tensor of `size` holding 0 with probability `p` and `1 / (1 - p)`
/// otherwise, drawn from `seed`; `0 < p < 1`.
fn dropout_mask(size: &[i64], p: f64, seed: u64) -> Tensor {
    let mask = Tensor::empty(size, (Kind::Float, Device::Cpu));
    let n = mask.numel();
    // SAFETY: `mask` is a fresh contiguous float32 CPU tensor of `n` elements that nothing
    // else references until this function returns it.
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr().cast::<f32>(), n) };
    fill_mask(values, p, seed);
    mask
}

/// Each element is dropped when its 32 random bits fall below `p · 2³²`. The bits of element
/// `i` are a hash of `i` keyed by the seed, so the loop has no carried state and vectorises;
/// the same seed gives the same mask on every machine and instruction set.
fn fill_mask(values: &mut [f32], p: f64, seed: u64) {
    let (threshold, scale) = threshold_and_scale(p);
    // Blocks of 2³² elements, each with its own keys, so that no hash input repeats.
    for (block, values) in values.chunks_mut(1 << 32).enumerate() {
        let keys = Keys::new(seed, block as u64);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { fill_block_avx2(values, keys, threshold, scale) };
            continue;
        }
        fill_block(values, keys, threshold, scale);
    }
}

fn threshold_and_scale(p: f64) -> (u32, f32) {
    ((p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32, (1.0 / (1.0 - p)) as f32)
}

#[derive(Clone, Copy)]
struct Keys(u32, u32);

impl Keys {
    fn new(seed: u64, block: u64) -> Self {
        let mut draws = SplitMix64::new(seed ^ block.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let key = draws.next_u64();
        Self(key as u32, (key >> 32) as u32)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_block_avx2(values: &mut [f32], keys: Keys, threshold: u32, scale: f32) {
    fill_block(values, keys, threshold, scale);
}

#[inline(always)]
fn fill_block(values: &mut [f32], Keys(k0, k1): Keys, threshold: u32, scale: f32) {
    for (i, value) in values.iter_mut().enumerate() {
        let bits = hash32(hash32(i as u32 ^ k0).wrapping_add(k1));
        *value = if bits >= threshold { scale } else { 0.0 };
    }
}

/// A bijective 32-bit mix with low bias (Chris Wellons' `lowbias32`).
#[inline(always)]
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(t: &Tensor) -> i64 {
        t.eq(0.0).sum(Kind::Int64).int64_value(&[])
    }

    #[test]
    fn drops_the_asked_share_and_scales_the_rest() {
        let x = Tensor::ones([1000, 1001], (Kind::Float, Device::Cpu));
        for p in [0.1, 0.5, 0.9] {
            let y = dropout(&x, p, true);
            assert_eq!(y.size(), x.size());
            let share = zeros(&y) as f64 / x.numel() as f64;
            assert!((share - p).abs() < 0.003, "p {p}: dropped {share}");
            let kept = y.masked_select(&y.ne(0.0));
            let scale = (1.0 / (1.0 - p)) as f32 as f64;
            assert_eq!(kept.min().double_value(&[]), scale);
            assert_eq!(kept.max().double_value(&[]), scale);
        }
        // An odd number of elements: the last one is drawn too.
        let odd = Tensor::ones([3, 5], (Kind::Float, Device::Cpu));
        let dropped: i64 = (0..200).map(|_| zeros(&dropout(&odd, 0.5, true).get(2).get(4))).sum();
        assert!((60..140).contains(&dropped), "last element dropped {dropped} times of 200");
    }

    #[test]
    fn neighbours_are_independent_and_every_instruction_set_draws_the_same() {
        let mut mask = vec![0f32; 1 << 20];
        fill_mask(&mut mask, 0.5, 11);
        let both = mask.chunks_exact(2).filter(|pair| pair[0] == 0.0 && pair[1] == 0.0).count();
        let share = both as f64 / (mask.len() / 2) as f64;
        assert!((share - 0.25).abs() < 0.003, "both of a pair dropped: {share}");
        let mut plain = vec![0f32; mask.len()];
        let (threshold, scale) = threshold_and_scale(0.5);
        fill_block(&mut plain, Keys::new(11, 0), threshold, scale);
        assert_eq!(mask, plain);
    }

    #[test]
    fn seeded_by_libtorch_and_new_each_call() {
        let x = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
        tch::manual_seed(7);
        let (a, b) = (dropout(&x, 0.3, true), dropout(&x, 0.3, true));
        tch::manual_seed(7);
        let (c, d) = (dropout(&x, 0.3, true), dropout(&x, 0.3, true));
        assert!(a.equal(&c) && b.equal(&d));
        assert!(!a.equal(&b));
    }

    #[test]
    fn the_gradient_goes_through_the_mask() {
        let x = Tensor::rand([32, 48], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.25, true);
        (&y * 3.0).sum(Kind::Float).backward();
        let mask = &y / &x;
        assert!(x.grad().allclose(&(mask * 3.0), 1e-6, 1e-6, false));
    }

    #[test]
    fn outside_training_and_off_the_fast_path_it_is_libtorchs() {
        let x = Tensor::rand([10, 10], (Kind::Float, Device::Cpu));
        assert!(dropout(&x, 0.5, false).equal(&x));
        assert!(dropout(&x, 0.0, true).equal(&x));
        assert_eq!(zeros(&dropout(&x, 1.0, true)), 100);
        let doubles = Tensor::ones([100, 100], (Kind::Double, Device::Cpu));
        let y = dropout(&doubles, 0.5, true);
        assert_eq!(y.kind(), Kind::Double);
        assert!((zeros(&y) - 5000).abs() < 300);
        let strided = Tensor::ones([40, 60], (Kind::Float, Device::Cpu)).t_();
        let y = dropout(&strided, 0.5, true);
        assert_eq!(y.size(), [60, 40]);
        assert!((zeros(&y) - 1200).abs() < 150);
    }

    /// `cargo test --release -p gymnos-plugin-sdk -- --ignored --nocapture dropout_time`
    #[test]
    #[ignore = "a timing, for BENCHMARKS.md"]
    fn dropout_time() {
        let x = Tensor::rand([128, 256], (Kind::Float, Device::Cpu));
        let time = |f: &dyn Fn() -> Tensor| {
            for _ in 0..100 {
                let _ = f();
            }
            let started = std::time::Instant::now();
            for _ in 0..2000 {
                let _ = f();
            }
            started.elapsed().as_secs_f64() / 2000.0 * 1e6
        };
        println!(
            "dropout of [128, 256]: libtorch {:.1} µs, SDK {:.1} µs",
            time(&|| x.dropout(0.1, true)),
            time(&|| dropout(&x, 0.1, true))
        );
    }
}
