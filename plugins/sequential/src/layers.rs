//! The layers: read from the checked JSON, their output shapes inferred from the input shape,
//! built into modules, and run.

use gymnos_plugin_sdk::{
    memory, numel,
    serde_json::{Map, Value},
    tch::{nn, nn::Module, nn::ModuleT, Tensor},
    PluginError, Result,
};

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    /// `k - 1` pixels per dimension, split between its two ends (one more after than before
    /// when `k` is even): the output is the input's size divided by the stride, rounded up.
    Same,
    /// Pixels on each side (`valid`: 0).
    Pixels(i64),
}

/// One layer as the experiment writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Dense { units: i64 },
    Conv2d { filters: i64, kernel: i64, stride: i64, padding: Padding },
    MaxPool2d { size: i64, stride: i64 },
    AvgPool2d { size: i64, stride: i64 },
    GlobalAvgPool,
    BatchNorm,
    Dropout { rate: f64 },
    Flatten,
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Residual { layers: Vec<Spec> },
}

impl Spec {
    pub fn name(&self) -> &'static str {
        match self {
            Spec::Dense { .. } => "dense",
            Spec::Conv2d { .. } => "conv2d",
            Spec::MaxPool2d { .. } => "max_pool2d",
            Spec::AvgPool2d { .. } => "avg_pool2d",
            Spec::GlobalAvgPool => "global_avg_pool",
            Spec::BatchNorm => "batch_norm",
            Spec::Dropout { .. } => "dropout",
            Spec::Flatten => "flatten",
            Spec::Relu => "relu",
            Spec::Gelu => "gelu",
            Spec::Tanh => "tanh",
            Spec::Sigmoid => "sigmoid",
            Spec::Residual { .. } => "residual",
        }
    }
}

/// Reads a layer list already checked against the schema (`schema::check`): every field has
/// its type and bounds.
pub fn parse(layers: &Value, path: &str) -> Result<Vec<Spec>> {
    let items = layers.as_array().ok_or_else(|| PluginError::config(format!("{path}: expected a list")))?;
    items.iter().enumerate().map(|(i, layer)| parse_one(layer, &format!("{path}[{i}]"))).collect()
}

fn parse_one(layer: &Value, path: &str) -> Result<Spec> {
    let empty = Map::new();
    let fields = layer.as_object().unwrap_or(&empty);
    let int = |key: &str| -> Result<Option<i64>> {
        fields
            .get(key)
            .map(|v| v.as_i64().ok_or_else(|| PluginError::config(format!("{path}.{key}: {v} is not an integer"))))
            .transpose()
    };
    let required = |key: &str| int(key)?.ok_or_else(|| PluginError::config(format!("{path}.{key}: missing field")));
    let ty = fields.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(match ty {
        "dense" => Spec::Dense { units: required("units")? },
        "conv2d" => Spec::Conv2d {
            filters: required("filters")?,
            kernel: required("kernel_size")?,
            stride: int("stride")?.unwrap_or(1),
            padding: match fields.get("padding") {
                None => Padding::Same,
                Some(Value::String(s)) if s == "same" => Padding::Same,
                Some(Value::String(s)) if s == "valid" => Padding::Pixels(0),
                Some(_) => Padding::Pixels(required("padding")?),
            },
        },
        "max_pool2d" | "avg_pool2d" => {
            let size = required("size")?;
            let stride = int("stride")?.unwrap_or(size);
            if ty == "max_pool2d" {
                Spec::MaxPool2d { size, stride }
            } else {
                Spec::AvgPool2d { size, stride }
            }
        }
        "global_avg_pool" => Spec::GlobalAvgPool,
        "batch_norm" => Spec::BatchNorm,
        "dropout" => Spec::Dropout {
            rate: fields
                .get("rate")
                .and_then(Value::as_f64)
                .ok_or_else(|| PluginError::config(format!("{path}.rate: missing field")))?,
        },
        "flatten" => Spec::Flatten,
        "relu" => Spec::Relu,
        "gelu" => Spec::Gelu,
        "tanh" => Spec::Tanh,
        "sigmoid" => Spec::Sigmoid,
        "residual" => {
            Spec::Residual { layers: parse(fields.get("layers").unwrap_or(&Value::Null), &format!("{path}.layers"))? }
        }
        other => return Err(PluginError::config(format!("{path}.type: `{other}` is not a layer type"))),
    })
}

/// A built layer.
#[derive(Debug)]
pub enum Op {
    Dense(nn::Linear),
    /// `pad`: explicit padding (left, right, top, bottom) before the convolution, for `same`
    /// with an even kernel.
    Conv2d {
        conv: nn::Conv2D,
        pad: Option<[i64; 4]>,
    },
    MaxPool2d {
        size: i64,
        stride: i64,
    },
    AvgPool2d {
        size: i64,
        stride: i64,
    },
    GlobalAvgPool,
    BatchNorm(nn::BatchNorm),
    Dropout(f64),
    Flatten,
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Residual(Vec<Op>),
}

impl ModuleT for Op {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Op::Dense(linear) => linear.forward(x),
            Op::Conv2d { conv, pad } => match pad {
                Some(pad) => conv.forward(&x.constant_pad_nd(pad.as_slice())),
                None => conv.forward(x),
            },
            Op::MaxPool2d { size, stride } => x.max_pool2d([*size, *size], [*stride, *stride], [0, 0], [1, 1], false),
            // Not `avg_pool2d_default`: tch 0.24's passes a divisor of 1, which sums instead.
            Op::AvgPool2d { size, stride } => {
                x.avg_pool2d([*size, *size], [*stride, *stride], [0, 0], false, true, None)
            }
            Op::GlobalAvgPool => x.mean_dim([2i64, 3].as_slice(), false, None),
            Op::BatchNorm(bn) => bn.forward_t(x, train),
            Op::Dropout(rate) => gymnos_plugin_sdk::nn::dropout(x, *rate, train),
            Op::Flatten => x.flatten(1, -1),
            Op::Relu => x.relu(),
            Op::Gelu => x.gelu("none"),
            Op::Tanh => x.tanh(),
            Op::Sigmoid => x.sigmoid(),
            Op::Residual(layers) => x + run(layers, x, train),
        }
    }
}

/// The layers one after the other.
pub fn run(layers: &[Op], x: &Tensor, train: bool) -> Tensor {
    let mut y = x.shallow_clone();
    for layer in layers {
        y = layer.forward_t(&y, train);
    }
    y
}

/// A layer that does not fit its input: the message names the layer and the shapes.
fn misfit(label: &str, message: String) -> PluginError {
    PluginError::config(format!("{label}: {message}"))
}

/// The output side of a convolution or pooling window over `side` (padded by `pad` each side,
/// `total_pad` in all), or `None` when the window does not fit.
fn window_out(side: i64, total_pad: i64, window: i64, stride: i64) -> Option<i64> {
    let padded = side.checked_add(total_pad)?;
    (padded >= window && stride >= 1).then(|| (padded - window) / stride + 1)
}

fn image(label: &str, input: &[i64]) -> Result<[i64; 3]> {
    match *input {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(misfit(label, format!("input {input:?} is not an image [channels, height, width]"))),
    }
}

/// What a layer other than `residual` is, worked out from its input shape without allocating:
/// its output shape, the shapes of its parameters, and how a convolution pads.
struct Layout {
    out: Vec<i64>,
    params: Vec<Vec<i64>>,
    /// A convolution's padding inside the convolution, and beforehand (even `same` kernels).
    conv_pad: (i64, Option<[i64; 4]>),
}

/// Works out, for inputs of shape `input` (one sample's), the output shape of `specs` and the
/// memory of their parameters and outputs, naming layers `{path}[i]`; nothing is allocated. The
/// first layer that cannot take its input, or at which the network would not fit in memory, is
/// refused.
pub fn plan(specs: &[Spec], input: &[i64], path: &str, tally: &mut memory::Tally) -> Result<Vec<i64>> {
    let mut shape = input.to_vec();
    for (i, spec) in specs.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let label = format!("{at} ({})", spec.name());
        if let Spec::Residual { layers } = spec {
            let out = plan(layers, &shape, &format!("{at}.layers"), tally)?;
            if out != shape {
                return Err(misfit(&label, format!("its layers turn {shape:?} into {out:?}")));
            }
            tally.add(|| format!("{label}: the network up to its output {shape:?}"), &[&shape])?;
            continue;
        }
        let layout = layout(spec, &shape, &label)?;
        let what = || match (spec, layout.params.first()) {
            (Spec::Dense { .. }, Some(weights)) => {
                format!("{at}.units (the network up to this dense layer of {} x {} weights)", weights[1], weights[0])
            }
            (Spec::Conv2d { filters, .. }, _) => format!(
                "{at}.filters (the network up to this conv2d of {} to {filters} channels, output {:?})",
                shape[0], layout.out
            ),
            _ => format!("{label}: the network up to its output {:?}", layout.out),
        };
        let params: Vec<&[i64]> = layout.params.iter().map(Vec::as_slice).collect();
        tally.add(what, &[params.as_slice(), &[layout.out.as_slice()]].concat())?;
        shape = layout.out;
    }
    Ok(shape)
}

/// Builds `specs` for inputs of shape `input` (one sample's), naming layers `{path}[i]` and
/// their parameters under `vs`. Returns the layers and their output shape. Call [`plan`] first:
/// it refuses what does not fit before anything is allocated.
pub fn build(specs: &[Spec], input: &[i64], path: &str, vs: &nn::Path) -> Result<(Vec<Op>, Vec<i64>)> {
    let mut shape = input.to_vec();
    let mut ops = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let label = format!("{at} ({})", spec.name());
        let p = vs / "layers" / i;
        let (op, out) = build_one(spec, &shape, &at, &label, &p)?;
        ops.push(op);
        shape = out;
    }
    Ok((ops, shape))
}

fn layout(spec: &Spec, input: &[i64], label: &str) -> Result<Layout> {
    let same = input.to_vec();
    let plain = |out: Vec<i64>, params: Vec<Vec<i64>>| Layout { out, params, conv_pad: (0, None) };
    Ok(match *spec {
        Spec::Dense { units } => {
            let &[features] = input else {
                return Err(misfit(
                    label,
                    format!("input {input:?} is not a vector [features]; put a flatten or global_avg_pool before it"),
                ));
            };
            plain(vec![units], vec![vec![units, features], vec![units]])
        }
        Spec::Conv2d { filters, kernel, stride, padding } => {
            let [c, h, w] = image(label, input)?;
            let (total_pad, conv_pad, pad) = match padding {
                // Odd kernels pad evenly inside the convolution; even ones need one more
                // pixel after than before, padded beforehand.
                Padding::Same if kernel % 2 == 1 => (kernel - 1, kernel / 2, None),
                Padding::Same => {
                    let before = (kernel - 1) / 2;
                    (kernel - 1, 0, Some([before, kernel - 1 - before, before, kernel - 1 - before]))
                }
                Padding::Pixels(px) => (px.saturating_mul(2), px, None),
            };
            let out = |side: i64| window_out(side, total_pad, kernel, stride);
            let (Some(h_out), Some(w_out)) = (out(h), out(w)) else {
                let padded = match padding {
                    Padding::Pixels(px) if px > 0 => format!(" padded by {px}"),
                    _ => String::new(),
                };
                return Err(misfit(
                    label,
                    format!("input {input:?}{padded} is smaller than the kernel {kernel}x{kernel}"),
                ));
            };
            let params = vec![vec![filters, c, kernel, kernel], vec![filters]];
            Layout { out: vec![filters, h_out, w_out], params, conv_pad: (conv_pad, pad) }
        }
        Spec::MaxPool2d { size, stride } | Spec::AvgPool2d { size, stride } => {
            let [c, h, w] = image(label, input)?;
            let (Some(h_out), Some(w_out)) = (window_out(h, 0, size, stride), window_out(w, 0, size, stride)) else {
                return Err(misfit(label, format!("input {input:?} is smaller than the window {size}x{size}")));
            };
            plain(vec![c, h_out, w_out], Vec::new())
        }
        Spec::GlobalAvgPool => {
            let [c, _, _] = image(label, input)?;
            plain(vec![c], Vec::new())
        }
        Spec::BatchNorm => match *input {
            // weight, bias, running mean and variance.
            [channels] | [channels, _] | [channels, _, _] | [channels, _, _, _] => plain(same, vec![vec![4, channels]]),
            _ => return Err(misfit(label, format!("input {input:?} is not [channels] with 0 to 3 more dimensions"))),
        },
        Spec::Flatten => {
            let n = numel(input).map_err(|e| misfit(label, e.message.to_string()))?;
            plain(vec![n], Vec::new())
        }
        Spec::Dropout { .. } | Spec::Relu | Spec::Gelu | Spec::Tanh | Spec::Sigmoid => plain(same, Vec::new()),
        Spec::Residual { .. } => {
            return Err(PluginError::runtime(format!("{label}: a residual layer is laid out by its layers")))
        }
    })
}

fn build_one(spec: &Spec, input: &[i64], at: &str, label: &str, p: &nn::Path) -> Result<(Op, Vec<i64>)> {
    if let Spec::Residual { ref layers } = *spec {
        let (inner, out) = build(layers, input, &format!("{at}.layers"), p)?;
        if out != input {
            return Err(misfit(label, format!("its layers turn {input:?} into {out:?}")));
        }
        return Ok((Op::Residual(inner), input.to_vec()));
    }
    let Layout { out, conv_pad: (conv_pad, pad), .. } = layout(spec, input, label)?;
    let op = match *spec {
        Spec::Dense { units } => Op::Dense(nn::linear(p, input[0], units, Default::default())),
        Spec::Conv2d { filters, kernel, stride, .. } => {
            let config = nn::ConvConfig { stride, padding: conv_pad, ..Default::default() };
            Op::Conv2d { conv: nn::conv2d(p, input[0], filters, kernel, config), pad }
        }
        Spec::MaxPool2d { size, stride } => Op::MaxPool2d { size, stride },
        Spec::AvgPool2d { size, stride } => Op::AvgPool2d { size, stride },
        Spec::GlobalAvgPool => Op::GlobalAvgPool,
        Spec::BatchNorm => Op::BatchNorm(match input.len() {
            1 | 2 => nn::batch_norm1d(p, input[0], Default::default()),
            3 => nn::batch_norm2d(p, input[0], Default::default()),
            _ => nn::batch_norm3d(p, input[0], Default::default()),
        }),
        Spec::Dropout { rate } => Op::Dropout(rate),
        Spec::Flatten => Op::Flatten,
        Spec::Relu => Op::Relu,
        Spec::Gelu => Op::Gelu,
        Spec::Tanh => Op::Tanh,
        Spec::Sigmoid => Op::Sigmoid,
        Spec::Residual { .. } => return Err(PluginError::runtime(format!("{label}: handled above"))),
    };
    Ok((op, out))
}
