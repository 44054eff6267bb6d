//! Memory layout of image tensors (SDK 1.2). libtorch's convolutions run much faster on the
//! CPU (about twice, for a small CNN on two cores; BENCHMARKS.md) when activations and
//! convolution weights are stored channels-last (NHWC) rather than contiguous (NCHW). The
//! shape, and so every index and result, stays the same; only the order in memory changes, and
//! a convolution's output keeps its input's order. tch has no memory-format argument, so the
//! order is set through strides.

use tch::{nn, Tensor};

/// The strides of a channels-last `[n, c, h, w]` tensor, as libtorch writes them: also for one
/// channel, where `c`'s stride could be anything, it must be 1 for libtorch to recognise the
/// order (a first convolution's weight `[k, 1, 3, 3]` decides its output's order).
fn channels_last_strides(size: &[i64]) -> Vec<i64> {
    let (c, h, w) = (size[1], size[2], size[3]);
    vec![h * w * c, 1, w * c, c]
}

/// `t` ([n, c, h, w]) stored channels-last; other ranks are returned as they are.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let size = t.size();
    let nhwc = t.permute([0, 2, 3, 1]).contiguous();
    nhwc.as_strided(size.as_slice(), channels_last_strides(&size).as_slice(), None)
}

/// Whether `t` is stored channels-last (a 4-D tensor whose channels vary fastest).
pub fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && t.stride() == channels_last_strides(&t.size())
}

/// Stores every 4-D variable of `vs` (convolution weights) channels-last, in place: the
/// variables keep their names, values and gradient tracking.
pub fn var_store_to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                let stored = to_channels_last(&var);
                var.set_data(&stored);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn channels_last_keeps_shape_and_values_and_changes_only_the_order_in_memory() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let y = to_channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert!(y.equal(&x));
        assert_eq!(y.stride(), [60, 1, 15, 3]);
        let one_channel = to_channels_last(&Tensor::ones([2, 1, 3, 3], (Kind::Float, Device::Cpu)));
        assert_eq!(one_channel.stride(), [9, 1, 3, 1], "as libtorch's own channels-last");
        assert!(is_channels_last(&y) && !is_channels_last(&x));
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root() / "conv", 3, 8, 3, Default::default());
        let (before, reference) = (conv.ws.copy(), x.apply(&conv));
        var_store_to_channels_last(&vs);
        let after = &vs.variables()["conv.weight"];
        assert!(is_channels_last(after) && after.equal(&before) && after.requires_grad());
        let out = y.apply(&conv);
        assert!(is_channels_last(&out), "a convolution keeps its input's order");
        assert!(out.allclose(&reference, 1e-5, 1e-6, false));
    }
}
