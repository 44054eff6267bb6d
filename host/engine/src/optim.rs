//! SGD (momentum, Nesterov), Adam and AdamW, written over the model's parameter tensors.
//! The host owns them (rather than libtorch's C++ optimizers) so that their state is plain
//! named tensors that checkpoints save and `resume` restores exactly.

use anyhow::{bail, Result};
use gymnos_host::experiment::{AdamSettings, AdamwSettings, Optimizer as Settings, SgdSettings};
use tch::Tensor;

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
}

impl Optimizer {
    pub fn new(settings: Settings, params: Vec<(String, Tensor)>) -> Self {
        let params = params.into_iter().map(|(name, value)| Param { name, value, m: None, v: None }).collect();
        Self { settings, params, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
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
        let t = self.steps as i32;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                match &self.settings {
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
                        let decoupled = matches!(self.settings, Settings::Adamw(_));
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
        });
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
            let t = t.to_device(p.value.device());
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
}
