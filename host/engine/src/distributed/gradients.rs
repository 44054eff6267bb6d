//! Gradients averaged across the ranks after each backward pass, as PyTorch's DDP does: the
//! parameters' gradients, in the optimizer's order, are copied into buckets of at most
//! [`BUCKET_BYTES`] per dtype, each bucket is summed across the ranks in one all-reduce, and the
//! sums are copied back. Each rank first scales its gradients by its share of the global batch
//! (its samples over the batch's), so the sum is the gradient of the global batch's mean loss,
//! even when the last batch does not split evenly.
//!
//! A parameter that got no gradient on some rank (a branch its batch did not reach) gets the
//! others' (zeros from that rank), and a parameter that got none on any rank stays without one,
//! so every rank's optimizer updates the same parameters.

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::DataParallel;

/// The most bytes one all-reduce carries (DDP's default bucket cap).
pub const BUCKET_BYTES: i64 = 25 << 20;

/// The model's parameters, and the buckets their gradients travel in.
pub struct GradientSync {
    params: Vec<Tensor>,
    /// Indices into `params`, each bucket one dtype and device.
    buckets: Vec<Vec<usize>>,
}

impl GradientSync {
    /// Buckets for `params` (shallow handles on the model's parameters).
    pub fn new(params: Vec<Tensor>) -> Self {
        let mut buckets: Vec<(Kind, Device, i64, Vec<usize>)> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let bytes = p.numel() as i64 * p.kind().elt_size_in_bytes() as i64;
            let open = buckets.iter_mut().rev().find(|b| b.0 == p.kind() && b.1 == p.device());
            match open {
                Some(bucket) if bucket.2 + bytes <= BUCKET_BYTES || bucket.3.is_empty() => {
                    bucket.2 += bytes;
                    bucket.3.push(i);
                }
                _ => buckets.push((p.kind(), p.device(), bytes, vec![i])),
            }
        }
        Self { params, buckets: buckets.into_iter().map(|b| b.3).collect() }
    }

    /// Replaces every parameter's gradient by the global batch's: `share` is this rank's part
    /// of it (its samples over the global batch's).
    pub fn reduce(&self, dp: &DataParallel, share: f64) -> Result<()> {
        // Which parameters have a gradient on any rank.
        let has: Vec<f64> = self.params.iter().map(|p| if p.grad().defined() { 1.0 } else { 0.0 }).collect();
        let mut any = has.clone();
        dp.sum_values(&mut any)?;
        tch::no_grad(|| -> Result<()> {
            for bucket in &self.buckets {
                let members: Vec<usize> = bucket.iter().copied().filter(|&i| any[i] > 0.0).collect();
                if members.is_empty() {
                    continue;
                }
                let flat: Vec<Tensor> = members
                    .iter()
                    .map(|&i| {
                        let grad = self.params[i].grad();
                        match grad.defined() {
                            true => grad.reshape([-1]),
                            false => Tensor::zeros(
                                [self.params[i].numel() as i64],
                                (self.params[i].kind(), self.params[i].device()),
                            ),
                        }
                    })
                    .collect();
                let buffer = Tensor::cat(&flat, 0) * share;
                dp.sum(&buffer)?;
                let mut offset = 0;
                for &i in &members {
                    let p = &self.params[i];
                    let n = p.numel() as i64;
                    let reduced = buffer.narrow(0, offset, n).view_as(p);
                    offset += n;
                    let mut grad = p.grad();
                    if grad.defined() {
                        grad.copy_(&reduced);
                    } else {
                        // A gradient laid out like its parameter, as backward would store it.
                        let mut fresh = p.zeros_like();
                        fresh.copy_(&reduced);
                        crate::fused::set_grad(p, &fresh).map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                }
            }
            Ok(())
        })
    }
}
