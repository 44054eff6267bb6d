//! Building blocks of preprocessors that fit batch by batch (SDK 1.2,
//! [`crate::IncrementalPreprocessor`]).

use std::sync::{Mutex, PoisonError};

use tch::{Kind, Tensor};

/// State that `transform` reads on several loader threads at once. A `tch::Tensor` is `Send`
/// but not `Sync`: each reader takes its own handle to the same storage (a shallow clone) under
/// the lock and computes outside it; the storage is only ever read.
pub struct Shared<T>(Mutex<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    /// Reads the value under the lock (keep `f` short: take shallow clones).
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The value, without locking: `&mut self` excludes every other user.
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Count, mean and sum of squared deviations from the mean (`m2`) of values seen so far,
/// merged batch by batch exactly (Chan, Golub and LeVeque's pairwise update), so that a fit on
/// batches gives the mean and variance of a fit on the whole split. `mean` and `m2` have one
/// element per statistic (a feature, a channel); compute them in `float64`.
pub struct Moments {
    /// Values behind each element of `mean`.
    pub count: i64,
    pub mean: Tensor,
    pub m2: Tensor,
}

impl Moments {
    /// The moments of `values` (`[n, ...]`) over its first dimension, in float64: `mean` and
    /// `m2` have the shape of one row (SDK 1.3).
    pub fn of_rows(values: &Tensor) -> Moments {
        let mean = values.mean_dim(0, false, Kind::Double);
        let m2 = (values.to_kind(Kind::Double) - &mean).square().sum_dim_intlist(0, false, Kind::Double);
        Moments { count: values.size()[0], mean, m2 }
    }

    /// These moments and those of another set of values, as one.
    pub fn merge(self, other: Moments) -> Moments {
        let total = self.count + other.count;
        let (na, nb, n) = (self.count as f64, other.count as f64, total as f64);
        let delta = &other.mean - &self.mean;
        Moments {
            count: total,
            mean: &self.mean + &delta * (nb / n),
            m2: self.m2 + other.m2 + delta.square() * (na * nb / n),
        }
    }

    /// `other` merged into `moments`, or `other` alone when there are none yet.
    pub fn merged(moments: Option<Moments>, other: Moments) -> Moments {
        match moments {
            Some(moments) => moments.merge(other),
            None => other,
        }
    }

    /// The population standard deviation (divided by the count).
    pub fn std(&self) -> Tensor {
        (&self.m2 / self.count as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn merged_batches_give_the_moments_of_the_whole() {
        let x = (Tensor::randn([101, 3], (Kind::Double, Device::Cpu)) * 7.0 + 1e4).to_kind(Kind::Double);
        let whole = Moments::of_rows(&x);
        let batched = [0, 13, 50, 51, 101]
            .windows(2)
            .map(|w| Moments::of_rows(&x.narrow(0, w[0], w[1] - w[0])))
            .fold(None, |acc, batch| Some(Moments::merged(acc, batch)))
            .unwrap();
        assert_eq!(batched.count, 101);
        assert!(batched.mean.allclose(&whole.mean, 1e-12, 1e-9, false));
        assert!(batched.std().allclose(&whole.std(), 1e-9, 1e-9, false));
        assert!(whole.std().allclose(&x.std_dim(0, false, false), 1e-12, 1e-12, false));
    }
}
