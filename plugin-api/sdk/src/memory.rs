//! Sizes checked before anything is allocated (SDK 1.5). A configuration value or a file's
//! header that would need more memory than this machine has is refused with an error that names
//! the field (or the file) and the bytes it would need, instead of an allocator's abort or
//! libtorch's "can't allocate" from deep inside a forward pass.
//!
//! ```
//! use gymnos_plugin_sdk::memory;
//! // A dense layer of 1,000,000 × 1,000,000 float32 weights.
//! let refused = memory::ensure_fits("hidden[1]", &[1_000_000, 1_000_000], 4).unwrap_err();
//! assert!(refused.message.starts_with("hidden[1]: needs 4.0 TB (4000000000000 bytes)"));
//! memory::ensure_fits("hidden[1]", &[256, 128], 4).unwrap();
//! ```

use crate::{PluginError, Result};

/// The memory this process may use, in bytes: the machine's (`MemTotal`), or its control
/// group's limit when that is lower. `u64::MAX` when neither can be read.
pub fn limit_bytes() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
        let cgroup =
            std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|t| t.trim().parse::<u64>().ok());
        [total, cgroup].into_iter().flatten().min().unwrap_or(u64::MAX)
    })
}

/// The product of `counts` and `bytes_each`, or `None` when it does not fit in 128 bits.
pub fn bytes_of(counts: &[u64], bytes_each: u64) -> Option<u128> {
    counts.iter().try_fold(u128::from(bytes_each), |n, &c| n.checked_mul(u128::from(c)))
}

/// Refuses `what` when `counts` elements of `bytes_each` bytes would not fit in
/// [`limit_bytes`]: `WHAT: needs 4.0 TB (4000000000000 bytes), and this machine has 24.0 GB of
/// memory`.
pub fn ensure_fits(what: &str, counts: &[u64], bytes_each: u64) -> Result<()> {
    ensure_bytes_fit(what, bytes_of(counts, bytes_each))
}

/// [`ensure_fits`] for a size already computed (`None`: it overflowed).
pub fn ensure_bytes_fit(what: &str, bytes: Option<u128>) -> Result<()> {
    let limit = limit_bytes();
    match bytes {
        Some(b) if b <= u128::from(limit) => Ok(()),
        Some(b) => Err(PluginError::config(format!(
            "{what}: needs {} ({b} bytes), and this machine has {} of memory",
            human(b),
            human(u128::from(limit))
        ))),
        None => Err(PluginError::config(format!("{what}: needs more bytes than a 128-bit number counts"))),
    }
}

/// A network's parameters and one sample's layer outputs (float32 values), counted with checked
/// arithmetic as its layers are laid out, before anything is allocated: the first layer at which
/// the total would not fit in [`limit_bytes`] is refused, named by the field that sizes it
/// (`layers[1].units (...): needs 4.4 TB (...)`).
///
/// ```
/// let mut tally = gymnos_plugin_sdk::memory::Tally::default();
/// // A dense layer of 13 -> 32: its weights, its bias and its output.
/// tally.add(|| "hidden[0]".into(), &[&[13, 32], &[32], &[32]]).unwrap();
/// let refused = tally.add(|| "hidden[1]".into(), &[&[1_000_000, 1_000_000]]).unwrap_err();
/// assert!(refused.message.starts_with("hidden[1]: needs 4.0 TB"));
/// ```
#[derive(Debug)]
pub struct Tally(Option<u128>);

impl Default for Tally {
    fn default() -> Self {
        Self(Some(0))
    }
}

impl Tally {
    /// The bytes of a float32 value.
    const BYTES_EACH: u128 = 4;

    /// The bytes counted so far (`None`: more than 128 bits count).
    pub fn bytes(&self) -> Option<u128> {
        self.0.and_then(|t| t.checked_mul(Self::BYTES_EACH))
    }

    /// Adds the products of `counts` (numbers of values) and checks the total so far, naming
    /// `what` if it does not fit. A negative count is counted as too many.
    pub fn add(&mut self, what: impl FnOnce() -> String, counts: &[&[i64]]) -> Result<()> {
        for product in counts {
            let values = product.iter().try_fold(1u128, |n, &d| n.checked_mul(u128::try_from(d).ok()?));
            self.0 = self.0.and_then(|t| t.checked_add(values?));
        }
        match self.bytes() {
            Some(bytes) if bytes <= u128::from(limit_bytes()) => Ok(()),
            bytes => ensure_bytes_fit(&what(), bytes),
        }
    }
}

/// `4.0 TB`, `512.0 MB`: decimal units, one decimal.
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_multiplied_checked_and_compared_with_the_machine() {
        assert_eq!(bytes_of(&[3, 28, 28], 4), Some(9408));
        assert_eq!(bytes_of(&[u64::MAX, u64::MAX, u64::MAX], 4), None);
        assert!(limit_bytes() > 1 << 20, "a machine with some memory");
        ensure_fits("x", &[1024, 1024], 4).unwrap();
        let e = ensure_fits("dataset.config.height", &[u64::MAX, 2], 4).unwrap_err().message.to_string();
        assert!(e.starts_with("dataset.config.height: needs 147.6 EB (147573952589676412920 bytes)"), "{e}");
        let e = ensure_fits("x", &[u64::MAX, u64::MAX, u64::MAX], 4).unwrap_err().message.to_string();
        assert_eq!(e, "x: needs more bytes than a 128-bit number counts");
        assert_eq!(human(999), "999 bytes");
        assert_eq!(human(24_000_000_000), "24.0 GB");
    }
}
