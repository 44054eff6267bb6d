"""Training benchmark: time per epoch of the product against a plain tch loop and PyTorch eager.

Three contenders train the same network on Fashion-MNIST with one recipe, interleaved in one run
(product, raw-tch, pytorch, product, raw-tch, pytorch, ...) and repeated:

- product:  `gymnos-host run` with the built-in `idx`, `standardize` and `mlp`/`cnn` plugins, the
            epoch time read from the run's metrics.json;
- raw-tch:  target/release/gymnos-bench-raw-tch, the same network in a plain tch loop (the floor);
- pytorch:  benches/pytorch_baseline.py, the same network in PyTorch eager.

Run it through benches/training.sh (the project's virtual environment); see benches/README.md.
"""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import ROOT, GpuUtilisation, end_work, fail, machine as describe_machine, run_child, write_report
HOST = os.path.join(ROOT, "target", "release", "gymnos-host")
ENGINE = os.path.join(ROOT, "target", "release", "gymnos-engine")
RAW = os.path.join(ROOT, "target", "release", "gymnos-bench-raw-tch")
BASELINE = os.path.join(ROOT, "benches", "pytorch_baseline.py")
REGISTRY = os.path.join(ROOT, "registry.json")
CONTENDERS = ["product", "raw-tch", "pytorch"]
# The recipe's batch; --batch-size changes it for all three (scripts/gpu-check.sh: 128 and 512).
BATCH_SIZE = 128
EVAL_BATCH_SIZE = 1024
LR = 1e-3
# The product's model configurations; raw-tch and the baseline build the same networks. The
# values are the plugins' defaults (mlp's hidden layers apart), written out. cnn 1.0 knows only
# these three keys; 1.1's kernel_size, pooling and batch_norm default to 1.0's network
# (3, max, true).
MODELS = {
    "mlp": {"plugin": "mlp@^1", "config": {"hidden": [256], "activation": "relu", "dropout": 0.1}},
    "cnn": {"plugin": "cnn@^1", "config": {"channels": [32, 64], "hidden": 128, "dropout": 0.3}},
}
# The --augment recipe: horizontal flip probability.
FLIP = 0.5
# Test accuracies (fractions) further apart than this get a warning.
ACCURACY_TOLERANCE = 0.02




def parse_args():
    p = argparse.ArgumentParser(description="Time per training epoch: product vs plain tch vs PyTorch eager")
    p.add_argument("--repeats", type=int, default=3, help="runs of each contender per model (default 3)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    p.add_argument("--warmup-epochs", type=int, default=0, help="first epochs of each run left out of its time (default 0)")
    p.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
    p.add_argument("--contenders", default=None, help="comma-separated subset of product,raw-tch,pytorch (default all three; product,pytorch with --precision bf16)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for all three (default 2)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: all three on cuda:0")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: the product's training.precision bf16 against PyTorch under torch.autocast (raw-tch has no bf16 autocast: tch binds CUDA's float16 only)",
    )
    p.add_argument("--limit-batches", type=int, default=None, help="train on N batches per epoch and test on N eval batches (smoke tests)")
    p.add_argument("--raw-optimizer", choices=["host", "tch"], default="host", help="raw-tch's Adam: the engine's update (host) or libtorch's (tch)")
    p.add_argument("--product-set", action="append", default=[], metavar="PATH=VALUE", help="extra `--set` for the product's run (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--augment",
        action="store_true",
        help="augmented recipe: the product with the random-flip augmentor (horizontal 0.5, its loader's worker threads), the others flipping inline",
    )
    p.add_argument("--data", default=os.path.join(ROOT, "data", "fashion-mnist"))
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"training batch of all three (default {BATCH_SIZE})")
    p.add_argument("--registry", default=REGISTRY, help="the product's registry (default the repository's)")
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (experiments, run records, logs)")
    args = p.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.contenders is None:
        args.contenders = ",".join(c for c in CONTENDERS if args.precision == "fp32" or c != "raw-tch")
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.precision == "bf16" and "raw-tch" in args.contenders:
        fail("--precision bf16: raw-tch has no bf16 autocast (tch binds CUDA's float16 only); leave it out of --contenders")
    for m in args.models:
        if m not in MODELS:
            fail(f"--models: unknown model `{m}` (mlp, cnn)")
    for c in args.contenders:
        if c not in CONTENDERS:
            fail(f"--contenders: unknown contender `{c}` ({', '.join(CONTENDERS)})")
    if args.repeats < 1 or args.epochs < 1 or args.threads < 1:
        fail("--repeats, --epochs and --threads must be at least 1")
    if not 0 <= args.warmup_epochs < args.epochs:
        fail("--warmup-epochs must be below --epochs")
    if args.limit_batches is not None and args.limit_batches < 1:
        fail("--limit-batches must be at least 1")
    return args


def check_prerequisites(args):
    if "product" in args.contenders:
        missing = [p for p in (HOST, ENGINE, args.registry) if not os.path.exists(p)]
        if missing:
            fail(f"{', '.join(os.path.relpath(m, ROOT) for m in missing)} missing: run scripts/setup.sh first")
        listed = subprocess.run([HOST, "--registry", args.registry, "plugins", "list", "--json"], cwd=ROOT, capture_output=True, text=True)
        if listed.returncode != 0:
            fail(f"`gymnos-host plugins list` failed ({listed.stderr.strip()}): run scripts/setup.sh")
        loadable = {p["name"] for p in json.loads(listed.stdout) if p.get("loadable")}
        needed = {"idx", "standardize"} | set(args.models) | ({"random-flip"} if args.augment else set())
        if not needed <= loadable:
            fail(f"plugins {', '.join(sorted(needed - loadable))} are not installed in registry.json: run scripts/setup.sh")
    if "raw-tch" in args.contenders and not os.path.exists(RAW):
        fail(f"{os.path.relpath(RAW, ROOT)} missing: build it with `cargo build --release -p gymnos-bench-raw-tch`")
    if not all(os.path.exists(os.path.join(args.data, f)) for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")):
        fail(f"{args.data}: no Fashion-MNIST IDX files: run scripts/setup.sh")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device here")


def child_env(threads):
    env = dict(os.environ)
    # The product has no thread setting: libtorch reads OMP_NUM_THREADS. The others also call
    # set_num_threads(T); the variables keep every pool (OpenMP, MKL) the same size in all three.
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env




def json_lines(stdout):
    events = {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            event = json.loads(line)
            events.setdefault(event["event"], []).append(event)
    return events


def expected_samples(n, limit, batch_size):
    """Samples per training epoch, as the engine batches them (a trailing batch of one dropped)."""
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes.pop()
    return sum(sizes[:limit] if limit is not None else sizes)


def write_experiment(work, model, args):
    training = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "eval_batch_size": EVAL_BATCH_SIZE,
        "optimizer": {"name": "adam", "lr": LR},
        "precision": args.precision,
        "lr_schedule": {"name": "constant"},
        "device": "cuda:0" if args.device == "cuda" else "cpu",
        # With no validation split the default monitor (val_loss) is refused; checkpoints are
        # written after each epoch's time is taken, the best one is not kept.
        "callbacks": {"checkpoint": {"monitor": "train_loss", "save_best": False}},
    }
    if args.limit_batches is not None:
        training.update(limit_train_batches=args.limit_batches, limit_eval_batches=args.limit_batches)
    experiment = {
        "experiment": {"name": f"bench-{model}", "seed": args.seed, "description": "benches/training.py"},
        "dataset": {
            "plugin": "idx@^1",
            "config": {"path": os.path.abspath(args.data)},
            # No validation split (the others have none); the shipped test split is the test split.
            "split": {"train": 1.0, "val": 0.0, "test": 0.0},
        },
        "preprocessors": [{"plugin": "standardize@^1"}],
        "data_augmentors": [{"plugin": "random-flip@^1", "config": {"horizontal": FLIP}}] if args.augment else [],
        "model": MODELS[model],
        "training": training,
    }
    path = os.path.join(work, f"bench-{model}.json")
    with open(path, "w") as f:
        json.dump(experiment, f, indent=2)
    return path


def run_product(work, model, repeat, args, env):
    experiment = write_experiment(work, model, args)
    out_root = os.path.join(work, "runs", f"{model}-{repeat}")
    cmd = [HOST, "--registry", args.registry, "run", experiment, "--output-root", out_root, "--no-progress"]
    for s in args.product_set:
        cmd += ["--set", s]
    _, wall = run_child(cmd, os.path.join(work, f"product-{model}-{repeat}.log"), env)
    found = glob.glob(os.path.join(out_root, "**", "metrics.json"), recursive=True)
    if len(found) != 1:
        fail(f"{out_root}: expected one run record, found {len(found)}")
    with open(found[0]) as f:
        record = json.load(f)
    history = record["history"]
    samples = expected_samples(record["data"]["train_samples"], args.limit_batches, args.batch_size)
    threads = (record.get("hardware") or {}).get("torch_threads")
    return {
        "epoch_seconds": history["epoch_seconds"],
        "samples": samples,
        "reported_samples_per_second": history.get("train_samples_per_second"),
        "test_accuracy": record["test"]["accuracy"],
        "threads": threads,
        "wall_seconds": wall,
        "run_dir": os.path.dirname(found[0]),
    }


def run_json_contender(name, cmd, work, model, repeat, env):
    stdout, wall = run_child(cmd, os.path.join(work, f"{name}-{model}-{repeat}.log"), env)
    events = json_lines(stdout)
    epochs = events.get("epoch", [])
    samples = {e["samples"] for e in epochs}
    return {
        "epoch_seconds": [e["seconds"] for e in epochs],
        "samples": samples.pop() if len(samples) == 1 else None,
        "reported_samples_per_second": [e["samples_per_second"] for e in epochs],
        "test_accuracy": events["test"][0]["accuracy"],
        "threads": events["setup"][0]["threads"],
        "wall_seconds": wall,
    }


def common_flags(model, args):
    flags = ["--model", model, "--epochs", str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed)]
    flags += ["--batch-size", str(args.batch_size), "--eval-batch-size", str(EVAL_BATCH_SIZE), "--lr", str(LR)]
    flags += ["--device", args.device, "--data", os.path.abspath(args.data)]
    if args.limit_batches is not None:
        flags += ["--limit-batches", str(args.limit_batches)]
    if args.augment:
        flags += ["--flip", str(FLIP)]
    return flags


def baseline_flags(args):
    return ["--precision", args.precision]


def run_one(contender, work, model, repeat, args, env):
    with GpuUtilisation(enabled=args.device == "cuda") as gpu:
        if contender == "product":
            result = run_product(work, model, repeat, args, env)
        else:
            if contender == "raw-tch":
                cmd = [RAW, *common_flags(model, args), "--optimizer", args.raw_optimizer]
            else:
                cmd = [sys.executable, BASELINE, *common_flags(model, args), *baseline_flags(args)]
            result = run_json_contender(contender, cmd, work, model, repeat, env)
    result["gpu_utilisation"] = gpu.summary()
    return result


def summarize(runs, args):
    per_run = [statistics.fmean(r["epoch_seconds"][args.warmup_epochs :]) for r in runs]
    median = statistics.median(per_run)
    samples = runs[0]["samples"]
    accuracies = [r["test_accuracy"] for r in runs]
    return {
        "epoch_seconds_median": median,
        "epoch_seconds_min": min(per_run),
        "epoch_seconds_max": max(per_run),
        "epoch_seconds_per_run": per_run,
        "samples_per_epoch": samples,
        "samples_per_second": samples / median if samples and median > 0 else None,
        "test_accuracy": statistics.median(accuracies),
        "test_accuracy_per_run": accuracies,
        "threads": sorted({r["threads"] for r in runs if r["threads"] is not None}),
        # Of the GPU while it was in use, median over the repeats; None on the CPU.
        "gpu_busy_percent": statistics.median(busy) if (busy := [r["gpu_utilisation"]["busy_mean_percent"] for r in runs if r["gpu_utilisation"]]) else None,
        "runs": runs,
    }




def machine():
    return describe_machine()


def main():
    args = parse_args()
    check_prerequisites(args)
    env = child_env(args.threads)
    work = tempfile.mkdtemp(prefix="gymnos-bench-training-")
    print(
        f"training benchmark: models {','.join(args.models)}, contenders {','.join(args.contenders)}, {args.repeats} repeat(s) "
        f"of {args.epochs} epoch(s), device {args.device}, {args.precision}, {args.threads} thread(s)"
        + (f", {args.limit_batches} batch(es) per epoch" if args.limit_batches is not None else "")
        + (", augmented (random flip)" if args.augment else "")
        + f"; work folder {work}",
        flush=True,
    )
    runs = {(m, c): [] for m in args.models for c in args.contenders}
    for repeat in range(args.repeats):
        for model in args.models:
            for contender in args.contenders:
                result = run_one(contender, work, model, repeat, args, env)
                runs[(model, contender)].append(result)
                mean = statistics.fmean(result["epoch_seconds"][args.warmup_epochs :])
                print(
                    f"  repeat {repeat + 1}/{args.repeats} {model:<4} {contender:<8} {mean:9.3f} s/epoch  "
                    f"test acc {result['test_accuracy']:.4f}  ({result['wall_seconds']:.1f} s wall"
                    + (f", GPU busy {result['gpu_utilisation']['busy_mean_percent']:.0f} %" if result["gpu_utilisation"] else "")
                    + ")",
                    flush=True,
                )

    results, ratios, warnings = [], {}, []
    for model in args.models:
        summary = {c: summarize(runs[(model, c)], args) for c in args.contenders}
        for c, s in summary.items():
            results.append({"model": model, "contender": c, **s})
            if s["threads"] and s["threads"] != [args.threads] and args.device == "cpu":
                warnings.append(f"{model}/{c} ran with {s['threads']} torch threads, not {args.threads}")
        samples = {c: s["samples_per_epoch"] for c, s in summary.items()}
        if len(set(samples.values())) > 1:
            warnings.append(f"{model}: the contenders trained on different numbers of samples per epoch: {samples}")
        med = {c: s["epoch_seconds_median"] for c, s in summary.items()}
        ratios[model] = {
            "product/raw-tch": med["product"] / med["raw-tch"] if {"product", "raw-tch"} <= med.keys() else None,
            "product/pytorch": med["product"] / med["pytorch"] if {"product", "pytorch"} <= med.keys() else None,
            "raw-tch/pytorch": med["raw-tch"] / med["pytorch"] if {"raw-tch", "pytorch"} <= med.keys() else None,
        }
        acc = {c: s["test_accuracy"] for c, s in summary.items()}
        if acc and max(acc.values()) - min(acc.values()) > ACCURACY_TOLERANCE:
            shown = ", ".join(f"{c} {a:.4f}" for c, a in acc.items())
            note = " (expected with --limit-batches: a few batches train little)" if args.limit_batches is not None else ""
            warnings.append(f"{model}: test accuracies differ by more than {ACCURACY_TOLERANCE * 100:.0f} points: {shown}{note}")

    gpu = any(r["gpu_busy_percent"] is not None for r in results)
    header = f"{'model':<5} {'contender':<9} {'epoch s (median)':>16} {'spread (min-max)':>19} {'samples/s':>10} {'test acc':>8}"
    header += f" {'GPU busy %':>10}" if gpu else ""
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"{r['epoch_seconds_min']:.3f}-{r['epoch_seconds_max']:.3f}"
        sps = f"{r['samples_per_second']:.0f}" if r["samples_per_second"] else "-"
        line = f"{r['model']:<5} {r['contender']:<9} {r['epoch_seconds_median']:16.3f} {spread:>19} {sps:>10} {r['test_accuracy']:8.4f}"
        if gpu:
            line += f" {r['gpu_busy_percent']:10.0f}" if r["gpu_busy_percent"] is not None else f" {'-':>10}"
        print(line)
    print()
    header = f"{'model':<5} {'product/raw-tch':>15} {'product/pytorch':>15} {'raw-tch/pytorch':>15}"
    print(header)
    print("-" * len(header))
    for model, r in ratios.items():
        cells = [f"{r[k]:.2f}" if r[k] else "-" for k in ("product/raw-tch", "product/pytorch", "raw-tch/pytorch")]
        print(f"{model:<5} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}")
    for w in warnings:
        print(f"warning: {w}")

    if args.out:
        report = {
            "settings": {
                "repeats": args.repeats,
                "epochs": args.epochs,
                "warmup_epochs": args.warmup_epochs,
                "models": args.models,
                "contenders": args.contenders,
                "threads": args.threads,
                "device": args.device,
                "limit_batches": args.limit_batches,
                "batch_size": args.batch_size,
                "eval_batch_size": EVAL_BATCH_SIZE,
                "optimizer": {"name": "adam", "lr": LR},
                "precision": args.precision,
                "raw_optimizer": args.raw_optimizer,
                "product_set": args.product_set,
                "seed": args.seed,
                "augment": {"horizontal_flip": FLIP} if args.augment else None,
                "model_configs": {m: MODELS[m] for m in args.models},
            },
            "machine": machine(),
            "results": results,
            "ratios": ratios,
            "warnings": warnings,
        }
        write_report(args.out, report)
    end_work(work, args.keep)


if __name__ == "__main__":
    main()
