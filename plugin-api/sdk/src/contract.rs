//! The contracts the host relies on when it runs plugins, as checks: the engine calls them on
//! what data sets and augmentors hand it, and [`crate::harness`] calls them in authors' tests.

use gymnos_plugin_api::{DatasetInfo, Task};
use tch::{Device, Kind, Tensor};

/// What a failed check says: the contract broken, and how.
pub type Check<T = ()> = Result<T, String>;

pub(crate) fn ensure(ok: bool, message: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// The data set contract for one split (or batch): non-empty CPU tensors, as many targets as
/// feature rows, features of the declared shape, and targets as the task wants them (class
/// indices within the declared classes, one name per class; or float values
/// `[n, num_outputs]`). Returns the number of samples.
pub fn check_split(info: &DatasetInfo, x: &Tensor, y: &Tensor, name: &str) -> Check<i64> {
    let n = x.size().first().copied().unwrap_or(0);
    ensure(n > 0, || format!("{name}: no samples"))?;
    ensure(x.device() == Device::Cpu && y.device() == Device::Cpu, || format!("{name}: tensors must be on the CPU"))?;
    ensure(y.size().first() == Some(&n), || format!("{name}: {n} feature rows but targets {:?}", y.size()))?;
    ensure(x.size()[1..] == info.feature_shape[..], || {
        format!("{name}: features {:?}, declared feature_shape {:?}", x.size(), &info.feature_shape[..])
    })?;
    match info.task {
        Task::Classification => {
            ensure(y.kind() == Kind::Int64 && y.dim() == 1, || {
                format!("{name}: classification targets must be int64 [n], got {:?} {:?}", y.kind(), y.size())
            })?;
            let (lo, hi) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
            ensure(lo >= 0 && hi < info.num_outputs, || {
                format!("{name}: labels span [{lo}, {hi}] for {} classes", info.num_outputs)
            })?;
            ensure(info.class_names.len() as i64 == info.num_outputs, || {
                format!("{} class names for {} classes", info.class_names.len(), info.num_outputs)
            })?;
        }
        Task::Regression => {
            ensure(y.is_floating_point() && y.size() == [n, info.num_outputs], || {
                format!(
                    "{name}: regression targets must be float [n, {}], got {:?} {:?}",
                    info.num_outputs,
                    y.kind(),
                    y.size()
                )
            })?;
        }
    }
    Ok(n)
}

/// The augmentor contract for one batch, by shapes and types (it runs for every training
/// batch, so it reads no values): as many samples as given, and targets as the data set's or,
/// for classification, soft targets `float [n, num_outputs]`.
pub fn check_augmented(task: Task, num_outputs: i64, n: i64, x: &Tensor, y: &Tensor) -> Check {
    ensure(x.size().first() == Some(&n) && y.size().first() == Some(&n), || {
        format!("returned {:?} features and {:?} targets for a batch of {n}", x.size().first(), y.size().first())
    })?;
    let soft = y.is_floating_point() && y.size() == [n, num_outputs];
    match task {
        Task::Classification => ensure((y.kind() == Kind::Int64 && y.dim() == 1) || soft, || {
            format!(
                "returned targets {:?} {:?}; classification targets are int64 [n] or soft float [n, {num_outputs}]",
                y.kind(),
                y.size()
            )
        }),
        Task::Regression => ensure(soft, || {
            format!("returned targets {:?} {:?}; regression targets are float [n, {num_outputs}]", y.kind(), y.size())
        }),
    }
}

/// Soft classification targets are probability rows: each sums to 1 (mixing augmentors).
pub fn check_soft_targets(y: &Tensor) -> Check {
    let sums = y.sum_dim_intlist(1, false, Kind::Double);
    let off = (sums - 1.0).abs().max().double_value(&[]);
    ensure(off < 1e-4, || format!("soft targets must be rows that sum to 1 (off by {off})"))?;
    ensure(y.min().double_value(&[]) >= 0.0, || "soft targets must not be negative".into())
}
