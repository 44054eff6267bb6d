"""PyTorch eager baseline of the training benchmark (benches/training.py).

Trains the network of the built-in `mlp` or `cnn` plugin on Fashion-MNIST with the recipe the
benchmark gives every contender: the whole training split in memory on the device, standardized
with the training mean and standard deviation (one value for all pixels, as the `standardize`
preprocessor does), a random permutation per epoch, batches gathered by `index_select`,
cross-entropy, Adam (torch.optim.Adam, its default implementation for the device), the test split
evaluated in batches of 1024. With --flip P each training image is flipped horizontally with
probability P, inline on the training thread (the benchmark's --augment recipe). With
--precision bf16 the training forward pass runs under torch.autocast in bfloat16, the loss in
float32, as the product's `training.precision: "bf16"`; evaluation stays float32 in both.

The weights are initialised as tch initialises the plugins' (Kaiming-uniform with the ReLU gain
for weights, uniform(+-1/sqrt(fan_in)) for linear biases, batch-norm scale uniform(0, 1)), not
with PyTorch's defaults, so that the three contenders start from the same distributions.

Run with the project's virtual environment: .venv/bin/python benches/pytorch_baseline.py --model mlp
Prints one JSON object per line: `setup`, one `epoch` per epoch, then `test`.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The `mlp` plugin with "hidden": [256] (its dropout default), and the `cnn` plugin's defaults.
MLP_HIDDEN = [256]
MLP_DROPOUT = 0.1
CNN_CHANNELS = [32, 64]
CNN_KERNEL = 3
CNN_HIDDEN = 128
CNN_DROPOUT = 0.3
NUM_CLASSES = 10


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(dims):
        raise SystemExit(f"{path}: dimensions {dims} do not match the file's size")
    return array.reshape(dims)


def read_split(folder, images, labels):
    x = torch.from_numpy(read_idx(os.path.join(folder, images)).copy()).unsqueeze(1).float() / 255.0
    y = torch.from_numpy(read_idx(os.path.join(folder, labels)).astype(np.int64))
    if x.shape[0] != y.shape[0]:
        raise SystemExit(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    return x, y


def tch_init(module):
    """tch's default initialisation (nn::linear, nn::conv2d, nn::batch_norm2d)."""
    with torch.no_grad():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.weight.shape[1])
                    module.bias.uniform_(-bound, bound)
                else:
                    module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.0, 1.0)
            module.bias.zero_()


def mlp(input_shape):
    layers = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in MLP_HIDDEN:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(MLP_DROPOUT)]
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def cnn(input_shape):
    c_in, h, w = input_shape
    layers = []
    for c_out in CNN_CHANNELS:
        layers += [
            nn.Conv2d(c_in, c_out, CNN_KERNEL, padding=CNN_KERNEL // 2, bias=False),
            nn.BatchNorm2d(c_out),  # eps 1e-5 and momentum 0.1, as tch's defaults
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        c_in = c_out
    blocks = len(CNN_CHANNELS)
    flat = c_in * (h >> blocks) * (w >> blocks)
    layers += [nn.Flatten(), nn.Linear(flat, CNN_HIDDEN), nn.ReLU(), nn.Dropout(CNN_DROPOUT), nn.Linear(CNN_HIDDEN, NUM_CLASSES)]
    return nn.Sequential(*layers)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--data", default=os.path.join(ROOT, "data", "fashion-mnist"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--limit-batches", type=int, default=None, help="at most N training and N evaluation batches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flip", type=float, default=0.0, help="flip each training image horizontally with this probability, inline")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast the training forward pass")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda:0" if args.device == "cuda" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    cuda = device.type == "cuda"

    loading = time.perf_counter()
    train_x, train_y = read_split(args.data, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    test_x, test_y = read_split(args.data, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    # The `standardize` preprocessor: one mean and one population standard deviation, in double.
    x64 = train_x.double()
    mean, std = x64.mean().float(), (x64.std(correction=0) + 1e-8).float()
    del x64
    train_x, test_x = ((train_x - mean) / std).to(device), ((test_x - mean) / std).to(device)
    train_y, test_y = train_y.to(device), test_y.to(device)
    load_seconds = time.perf_counter() - loading

    input_shape = tuple(train_x.shape[1:])
    model = (mlp if args.model == "mlp" else cnn)(input_shape)
    model.apply(tch_init)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    n = train_x.shape[0]
    ranges = [(s, min(args.batch_size, n - s)) for s in range(0, n, args.batch_size)]
    if len(ranges) > 1 and ranges[-1][1] == 1:
        ranges.pop()  # as the engine: no training batch of one sample
    if args.limit_batches is not None:
        ranges = ranges[: args.limit_batches]
    emit(
        event="setup",
        contender="pytorch",
        model=args.model,
        device=str(device),
        threads=torch.get_num_threads(),
        optimizer="torch.optim.Adam",
        flip=args.flip,
        precision=args.precision,
        parameters=sum(p.numel() for p in model.parameters()),
        train_samples=n,
        test_samples=test_x.shape[0],
        batches_per_epoch=len(ranges),
        load_seconds=load_seconds,
        torch=torch.__version__,
    )

    for epoch in range(args.epochs):
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        samples = 0
        for start, length in ranges:
            index = order[start : start + length]
            x, y = train_x.index_select(0, index), train_y.index_select(0, index)
            if args.flip > 0:
                mask = (torch.rand(length, device=device) < args.flip).view(length, 1, 1, 1)
                x = torch.where(mask, x.flip(-1), x)
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.double() * length
            samples += length
        train_loss = loss_sum.item() / max(samples, 1)  # waits for the device's queued work
        seconds = time.perf_counter() - started
        emit(
            event="epoch",
            epoch=epoch + 1,
            seconds=seconds,
            samples=samples,
            samples_per_second=samples / max(seconds, 1e-9),
            train_loss=train_loss,
        )

    if args.limit_batches is not None:
        keep = min(test_x.shape[0], args.limit_batches * args.eval_batch_size)
        test_x, test_y = test_x[:keep], test_y[:keep]
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, test_x.shape[0], args.eval_batch_size):
            xb, yb = test_x[start : start + args.eval_batch_size], test_y[start : start + args.eval_batch_size]
            out = model(xb)
            loss_sum += F.cross_entropy(out, yb).double() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum()
    m = test_x.shape[0]
    emit(event="test", accuracy=correct.item() / m, loss=loss_sum.item() / m, samples=m)


if __name__ == "__main__":
    sys.exit(main())
