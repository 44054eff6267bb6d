//! SGD (momentum, Nesterov), Adam and AdamW, written over the model's parameter tensors.
//! The host owns them (rather than libtorch's C++ optimizers) so that their state is plain
//! named tensors that checkpoints save and `resume` restores exactly.
//!
//! A step runs libtorch's fused multi-tensor kernels (see `fused`): one call per device/dtype
//! group instead of ~10 tch ops per parameter. Parameters those kernels cannot take (other
//! devices or dtypes, sparse or non-contiguous tensors) go through `reference_step`, the
//! per-parameter code the fused path is tested against.

use anyhow::{bail, Result};
use gymnos_host::experiment::{AdamSettings, AdamwSettings, Optimizer as Settings, SgdSettings};
use tch::{Device, Kind, Tensor};

use crate::fused;

struct Param {
    name: String,
    value: Tensor,
    /// SGD: momentum buffer. Adam: first moment.
    m: Option<Tensor>,
    /// Adam: second moment.
    v: Option<Tensor>,
}

pub struct Optimizer {
    settings: Settings,
    params: Vec<Param>,
    /// Updates done so far (Adam's bias correction).
    pub steps: u64,
    /// Per device, a float32 scalar holding `steps`: the fused Adam kernels' `state_steps`.
    /// They only read it, so the device's parameters share one; it is refilled from `steps`
    /// each update, so nothing about it needs saving or restoring.
    step_tensors: Vec<(Device, Tensor)>,
    /// Runs `reference_step` for every parameter (tests, benchmarks, or after a fused failure).
    reference_only: bool,
}

/// Parameters updated by one fused call: same device, dtype and (SGD) first-step state.
struct Group {
    device: Device,
    kind: Kind,
    first_step: bool,
    members: Vec<(usize, Tensor)>,
}

impl Optimizer {
    pub fn new(settings: Settings, params: Vec<(String, Tensor)>) -> Self {
        let params = params.into_iter().map(|(name, value)| Param { name, value, m: None, v: None }).collect();
        Self { settings, params, steps: 0, step_tensors: Vec::new(), reference_only: false }
    }

    /// Clears the gradients before a step's backward pass: drops them, so that backward stores
    /// fresh ones (a parameter it does not reach then has none and is not updated, as in
    /// PyTorch); zeroes them if the shim cannot.
    pub fn zero_grad(&mut self) {
        let params: Vec<&Tensor> = self.params.iter().map(|p| &p.value).collect();
        if fused::drop_grads(&params).is_err() {
            for p in &mut self.params {
                p.value.zero_grad();
            }
        }
    }

    /// The parameters' global L2 gradient norm, scaled down to `max_norm` when above it.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let total = tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().square()).collect();
            Tensor::stack(&norms, 0).sum(tch::Kind::Float).sqrt().double_value(&[])
        });
        if total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps;
        tch::no_grad(|| {
            let mut groups: Vec<Group> = Vec::new();
            for (i, p) in self.params.iter_mut().enumerate() {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                if self.reference_only || !fusable(&self.settings, p, &grad) {
                    reference_step(&self.settings, p, grad, lr, t);
                    continue;
                }
                let first_step = prepare_state(&self.settings, p);
                let (device, kind) = (p.value.device(), p.value.kind());
                match groups.iter_mut().find(|g| g.device == device && g.kind == kind && g.first_step == first_step) {
                    Some(group) => group.members.push((i, grad)),
                    None => groups.push(Group { device, kind, first_step, members: vec![(i, grad)] }),
                }
            }
            for group in groups {
                if let Err(e) = self.fused_step(&group, lr, t) {
                    // The shim validates everything before a kernel runs and the kernels fail
                    // (unsupported dtype or device) before writing, so the group is still
                    // untouched: update it the reference way, and stop trying the fused path.
                    tracing::warn!("{e}; using the per-parameter optimizer from now on");
                    self.reference_only = true;
                    for (i, grad) in group.members {
                        reference_step(&self.settings, &mut self.params[i], grad, lr, t);
                    }
                }
            }
        });
    }

    fn fused_step(&mut self, group: &Group, lr: f64, t: u64) -> Result<(), fused::FusedError> {
        let params: Vec<&Param> = group.members.iter().map(|(i, _)| &self.params[*i]).collect();
        let values: Vec<&Tensor> = params.iter().map(|p| &p.value).collect();
        let grads: Vec<&Tensor> = group.members.iter().map(|(_, g)| g).collect();
        // `prepare_state` materialised the state the settings need.
        let ms = || params.iter().filter_map(|p| p.m.as_ref()).collect::<Vec<_>>();
        match &self.settings {
            &Settings::Sgd(SgdSettings { momentum, nesterov, weight_decay, .. }) => {
                let bufs = if momentum > 0.0 { ms() } else { Vec::new() };
                let hp = fused::Sgd {
                    lr,
                    momentum: momentum.max(0.0),
                    nesterov: nesterov && momentum > 0.0,
                    weight_decay: weight_decay.max(0.0),
                };
                fused::sgd(&values, &grads, &bufs, hp, group.first_step)
            }
            Settings::Adam(AdamSettings { betas, eps, weight_decay, .. })
            | Settings::Adamw(AdamwSettings { betas, eps, weight_decay, .. }) => {
                let hp = fused::Adam {
                    lr,
                    betas: *betas,
                    eps: *eps,
                    weight_decay: weight_decay.max(0.0),
                    decoupled: matches!(self.settings, Settings::Adamw(_)),
                };
                let vs: Vec<&Tensor> = params.iter().filter_map(|p| p.v.as_ref()).collect();
                let step = step_tensor(&mut self.step_tensors, group.device, t);
                let steps = vec![step; values.len()];
                fused::adam(&values, &grads, &ms(), &vs, &steps, hp)
            }
        }
    }

    /// The optimizer's state as named tensors (`<param>.m`, `<param>.v`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            if let Some(m) = &p.m {
                out.push((format!("{}.m", p.name), m.shallow_clone()));
            }
            if let Some(v) = &p.v {
                out.push((format!("{}.v", p.name), v.shallow_clone()));
            }
        }
        out
    }

    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: u64) -> Result<()> {
        for (name, t) in tensors {
            let (param, slot) = name.rsplit_once('.').unwrap_or((name, ""));
            let Some(p) = self.params.iter_mut().find(|p| p.name == param) else {
                bail!("the checkpoint's optimizer state has `{name}`, which is no parameter of the model");
            };
            // In the parameter's memory layout (a checkpoint stores every tensor contiguous),
            // so that the resumed run takes the fused path exactly where the first one did.
            let t = tch::no_grad(|| {
                let mut like = p.value.zeros_like();
                like.f_copy_(t).map(|()| like)
            })
            .map_err(|e| anyhow::anyhow!("optimizer state `{name}` does not fit its parameter: {e}"))?;
            match slot {
                "m" => p.m = Some(t),
                "v" => p.v = Some(t),
                _ => bail!("unknown optimizer state tensor `{name}`"),
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Whether the fused kernels can update `p`: a dense, contiguous CPU or CUDA floating tensor
/// whose gradient and existing state match it (the kernels index them all alike).
fn fusable(settings: &Settings, p: &Param, grad: &Tensor) -> bool {
    let value = &p.value;
    let dense = |t: &Tensor| !t.is_sparse() && !t.is_mkldnn() && packed(t);
    // The kernels walk every list element by element in memory order: one layout for all.
    let like = |t: &Tensor| {
        t.kind() == value.kind()
            && t.device() == value.device()
            && t.size() == value.size()
            && t.stride() == value.stride()
            && dense(t)
    };
    let state_fits = match settings {
        // Without momentum SGD keeps no state, so a stale buffer does not matter.
        Settings::Sgd(s) if s.momentum <= 0.0 => true,
        _ => p.m.as_ref().is_none_or(like) && p.v.as_ref().is_none_or(like),
    };
    matches!(value.device(), Device::Cpu | Device::Cuda(_))
        && matches!(value.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
        && dense(value)
        && like(grad)
        && state_fits
}

/// Whether `t`'s elements fill its memory without gaps or overlaps, in any dimension order
/// (contiguous, or channels-last, say).
fn packed(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    let mut dims: Vec<usize> = (0..size.len()).filter(|&d| size[d] != 1).collect();
    dims.sort_by_key(|&d| stride[d]);
    let mut expected = 1;
    for d in dims {
        if stride[d] != expected {
            return false;
        }
        expected *= size[d];
    }
    true
}

/// Creates the state the fused kernels need before their first call (they update it in place
/// and never allocate it) as zeros: Adam's moments as the reference does; SGD's momentum
/// buffer, which the kernel's first step overwrites with the gradient, is zeroed anyway so that
/// a reference fallback (0 * momentum + g) gives the same buffer. Returns whether this is SGD's
/// first step for `p` (the kernel's `is_first_step`).
fn prepare_state(settings: &Settings, p: &mut Param) -> bool {
    match settings {
        Settings::Sgd(s) => {
            if s.momentum <= 0.0 || p.m.is_some() {
                return false;
            }
            p.m = Some(p.value.zeros_like());
            true
        }
        Settings::Adam(_) | Settings::Adamw(_) => {
            p.m.get_or_insert_with(|| p.value.zeros_like());
            p.v.get_or_insert_with(|| p.value.zeros_like());
            false
        }
    }
}

/// The device's `state_steps` scalar, set to step `t`.
fn step_tensor(cache: &mut Vec<(Device, Tensor)>, device: Device, t: u64) -> &Tensor {
    let index = match cache.iter().position(|(d, _)| *d == device) {
        Some(i) => i,
        None => {
            cache.push((device, Tensor::zeros([], (Kind::Float, device))));
            cache.len() - 1
        }
    };
    let step = &mut cache[index].1;
    // float32 as PyTorch keeps it: exact up to 2^24 updates, the bias correction is 1 long before.
    let _ = step.fill_(t as f64);
    step
}

/// One parameter's update the per-parameter way (~10 tch ops): the fallback for what the fused
/// kernels cannot take, and the reference they are tested against.
fn reference_step(settings: &Settings, p: &mut Param, grad: Tensor, lr: f64, t: u64) {
    let t = i32::try_from(t).unwrap_or(i32::MAX);
    match settings {
        &Settings::Sgd(SgdSettings { momentum, nesterov, weight_decay, .. }) => {
            let mut g = if weight_decay > 0.0 { &grad + &p.value * weight_decay } else { grad };
            if momentum > 0.0 {
                let buf = match p.m.take() {
                    None => g.copy(),
                    Some(mut buf) => {
                        let _ = buf.g_mul_scalar_(momentum).g_add_(&g);
                        buf
                    }
                };
                g = if nesterov { &g + &buf * momentum } else { buf.shallow_clone() };
                p.m = Some(buf);
            }
            let _ = p.value.g_sub_(&(g * lr));
        }
        Settings::Adam(AdamSettings { betas, eps, weight_decay, .. })
        | Settings::Adamw(AdamwSettings { betas, eps, weight_decay, .. }) => {
            let (betas, eps, weight_decay) = (*betas, *eps, *weight_decay);
            let decoupled = matches!(settings, Settings::Adamw(_));
            let g = if weight_decay > 0.0 && !decoupled { &grad + &p.value * weight_decay } else { grad };
            if decoupled && weight_decay > 0.0 {
                let _ = p.value.g_mul_scalar_(1.0 - lr * weight_decay);
            }
            let m = p.m.get_or_insert_with(|| g.zeros_like());
            let _ = m.g_mul_scalar_(betas[0]).g_add_(&(&g * (1.0 - betas[0])));
            let v = p.v.get_or_insert_with(|| g.zeros_like());
            let _ = v.g_mul_scalar_(betas[1]).g_add_(&(&g * &g * (1.0 - betas[1])));
            let bias1 = 1.0 - betas[0].powi(t);
            let bias2 = 1.0 - betas[1].powi(t);
            let denom = (&*v / bias2).sqrt() + eps;
            let update = &*m / denom * (lr / bias1);
            let _ = p.value.g_sub_(&update);
        }
    }
}

/// Dynamic loss scaling for float16 training: the loss is multiplied by `scale` before
/// backward so small gradients do not underflow; a step whose gradients overflowed is skipped
/// and the scale halved, and after `GROWTH_INTERVAL` good steps it doubles.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    good_steps: u32,
}

impl LossScaler {
    const GROWTH_INTERVAL: u32 = 2000;

    pub fn new() -> Self {
        Self { scale: 65536.0, good_steps: 0 }
    }

    /// Unscales the gradients in place; false (and the scale halved) when any is not finite.
    pub fn unscale(&mut self, optimizer: &Optimizer) -> bool {
        let grads: Vec<Tensor> = optimizer.params.iter().map(|p| p.value.grad()).filter(Tensor::defined).collect();
        let finite = tch::no_grad(|| grads.iter().all(|g| g.isfinite().all().int64_value(&[]) == 1));
        if !finite {
            self.scale /= 2.0;
            self.good_steps = 0;
            return false;
        }
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_scalar_(1.0 / self.scale);
            }
        });
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

/// The fused kernels against the per-parameter reference on a device, for the tests here and for
/// `gymnos-engine selftest fused` (the CUDA path, checked where there is a GPU).
pub mod check {
    use super::*;

    /// One optimizer's comparison.
    #[derive(Debug, serde::Serialize)]
    pub struct Comparison {
        pub settings: String,
        /// Per parameter, whether the fused kernels took it.
        pub fused: Vec<bool>,
        /// Whether a fused call failed and the optimizer fell back to the reference.
        pub fell_back: bool,
        /// The largest difference after 10 steps, over parameters and state, relative to each
        /// tensor's magnitude.
        pub max_relative_error: f64,
    }

    /// The problem on the CPU (the tests').
    #[cfg(test)]
    pub fn problem() -> (Vec<(String, Tensor)>, Vec<Tensor>) {
        problem_on(Device::Cpu)
    }

    /// Every optimizer setting, 10 steps fused and 10 by reference from the same start on
    /// `device`.
    pub fn fused_against_reference(device: Device) -> Vec<Comparison> {
        let (params, targets) = problem_on(device);
        all_settings()
            .into_iter()
            .map(|settings| {
                let (mut fused, fused_params) = fresh(&settings, &params, false);
                let (mut reference, reference_params) = fresh(&settings, &params, true);
                run(&mut fused, &fused_params, &targets, 0..1);
                let fusable_now = fused.params.iter().map(|p| fusable(&settings, p, &p.value.grad())).collect();
                run(&mut fused, &fused_params, &targets, 1..10);
                run(&mut reference, &reference_params, &targets, 0..10);
                let state = |o: &Optimizer| o.state().into_iter().map(|(_, t)| t.copy()).collect::<Vec<_>>();
                let (fused_state, reference_state) = (state(&fused), state(&reference));
                let pairs = fused_params.iter().zip(&reference_params).chain(fused_state.iter().zip(&reference_state));
                let mut worst = 0.0f64;
                for (a, b) in pairs {
                    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
                    // Relative to the tensor's magnitude: float32 rounding differs by an ulp or
                    // so per step (the kernels fuse multiply-adds), which elements passing near
                    // zero would magnify without meaning anything.
                    let err = (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12);
                    worst = worst.max(if a.size() == b.size() { err } else { f64::INFINITY });
                }
                Comparison {
                    settings: format!("{settings:?}"),
                    fused: fusable_now,
                    fell_back: fused.reference_only,
                    max_relative_error: worst,
                }
            })
            .collect()
    }

    pub fn all_settings() -> Vec<Settings> {
        let sgd = |momentum, nesterov, weight_decay| {
            Settings::Sgd(SgdSettings { lr: 0.05, momentum, nesterov, weight_decay })
        };
        vec![
            sgd(0.0, false, 0.0),
            sgd(0.0, false, 0.01),
            sgd(0.9, false, 0.0),
            sgd(0.9, true, 0.0),
            sgd(0.9, true, 0.01),
            sgd(0.8, false, 0.01),
            Settings::Adam(AdamSettings { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 }),
            Settings::Adam(AdamSettings { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 }),
            Settings::Adamw(AdamwSettings { lr: 0.01, betas: [0.85, 0.99], eps: 1e-8, weight_decay: 0.0 }),
            Settings::Adamw(AdamwSettings { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.05 }),
        ]
    }

    /// A few parameters of several shapes on `device`, one float64 (its own fused group), one
    /// transposed (dense in another order: fused) and one strided (not dense: the reference
    /// fallback), from a fixed seed.
    pub fn problem_on(device: Device) -> (Vec<(String, Tensor)>, Vec<Tensor>) {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let on = |t: Tensor| t.to_device(device);
        let values = vec![
            on(Tensor::randn([16, 9], opts)),
            on(Tensor::randn([9], opts)),
            on(Tensor::randn([3, 4, 5], opts)),
            on(Tensor::randn([1], opts)),
            on(Tensor::randn([6, 7], (Kind::Double, Device::Cpu))),
            on(Tensor::randn([5, 4], opts)).transpose(0, 1),
            every_other_column(&on(Tensor::randn([3, 4], opts))),
        ];
        let targets = values.iter().map(|v| v.randn_like()).collect();
        let params =
            values.into_iter().enumerate().map(|(i, v)| (format!("p{i}"), v.set_requires_grad(true))).collect();
        (params, targets)
    }

    /// Elementwise only (no matmul), so gradients are bit-reproducible for the resume test.
    pub fn loss(params: &[Tensor], targets: &[Tensor]) -> Tensor {
        params
            .iter()
            .zip(targets)
            .map(|(p, t)| ((p - t).square() + p.sin() * 0.3).sum(Kind::Double))
            .reduce(|a, b| a + b)
            .unwrap()
    }

    /// `t`'s values in a tensor that is not dense: every other column of a wider one.
    pub fn every_other_column(t: &Tensor) -> Tensor {
        let (rows, cols) = (t.size()[0], t.size()[1]);
        let wide = Tensor::zeros([rows, 2 * cols], (t.kind(), t.device()));
        let strided = wide.slice(1, 0, 2 * cols, 2);
        tch::no_grad(|| strided.shallow_clone().copy_(t));
        strided
    }

    pub fn fresh(settings: &Settings, params: &[(String, Tensor)], reference_only: bool) -> (Optimizer, Vec<Tensor>) {
        let copies: Vec<(String, Tensor)> = params
            .iter()
            .map(|(n, v)| {
                // Keeps the strides (a plain copy would make the transposed one contiguous,
                // and the strided one dense).
                let c = if packed(v) { v.detach().zeros_like() } else { every_other_column(&v.detach()) };
                tch::no_grad(|| c.shallow_clone().copy_(v));
                (n.clone(), c.set_requires_grad(true))
            })
            .collect();
        let handles = copies.iter().map(|(_, v)| v.shallow_clone()).collect();
        let mut opt = Optimizer::new(settings.clone(), copies);
        opt.reference_only = reference_only;
        (opt, handles)
    }

    pub fn run(opt: &mut Optimizer, params: &[Tensor], targets: &[Tensor], steps: std::ops::Range<u64>) {
        for i in steps {
            opt.zero_grad();
            loss(params, targets).backward();
            // A changing rate, as a schedule gives.
            opt.step(0.02 / (1.0 + i as f64 * 0.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Minimises (w - 3)^2 from w = 0 and checks against the closed-form first Adam step.
    #[test]
    fn optimizers_descend_and_adam_first_step_is_lr() {
        for settings in [
            Settings::Sgd(SgdSettings { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 }),
            Settings::Adam(AdamSettings { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 }),
            Settings::Adamw(AdamwSettings { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 }),
        ] {
            let w = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let mut opt = Optimizer::new(settings.clone(), vec![("w".into(), w.shallow_clone())]);
            for i in 0..200 {
                opt.zero_grad();
                let loss = (&w - 3.0).square().sum(Kind::Float);
                loss.backward();
                opt.step(0.1);
                if i == 0 && matches!(settings, Settings::Adam(_)) {
                    assert!((w.double_value(&[0]) - 0.1).abs() < 1e-5, "{}", w.double_value(&[0]));
                }
            }
            assert!((w.double_value(&[0]) - 3.0).abs() < 0.1, "{settings:?}: {}", w.double_value(&[0]));
            assert_eq!(opt.state().len(), if matches!(settings, Settings::Sgd(_)) { 1 } else { 2 });
        }
    }

    /// Gradients are dropped, not zeroed: each backward pass stores its own, laid out like
    /// its parameter, and a parameter it does not reach is left alone by the step.
    #[test]
    fn zero_grad_drops_the_gradients() {
        let settings = Settings::Sgd(SgdSettings { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0 });
        let used = gymnos_plugin_sdk::layout::to_channels_last(&Tensor::ones([2, 3, 2, 2], (Kind::Float, Device::Cpu)))
            .set_requires_grad(true);
        let unused = Tensor::ones([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(
            settings,
            vec![("used".into(), used.shallow_clone()), ("unused".into(), unused.shallow_clone())],
        );
        for _ in 0..2 {
            (&used * 2.0).sum(Kind::Float).backward();
            unused.sum(Kind::Float).backward();
            opt.zero_grad();
            assert!(!used.grad().defined() && !unused.grad().defined());
            (&used * 3.0).sum(Kind::Float).backward();
            let grad = used.grad();
            assert!(grad.equal(&Tensor::full([2, 3, 2, 2], 3.0, (Kind::Float, Device::Cpu))), "not accumulated");
            assert_eq!(grad.stride(), used.stride());
            opt.step(0.1);
        }
        assert!(unused.equal(&Tensor::ones([4], (Kind::Float, Device::Cpu))), "a parameter without a gradient moved");
    }

    use super::check::{all_settings, fresh, fused_against_reference, problem, run};

    #[test]
    fn fused_step_matches_the_reference_implementation() {
        for comparison in fused_against_reference(Device::Cpu) {
            // The fused path ran for every dense parameter (the transposed one too), not for the
            // strided one, and no fused call failed.
            assert_eq!(comparison.fused, [true, true, true, true, true, true, false], "{}", comparison.settings);
            assert!(!comparison.fell_back, "{}: a fused call failed", comparison.settings);
            let err = comparison.max_relative_error;
            assert!(err <= 1e-6, "{}: differs by {err:e} relative", comparison.settings);
        }
    }

    #[test]
    fn resuming_from_saved_state_is_bit_identical() {
        let (params, targets) = problem();
        for settings in all_settings() {
            let (mut straight, straight_params) = fresh(&settings, &params, false);
            run(&mut straight, &straight_params, &targets, 0..20);

            let (mut first, first_params) = fresh(&settings, &params, false);
            run(&mut first, &first_params, &targets, 0..8);
            // What a checkpoint holds: copies, named as before the fused kernels.
            let saved: Vec<(String, Tensor)> = first.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
            let named: Vec<(String, Tensor)> =
                first.params.iter().map(|p| (p.name.clone(), p.value.shallow_clone())).collect();
            let (mut resumed, resumed_params) = fresh(&settings, &named, false);
            resumed.load_state(&saved, first.steps).unwrap();
            drop(first);
            run(&mut resumed, &resumed_params, &targets, 8..20);

            assert_eq!(resumed.steps, straight.steps);
            for (a, b) in resumed_params.iter().zip(&straight_params) {
                assert!(a.equal(b), "{settings:?}: resumed parameters differ");
            }
            for ((na, a), (nb, b)) in resumed.state().iter().zip(&straight.state()) {
                assert_eq!(na, nb);
                assert!(a.equal(b), "{settings:?}: resumed state `{na}` differs");
            }
        }
    }

    #[test]
    fn a_cpp_error_comes_back_as_a_rust_error() {
        let opts = (Kind::Float, Device::Cpu);
        let (p, g, m) = (Tensor::zeros([4], opts), Tensor::zeros([5], opts), Tensor::zeros([4], opts));
        let hp = fused::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        // Mismatched shapes: refused by the shim's checks (a C++ exception), not read past.
        let err = fused::sgd(&[&p], &[&g], &[&m], hp, false).unwrap_err();
        assert!(err.0.contains("grad[0] has shape [5]"), "{err}");
        // An integer dtype: libtorch's own dispatch error.
        let ints = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let step = Tensor::ones([], opts);
        let hp = fused::Adam { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, decoupled: true };
        let err = fused::adam(&[&ints], &[&ints], &[&ints], &[&ints], &[&step], hp).unwrap_err();
        assert!(err.0.contains("Long"), "{err}");
        // Lists of different lengths never reach C++.
        let err = fused::adam(&[&p], &[], &[], &[], &[], hp).unwrap_err();
        assert!(err.0.contains("0 gradients for 1 parameters"), "{err}");
        // Nothing was changed.
        assert_eq!(p.abs().sum(Kind::Double).double_value(&[]), 0.0);
    }

    /// Step time, fused vs per-parameter, for the MLP 784-256-10 and the default CNN
    /// (fashion-mnist-cnn: channels [32, 64], batch norm, hidden 128), on 2 threads.
    /// `cargo test --release -p gymnos-engine -- --ignored --nocapture optimizer_step_time`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn optimizer_step_time() {
        tch::set_num_threads(2);
        let mlp: &[&[i64]] = &[&[256, 784], &[256], &[10, 256], &[10]];
        let cnn: &[&[i64]] =
            &[&[32, 1, 3, 3], &[32], &[32], &[64, 32, 3, 3], &[64], &[64], &[128, 3136], &[128], &[10, 128], &[10]];
        let settings = [
            ("sgd", Settings::Sgd(SgdSettings { lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 1e-4 })),
            ("adam", Settings::Adam(AdamSettings { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 })),
            ("adamw", Settings::Adamw(AdamwSettings { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 })),
        ];
        for (model, shapes) in [("mlp 784-256-10", mlp), ("cnn", cnn)] {
            for (name, s) in &settings {
                let mut line = format!("{model:>15} {name:>5}:");
                for reference_only in [true, false] {
                    let params: Vec<(String, Tensor)> = shapes
                        .iter()
                        .enumerate()
                        .map(|(i, &shape)| (format!("p{i}"), Tensor::randn(shape, (Kind::Float, Device::Cpu))))
                        .map(|(n, t)| (n, t.set_requires_grad(true)))
                        .collect();
                    // Gradients set once (step never clears them).
                    let l = params.iter().map(|(_, p)| (p * p.randn_like()).sum(Kind::Float)).reduce(|a, b| a + b);
                    l.unwrap().backward();
                    let mut opt = Optimizer::new(s.clone(), params);
                    opt.reference_only = reference_only;
                    for _ in 0..20 {
                        opt.step(1e-3);
                    }
                    let n = 500;
                    let start = std::time::Instant::now();
                    for _ in 0..n {
                        opt.step(1e-3);
                    }
                    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
                    line += &format!("  {} {us:8.1} us", if reference_only { "reference" } else { "fused" });
                }
                println!("{line}");
            }
        }
    }
}
