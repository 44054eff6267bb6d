//! Arithmetic on shapes that comes from files or configuration, checked: a product that does not
//! fit is an error that names the shape, never a wrapped number.

use crate::{PluginError, Result};

/// The number of elements of `shape` (its product), or an error when a dimension is negative or
/// the product does not fit in an `i64`.
pub fn numel(shape: &[i64]) -> Result<i64> {
    shape
        .iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) })
        .ok_or_else(|| PluginError::config(format!("shape {shape:?} has no element count that fits in 64 bits")))
}

#[cfg(test)]
mod tests {
    use super::numel;

    #[test]
    fn products_are_checked() {
        assert_eq!(numel(&[]).unwrap(), 1);
        assert_eq!(numel(&[3, 28, 28]).unwrap(), 2352);
        assert!(numel(&[1 << 40, 1 << 40]).unwrap_err().to_string().contains("[1099511627776, 1099511627776]"));
        assert!(numel(&[-1, 3]).is_err());
    }
}
