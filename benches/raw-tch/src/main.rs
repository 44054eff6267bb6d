//! `gymnos-bench-raw-tch`: the floor of the training benchmark (`benches/training.py`).
//!
//! Trains the network of the built-in `mlp` or `cnn` plugin on Fashion-MNIST with a plain tch
//! loop written here: no plugin, no engine, no loader threads. The recipe is the one the
//! benchmark gives the product (`gymnos-host run`): the whole training split in memory on the
//! device, standardized with the training mean and standard deviation (one value for all
//! pixels, as the `standardize` preprocessor does), a random permutation per epoch, batches
//! gathered by `index_select`, cross-entropy, Adam, the test split evaluated in batches of 1024.
//!
//! The networks are built with the same tch calls, in the same order and with the same
//! parameter names as `plugins/mlp` and `plugins/cnn`, so their initialisation draws from the
//! same distributions. The optimizer is either the engine's own Adam update (`--optimizer host`,
//! the default: the same tensor operations as `host/engine/src/optim.rs`) or libtorch's C++
//! Adam through tch's `nn::Adam` (`--optimizer tch`).
//!
//! With `--flip P` each training image is flipped horizontally with probability P, inline on
//! the training thread (the benchmark's `--augment` recipe; the product does it in its loader's
//! worker threads with the `random-flip` plugin).
//!
//! Prints one JSON object per line: `setup`, then one `epoch` per epoch, then `test`.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use flate2::read::GzDecoder;
use serde_json::json;
use tch::{
    nn::{self, ModuleT, OptimizerConfig},
    Device, Kind, Tensor,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModelKind {
    /// The `mlp` plugin with `"hidden": [256]`: 784-256-10, ReLU, dropout 0.1.
    Mlp,
    /// The `cnn` plugin's defaults: channels [32, 64], 3x3 kernels, batch norm, max pooling, hidden 128, dropout 0.3.
    Cnn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OptimizerKind {
    /// The engine's Adam: the tensor operations of host/engine/src/optim.rs.
    Host,
    /// libtorch's C++ Adam (tch `nn::Adam`).
    Tch,
}

#[derive(Parser, Debug)]
#[command(name = "gymnos-bench-raw-tch", about = "Plain tch training loop of the built-in mlp/cnn (benchmark floor)")]
struct Args {
    #[arg(long, value_enum)]
    model: ModelKind,
    /// Folder with the gzipped IDX files of Fashion-MNIST.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fashion-mnist"))]
    data: PathBuf,
    #[arg(long, default_value_t = 1)]
    epochs: u32,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    #[arg(long, default_value_t = 1024)]
    eval_batch_size: i64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// libtorch intra-op threads (`tch::set_num_threads`).
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Train on at most N batches per epoch and test on at most N evaluation batches.
    #[arg(long)]
    limit_batches: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Host)]
    optimizer: OptimizerKind,
    /// Flip each training image horizontally with this probability (as the `random-flip`
    /// augmentor does per batch), on the training thread.
    #[arg(long, default_value_t = 0.0)]
    flip: f64,
}

/// The `mlp` plugin's dropout default and the benchmark's hidden layers.
const MLP_HIDDEN: [i64; 1] = [256];
const MLP_DROPOUT: f64 = 0.1;
/// The `cnn` plugin's defaults.
const CNN_CHANNELS: [i64; 2] = [32, 64];
const CNN_KERNEL: i64 = 3;
const CNN_HIDDEN: i64 = 128;
const CNN_DROPOUT: f64 = 0.3;
const NUM_CLASSES: i64 = 10;

/// An IDX file of unsigned bytes, gzipped or not: its dimensions and data.
fn read_idx(path: &Path) -> Result<(Vec<i64>, Vec<u8>)> {
    let file = File::open(path).with_context(|| path.display().to_string())?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).with_context(|| path.display().to_string())?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        bail!("{}: not an IDX file of unsigned bytes", path.display());
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!("{}: truncated IDX header", path.display());
    }
    let dims: Vec<i64> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as i64).collect();
    if dims.iter().product::<i64>() as usize != bytes.len() - header {
        bail!("{}: dimensions {dims:?} do not match the file's size", path.display());
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

/// Images as float32 in [0, 1], `[n, 1, rows, cols]`, and labels as int64.
fn read_split(dir: &Path, images: &str, labels: &str) -> Result<(Tensor, Tensor)> {
    let (dims, pixels) = read_idx(&dir.join(images))?;
    let &[n, rows, cols] = dims.as_slice() else { bail!("{images}: expected 3 dimensions, found {dims:?}") };
    let x = Tensor::from_slice(&pixels).view([n, 1, rows, cols]).to_kind(Kind::Float) / 255.0;
    let (dims, targets) = read_idx(&dir.join(labels))?;
    if dims != [n] {
        bail!("{labels}: expected {n} labels, found dimensions {dims:?}");
    }
    Ok((x, Tensor::from_slice(&targets).to_kind(Kind::Int64)))
}

/// The `mlp` plugin's network (its forward flattens the input first).
fn mlp(root: &nn::Path, input: i64, hidden: &[i64], dropout: f64, outputs: i64) -> nn::SequentialT {
    let mut net = nn::seq_t();
    let mut width = input;
    for (i, &h) in hidden.iter().enumerate() {
        net = net
            .add(nn::linear(root / format!("fc{i}"), width, h, Default::default()))
            .add_fn(Tensor::relu)
            .add_fn_t(move |x, train| x.dropout(dropout, train));
        width = h;
    }
    net.add(nn::linear(root / "out", width, outputs, Default::default()))
}

/// The `cnn` plugin's network: (conv, batch norm, ReLU) + 2x2 max pooling per block, then the
/// dense head.
fn cnn(root: &nn::Path, input: [i64; 3], channels: &[i64], hidden: i64, dropout: f64, outputs: i64) -> nn::SequentialT {
    let [mut c_in, h, w] = input;
    let mut net = nn::seq_t();
    for (i, &c_out) in channels.iter().enumerate() {
        let path = root / format!("block{i}");
        let conv = nn::ConvConfig { padding: CNN_KERNEL / 2, bias: false, ..Default::default() };
        let block = nn::seq_t()
            .add(nn::conv2d(&path / "conv", c_in, c_out, CNN_KERNEL, conv))
            .add(nn::batch_norm2d(&path / "bn", c_out, Default::default()))
            .add_fn(|x| x.relu());
        net = net.add(block).add_fn(|x| x.max_pool2d_default(2));
        c_in = c_out;
    }
    let blocks = channels.len() as u32;
    let flat = c_in * (h >> blocks) * (w >> blocks);
    net.add_fn(|x| x.flatten(1, -1))
        .add(nn::linear(root / "fc", flat, hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(move |x, train| x.dropout(dropout, train))
        .add(nn::linear(root / "out", hidden, outputs, Default::default()))
}

/// Adam without weight decay, written as host/engine/src/optim.rs writes it.
struct HostAdam {
    /// Parameter, first moment, second moment.
    params: Vec<(Tensor, Option<Tensor>, Option<Tensor>)>,
    betas: [f64; 2],
    eps: f64,
    steps: i32,
}

impl HostAdam {
    fn new(params: Vec<Tensor>) -> Self {
        Self { params: params.into_iter().map(|p| (p, None, None)).collect(), betas: [0.9, 0.999], eps: 1e-8, steps: 0 }
    }

    fn zero_grad(&mut self) {
        for (p, _, _) in &mut self.params {
            p.zero_grad();
        }
    }

    fn step(&mut self, lr: f64) {
        self.steps += 1;
        let (betas, eps, t) = (self.betas, self.eps, self.steps);
        tch::no_grad(|| {
            for (p, m, v) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = m.get_or_insert_with(|| g.zeros_like());
                let _ = m.g_mul_scalar_(betas[0]).g_add_(&(&g * (1.0 - betas[0])));
                let v = v.get_or_insert_with(|| g.zeros_like());
                let _ = v.g_mul_scalar_(betas[1]).g_add_(&(&g * &g * (1.0 - betas[1])));
                let bias1 = 1.0 - betas[0].powi(t);
                let bias2 = 1.0 - betas[1].powi(t);
                let denom = (&*v / bias2).sqrt() + eps;
                let update = &*m / denom * (lr / bias1);
                let _ = p.g_sub_(&update);
            }
        });
    }
}

enum Optimizer {
    Host(HostAdam),
    Tch(nn::Optimizer),
}

impl Optimizer {
    fn zero_grad(&mut self) {
        match self {
            Optimizer::Host(o) => o.zero_grad(),
            Optimizer::Tch(o) => o.zero_grad(),
        }
    }

    fn step(&mut self, lr: f64) {
        match self {
            Optimizer::Host(o) => o.step(lr),
            Optimizer::Tch(o) => o.step(),
        }
    }
}

fn parse_device(text: &str) -> Result<Device> {
    let device = match text {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) => Device::Cuda(i),
            None => bail!("--device: `{other}` is not cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(i) = device {
        if i as i64 >= tch::Cuda::device_count() {
            bail!("--device {text}: CUDA reports {} device(s) here", tch::Cuda::device_count());
        }
    }
    Ok(device)
}

/// Accuracy and mean loss of the model on `(x, y)` in evaluation mode, in batches.
fn evaluate(forward: &dyn Fn(&Tensor, bool) -> Tensor, x: &Tensor, y: &Tensor, batch: i64) -> (f64, f64, i64) {
    tch::no_grad(|| {
        let n = x.size()[0];
        let device = x.device();
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        for start in (0..n).step_by(batch as usize) {
            let len = batch.min(n - start);
            let (xb, yb) = (x.narrow(0, start, len), y.narrow(0, start, len));
            let out = forward(&xb, false);
            loss_sum += out.cross_entropy_for_logits(&yb).to_kind(Kind::Double) * len as f64;
            correct += out.argmax(1, false).eq_tensor(&yb).sum(Kind::Int64);
        }
        (correct.int64_value(&[]) as f64 / n as f64, loss_sum.double_value(&[]) / n as f64, n)
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    tch::set_num_threads(args.threads);
    tch::manual_seed(args.seed);
    let device = parse_device(&args.device)?;

    let loading = Instant::now();
    let (train_x, train_y) = read_split(&args.data, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")?;
    let (test_x, test_y) = read_split(&args.data, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")?;
    // The `standardize` preprocessor: one mean and one (population) standard deviation for all
    // pixels, computed in double on the training split.
    let x64 = train_x.to_kind(Kind::Double);
    let mean = x64.mean(Kind::Double).to_kind(Kind::Float);
    let std = (x64.std(false) + 1e-8).to_kind(Kind::Float);
    drop(x64);
    let standardize = |x: &Tensor| ((x - &mean) / &std).to_device(device);
    let (train_x, test_x) = (standardize(&train_x), standardize(&test_x));
    let (train_y, test_y) = (train_y.to_device(device), test_y.to_device(device));
    let load_seconds = loading.elapsed().as_secs_f64();

    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let shape = train_x.size();
    let net = match args.model {
        ModelKind::Mlp => mlp(&root, shape[1..].iter().product(), &MLP_HIDDEN, MLP_DROPOUT, NUM_CLASSES),
        ModelKind::Cnn => {
            cnn(&root, [shape[1], shape[2], shape[3]], &CNN_CHANNELS, CNN_HIDDEN, CNN_DROPOUT, NUM_CLASSES)
        }
    };
    let flatten = args.model == ModelKind::Mlp;
    let forward = |x: &Tensor, train: bool| {
        if flatten {
            net.forward_t(&x.flatten(1, -1), train)
        } else {
            net.forward_t(x, train)
        }
    };
    let mut trainable: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    trainable.sort_by(|a, b| a.0.cmp(&b.0));
    let parameters: i64 = trainable.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut optimizer = match args.optimizer {
        OptimizerKind::Host => Optimizer::Host(HostAdam::new(trainable.into_iter().map(|(_, t)| t).collect())),
        OptimizerKind::Tch => Optimizer::Tch(nn::Adam::default().build(&vs, args.lr)?),
    };

    // The batches of an epoch: a trailing batch of one sample is dropped, as the engine does.
    let n = train_x.size()[0];
    let mut ranges: Vec<(i64, i64)> =
        (0..n).step_by(args.batch_size as usize).map(|s| (s, args.batch_size.min(n - s))).collect();
    if ranges.len() > 1 && ranges.last().is_some_and(|r| r.1 == 1) {
        ranges.pop();
    }
    if let Some(limit) = args.limit_batches {
        ranges.truncate(limit);
    }
    println!(
        "{}",
        json!({
            "event": "setup", "contender": "raw-tch", "model": format!("{:?}", args.model).to_lowercase(),
            "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "optimizer": format!("{:?}", args.optimizer).to_lowercase(), "flip": args.flip, "parameters": parameters,
            "train_samples": n, "test_samples": test_x.size()[0], "batches_per_epoch": ranges.len(),
            "load_seconds": load_seconds, "libtorch": env!("GYMNOS_LIBTORCH_BUILD"),
        })
    );

    for epoch in 0..args.epochs {
        let started = Instant::now();
        let order = Tensor::randperm(n, (Kind::Int64, device));
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut samples = 0;
        for &(start, len) in &ranges {
            let index = order.narrow(0, start, len);
            let (mut x, y) = (train_x.index_select(0, &index), train_y.index_select(0, &index));
            if args.flip > 0.0 {
                let mask = Tensor::rand([len], (Kind::Float, device)).lt(args.flip).view([len, 1, 1, 1]);
                x = x.flip([-1]).where_self(&mask, &x);
            }
            optimizer.zero_grad();
            let loss = forward(&x, true).cross_entropy_for_logits(&y);
            loss.backward();
            optimizer.step(args.lr);
            tch::no_grad(|| loss_sum += loss.to_kind(Kind::Double) * len as f64);
            samples += len;
        }
        // Reading the sum waits for the device's queued work.
        let train_loss = loss_sum.double_value(&[]) / samples.max(1) as f64;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "event": "epoch", "epoch": epoch + 1, "seconds": seconds, "samples": samples,
                "samples_per_second": samples as f64 / seconds.max(1e-9), "train_loss": train_loss,
            })
        );
    }

    let (test_x, test_y) = match args.limit_batches {
        Some(limit) => {
            let len = test_x.size()[0].min(limit as i64 * args.eval_batch_size);
            (test_x.narrow(0, 0, len), test_y.narrow(0, 0, len))
        }
        None => (test_x, test_y),
    };
    let (accuracy, loss, samples) = evaluate(&forward, &test_x, &test_y, args.eval_batch_size);
    println!("{}", json!({ "event": "test", "accuracy": accuracy, "loss": loss, "samples": samples }));
    Ok(())
}
