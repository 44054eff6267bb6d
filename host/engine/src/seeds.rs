//! Every random choice of a run derives from the experiment seed through [`derive`], so a run is
//! a pure function of its seed (on one machine), and resuming at an epoch reproduces it exactly.

/// Mixes a seed with a stream name and indices (SplitMix64 finalizer over the combination).
pub fn derive(seed: u64, stream: &str, indices: &[u64]) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for byte in stream.bytes() {
        h = mix(h ^ byte as u64);
    }
    for &i in indices {
        h = mix(h ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A permutation of `0..n` (Fisher-Yates with the SDK's generator).
pub fn permutation(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = gymnos_plugin_sdk::Rng::new(seed);
    let mut order: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Seeds libtorch's generators (CPU and CUDA), which initialisation and dropout draw from.
pub fn seed_torch(seed: u64) {
    // libtorch takes a signed 64-bit seed.
    tch::manual_seed((seed >> 1) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_by_stream_and_index_and_permutations_are_permutations() {
        assert_ne!(derive(1, "epoch", &[0]), derive(1, "epoch", &[1]));
        assert_ne!(derive(1, "epoch", &[0]), derive(1, "augment", &[0]));
        assert_eq!(derive(7, "split", &[]), derive(7, "split", &[]));
        let mut p = permutation(1000, 3);
        assert_ne!(p[..10], (0..10).collect::<Vec<i64>>()[..]);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<i64>>());
    }
}
