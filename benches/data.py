"""Data-loading benchmark: the product's loader against PyTorch's DataLoader, and streaming memory.

Three cases, run interleaved (ours, pytorch, ours, pytorch, ...) and repeated:

- augment: Fashion-MNIST's 60,000 training images in memory, batches of 128, 2 loader threads
           (ours) or worker processes (PyTorch), random horizontal flip (0.5) and random crop 28
           with padding 4. Ours: `gymnos-host validate --deep --measure-data N --json` on an
           experiment with `idx`, `standardize`, `random-flip`, `random-crop`; PyTorch: a Dataset
           returning one standardized [1, 28, 28] tensor per sample through torchvision's
           transforms.v2, in a DataLoader(num_workers=2, batch_size=128, shuffle=True).
- folder:  decoding data/fashion-mnist-png/train (60,000 PNGs, one folder per class) and resizing
           to 32x32 grayscale. Ours: the `image-folder` data set, decoding batch by batch in the
           loader's threads; PyTorch: torchvision.datasets.ImageFolder with
           Compose([Grayscale(), Resize((32, 32)), ToTensor()]) (PIL) in the same DataLoader.
- memory:  peak resident memory of `gymnos-host run` (host and engine, the larger of the two) on
           the `synthetic` data set with 1,000,000 and 10,000,000 samples of 784 features, 200
           training batches: a streamed data set's memory should not grow with its size.

Run it through benches/data.sh (the project's virtual environment); see benches/README.md.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import ROOT, end_work, fail, machine as describe_machine, run_child, write_report
HOST = os.path.join(ROOT, "target", "release", "gymnos-host")
ENGINE = os.path.join(ROOT, "target", "release", "gymnos-engine")
REGISTRY = os.path.join(ROOT, "registry.json")
FASHION = os.path.join(ROOT, "data", "fashion-mnist")
PNG_ROOT = os.path.join(ROOT, "data", "fashion-mnist-png", "train")
CASES = ["augment", "folder", "memory"]
BATCH_SIZE = 128
FLIP = 0.5
CROP_PADDING = 4
FOLDER_SIZE = 32
MEMORY_SHAPE = [784]
MEMORY_CLASSES = 10
# The targets for ours/pytorch in samples per second.
TARGETS = {"augment": 10.0, "folder": 2.0}
MODEL = {"plugin": "mlp@^1", "config": {"hidden": [64]}}
PLUGINS = {
    "augment": {"idx", "standardize", "random-flip", "random-crop", "mlp"},
    "folder": {"image-folder", "mlp"},
    "memory": {"synthetic", "mlp"},
}




def parse_args():
    p = argparse.ArgumentParser(description="Data loading: the product's loader vs PyTorch's DataLoader, and streaming memory")
    p.add_argument("--repeats", type=int, default=3, help="runs of each contender per case (default 3)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of augment,folder,memory")
    p.add_argument("--contenders", default="ours,pytorch", help="comma-separated subset of ours,pytorch (augment and folder)")
    p.add_argument("--batches", type=int, default=400, help="timed batches of the augment case (default 400)")
    p.add_argument("--folder-batches", type=int, default=100, help="timed batches of the folder case (default 100)")
    p.add_argument("--warmup-batches", type=int, default=5, help="PyTorch: batches taken before the clock starts (default 5)")
    p.add_argument("--workers", type=int, default=2, help="loader threads (ours) / worker processes (PyTorch) (default 2)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads: OMP_NUM_THREADS of both, torch.set_num_threads of PyTorch's main process (default 2)")
    p.add_argument("--memory-samples", default="1000000,10000000", help="synthetic data set sizes of the memory case")
    p.add_argument("--memory-batches", type=int, default=200, help="training batches of each memory run (default 200)")
    p.add_argument("--png-root", default=PNG_ROOT, help="class-per-folder tree of the folder case")
    p.add_argument("--data", default=FASHION, help="Fashion-MNIST IDX files of the augment case")
    p.add_argument("--registry", default=REGISTRY, help="plugin registry of ours (default: the repository's registry.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (experiments, logs, run records)")
    args = p.parse_args()
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            fail(f"--cases: unknown case `{c}` ({', '.join(CASES)})")
    for c in args.contenders:
        if c not in ("ours", "pytorch"):
            fail(f"--contenders: unknown contender `{c}` (ours, pytorch)")
    args.memory_samples = [int(s) for s in args.memory_samples.split(",") if s.strip()]
    if min(args.repeats, args.batches, args.folder_batches, args.workers, args.threads, args.memory_batches) < 1:
        fail("--repeats, --batches, --folder-batches, --workers, --threads and --memory-batches must be at least 1")
    if args.warmup_batches < 0:
        fail("--warmup-batches must not be negative")
    return args


# ---------------------------------------------------------------------------------------------
# PyTorch's side, run in a child process per measurement (`data.py --pytorch-child CASE ...`).
# ---------------------------------------------------------------------------------------------


def read_idx(path):
    import gzip

    import numpy as np

    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def pytorch_child(argv):
    p = argparse.ArgumentParser()
    p.add_argument("case")
    p.add_argument("--batches", type=int, required=True)
    p.add_argument("--warmup-batches", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--png-root", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    if a.case == "augment":
        from torchvision.transforms import v2

        images = torch.from_numpy(read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).copy())
        labels = torch.from_numpy(read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).astype("int64"))
        # What `standardize` computes: one mean and population std over all training pixels in [0, 1].
        scaled = images.double() / 255.0
        mean, std = scaled.mean().item(), scaled.std(unbiased=False).item() + 1e-8
        del scaled

        class FashionMNIST(Dataset):
            def __init__(self, images, labels, transform):
                self.images, self.labels, self.transform = images, labels, transform

            def __len__(self):
                return len(self.labels)

            def __getitem__(self, i):
                x = self.images[i].unsqueeze(0).float().div_(255.0)
                x = (x - mean) / std
                return self.transform(x), int(self.labels[i])

        transform = v2.Compose([v2.RandomHorizontalFlip(FLIP), v2.RandomCrop(28, padding=CROP_PADDING)])
        dataset = FashionMNIST(images, labels, transform)
    elif a.case == "folder":
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.Grayscale(), transforms.Resize((FOLDER_SIZE, FOLDER_SIZE)), transforms.ToTensor()])
        dataset = datasets.ImageFolder(a.png_root, transform=transform)
    else:
        raise SystemExit(f"unknown case {a.case}")

    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=a.workers, persistent_workers=a.workers > 0)
    started_setup = time.perf_counter()

    def batches():
        while True:  # epoch after epoch, as ours does when an epoch has fewer batches
            yield from loader

    it = batches()
    for _ in range(a.warmup_batches):
        next(it)
    warmup_seconds = time.perf_counter() - started_setup
    samples = 0
    started = time.perf_counter()
    for _ in range(a.batches):
        x, y = next(it)
        samples += len(y)
    seconds = time.perf_counter() - started
    shape = list(x.shape)
    del it
    print(
        json.dumps(
            {
                "batches": a.batches,
                "samples": samples,
                "seconds": seconds,
                "samples_per_second": samples / seconds,
                "warmup_batches": a.warmup_batches,
                "warmup_seconds": warmup_seconds,
                "batch_shape": shape,
                "dataset_samples": len(dataset),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------------------------


def host_cmd(args, *rest):
    return [HOST, "--registry", args.registry, *rest]


def check_prerequisites(args):
    needs_ours = ("ours" in args.contenders and any(c in args.cases for c in ("augment", "folder"))) or "memory" in args.cases
    if needs_ours:
        missing = [p for p in (HOST, ENGINE, args.registry) if not os.path.exists(p)]
        if missing:
            fail(f"{', '.join(os.path.relpath(m, ROOT) for m in missing)} missing: run scripts/setup.sh first")
        helped = subprocess.run(host_cmd(args, "validate", "--help"), cwd=ROOT, capture_output=True, text=True).stdout
        if "--measure-data" not in helped:
            fail("this gymnos-host has no `validate --measure-data`: rebuild it (cargo build --release)")
        listed = subprocess.run(host_cmd(args, "plugins", "list", "--json"), cwd=ROOT, capture_output=True, text=True)
        if listed.returncode != 0:
            fail(f"`gymnos-host plugins list` failed ({listed.stderr.strip()}): run scripts/setup.sh")
        loadable = {p["name"] for p in json.loads(listed.stdout) if p.get("loadable")}
        needed = set().union(*(PLUGINS[c] for c in args.cases))
        if not needed <= loadable:
            fail(
                f"plugins {', '.join(sorted(needed - loadable))} are not installed in {args.registry}: "
                "run scripts/setup.sh (or `target/release/gymnos-host plugins install --builtins --replace` after a build)"
            )
    if "augment" in args.cases and not all(
        os.path.exists(os.path.join(args.data, f)) for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    ):
        fail(f"{args.data}: no Fashion-MNIST IDX files: run scripts/setup.sh")
    if "folder" in args.cases and not os.path.isdir(args.png_root):
        fail(
            f"{args.png_root} missing: scripts/setup.sh writes it (or: target/release/gymnos-idx-to-images "
            f"--images data/fashion-mnist/train-images-idx3-ubyte.gz --labels data/fashion-mnist/train-labels-idx1-ubyte.gz "
            f"--out {os.path.relpath(args.png_root, ROOT)} --format png)"
        )


def child_env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env




def last_json(stdout):
    """The JSON document a command printed (pretty-printed or one line), the last if several."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON in the output")
    try:
        return json.loads(stdout[start:])
    except json.JSONDecodeError:
        lines = [l for l in stdout.splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1])


def experiment(name, dataset, augmentors, training, preprocessors=()):
    return {
        "experiment": {"name": name, "seed": 0, "description": "benches/data.py"},
        "dataset": dataset,
        "preprocessors": [{"plugin": p} for p in preprocessors],
        "data_augmentors": augmentors,
        "model": MODEL,
        "training": {
            "epochs": 1,
            "batch_size": BATCH_SIZE,
            "optimizer": {"name": "adam", "lr": 1e-3},
            "device": "cpu",
            **training,
        },
    }


def write_json(work, name, doc):
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    return path


def ours_experiment(case, work, args):
    no_val = {"callbacks": {"checkpoint": {"monitor": "train_loss", "save_best": False}}, "num_workers": args.workers}
    if case == "augment":
        doc = experiment(
            "bench-data-augment",
            {"plugin": "idx@^1", "config": {"path": os.path.abspath(args.data)}, "split": {"train": 1.0, "val": 0.0, "test": 0.0}},
            [
                {"plugin": "random-flip@^1", "config": {"horizontal": FLIP}},
                {"plugin": "random-crop@^1", "config": {"padding": CROP_PADDING}},
            ],
            no_val,
            preprocessors=["standardize@^1"],
        )
    else:
        doc = experiment(
            "bench-data-folder",
            {
                "plugin": "image-folder@^1",
                "config": {"root": os.path.abspath(args.png_root), "height": FOLDER_SIZE, "width": FOLDER_SIZE, "color": "grayscale"},
                "split": {"train": 1.0, "val": 0.0, "test": 0.0},
            },
            [],
            no_val,
        )
    return write_json(work, f"bench-data-{case}", doc)


def run_ours(case, work, repeat, args, env):
    exp = ours_experiment(case, work, args)
    batches = args.batches if case == "augment" else args.folder_batches
    cmd = host_cmd(args, "validate", "--deep", "--measure-data", str(batches), "--json", exp)
    stdout, wall = run_child(cmd, os.path.join(work, f"ours-{case}-{repeat}.log"), env)
    report = last_json(stdout)
    speed = report.get("data_pipeline")
    if not speed:
        fail(f"`{' '.join(cmd)}` printed no data_pipeline")
    return {**speed, "train_samples": (report.get("data") or {}).get("train_samples"), "wall_seconds": wall}


def run_pytorch(case, work, repeat, args, env):
    batches = args.batches if case == "augment" else args.folder_batches
    cmd = [sys.executable, os.path.abspath(__file__), "--pytorch-child", case, "--batches", str(batches)]
    cmd += ["--warmup-batches", str(args.warmup_batches), "--workers", str(args.workers), "--threads", str(args.threads)]
    cmd += ["--data", os.path.abspath(args.data), "--png-root", os.path.abspath(args.png_root), "--seed", str(args.seed)]
    stdout, wall = run_child(cmd, os.path.join(work, f"pytorch-{case}-{repeat}.log"), env)
    return {**last_json(stdout), "wall_seconds": wall}


def peak_rss_kib(cmd, log_path, env):
    """Runs cmd; its peak resident memory in KiB: the largest of the process and its descendants."""
    if os.path.exists("/usr/bin/time"):
        full = ["/usr/bin/time", "-v", *cmd]
        run_child(full, log_path, env)
        with open(log_path) as f:
            found = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
        if not found:
            fail(f"no `Maximum resident set size` in {log_path}")
        return int(found[-1]), "/usr/bin/time -v"
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    run_child(cmd, log_path, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        print(f"warning: getrusage's peak did not grow over an earlier child's ({before} KiB); the figure is a lower bound", file=sys.stderr)
    return after, "getrusage(RUSAGE_CHILDREN).ru_maxrss"


def run_memory(samples, work, repeat, args, env):
    doc = experiment(
        f"bench-data-memory-{samples}",
        {
            "plugin": "synthetic@^1",
            "config": {"samples": samples, "shape": MEMORY_SHAPE, "classes": MEMORY_CLASSES, "seed": args.seed},
            "split": {"train": 0.8, "val": 0.1, "test": 0.1},
        },
        [],
        {"num_workers": args.workers, "limit_train_batches": args.memory_batches, "limit_eval_batches": 5},
    )
    exp = write_json(work, f"bench-data-memory-{samples}", doc)
    out_root = os.path.join(work, "runs", f"memory-{samples}-{repeat}")
    cmd = host_cmd(args, "run", exp, "--output-root", out_root, "--no-progress")
    started = time.perf_counter()
    kib, how = peak_rss_kib(cmd, os.path.join(work, f"ours-memory-{samples}-{repeat}.log"), env)
    wall = time.perf_counter() - started
    shutil.rmtree(out_root, ignore_errors=True)
    return {"peak_rss_kib": kib, "peak_rss_mib": kib / 1024, "measured_with": how, "wall_seconds": wall}


def warm_page_cache(root):
    """Reads every file under root once, so that no contender pays for the first read from disk."""
    started, total, count = time.perf_counter(), 0, 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                total += len(f.read())
            count += 1
    return count, total, time.perf_counter() - started




def machine():
    import multiprocessing

    import PIL
    import torchvision

    return describe_machine(
        torchvision=torchvision.__version__,
        pillow=PIL.__version__,
        multiprocessing_start_method=multiprocessing.get_start_method(),
    )


def spread(values, fmt):
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--pytorch-child":
        return pytorch_child(sys.argv[2:])
    args = parse_args()
    check_prerequisites(args)
    env = child_env(args.threads)
    work = tempfile.mkdtemp(prefix="gymnos-bench-data-")
    info = machine()
    print(
        f"data benchmark: cases {','.join(args.cases)}, {args.repeats} repeat(s), batch {BATCH_SIZE}, {args.workers} loader "
        f"threads/workers, {args.threads} intra-op thread(s); {info['cpu']}, {info['cpu_cores']} cores; work folder {work}",
        flush=True,
    )
    if "folder" in args.cases:
        count, total, secs = warm_page_cache(args.png_root)
        print(f"  read {count} files ({total / 2**20:.1f} MiB) of {args.png_root} once into the page cache in {secs:.1f} s", flush=True)

    speed_cases = [c for c in args.cases if c in ("augment", "folder")]
    runs = {(c, k): [] for c in speed_cases for k in args.contenders}
    memory = {n: [] for n in args.memory_samples} if "memory" in args.cases else {}
    for repeat in range(args.repeats):
        for case in speed_cases:
            for contender in args.contenders:
                run = (run_ours if contender == "ours" else run_pytorch)(case, work, repeat, args, env)
                runs[(case, contender)].append(run)
                print(
                    f"  repeat {repeat + 1}/{args.repeats} {case:<7} {contender:<7} {run['samples_per_second']:10.0f} samples/s  "
                    f"({run['batches']} batches, {run['samples']} samples in {run['seconds']:.2f} s; {run['wall_seconds']:.1f} s wall)",
                    flush=True,
                )
        for n in memory:
            run = run_memory(n, work, repeat, args, env)
            memory[n].append(run)
            print(
                f"  repeat {repeat + 1}/{args.repeats} memory  {n:>10} samples: peak RSS {run['peak_rss_mib']:.0f} MiB "
                f"({run['wall_seconds']:.1f} s wall)",
                flush=True,
            )

    results, ratios, warnings = [], {}, []
    for case in speed_cases:
        med = {}
        for contender in args.contenders:
            rs = runs[(case, contender)]
            sps = [r["samples_per_second"] for r in rs]
            med[contender] = statistics.median(sps)
            results.append(
                {
                    "case": case,
                    "contender": contender,
                    "samples_per_second_median": med[contender],
                    "samples_per_second_min": min(sps),
                    "samples_per_second_max": max(sps),
                    "samples_per_second_per_run": sps,
                    "runs": rs,
                }
            )
        if {"ours", "pytorch"} <= med.keys():
            ratio = med["ours"] / med["pytorch"]
            ratios[case] = {"ours/pytorch": ratio, "target": TARGETS[case], "met": ratio >= TARGETS[case]}
            if not ratio >= TARGETS[case]:
                warnings.append(f"{case}: ours/pytorch {ratio:.2f} is below the target {TARGETS[case]:g}")
    memory_results = []
    for n, rs in memory.items():
        mib = [r["peak_rss_mib"] for r in rs]
        memory_results.append(
            {
                "samples": n,
                "peak_rss_mib_median": statistics.median(mib),
                "peak_rss_mib_min": min(mib),
                "peak_rss_mib_max": max(mib),
                "peak_rss_mib_per_run": mib,
                "runs": rs,
            }
        )
    if len(memory_results) >= 2:
        lo, hi = memory_results[0], memory_results[-1]
        ratios["memory"] = {
            f"peak {hi['samples']}/{lo['samples']}": hi["peak_rss_mib_median"] / lo["peak_rss_mib_median"],
            "samples ratio": hi["samples"] / lo["samples"],
        }

    if results:
        header = f"{'case':<8} {'contender':<9} {'samples/s (median)':>18} {'spread (min-max)':>19} {'batches':>7}"
        print()
        print(header)
        print("-" * len(header))
        for r in results:
            print(
                f"{r['case']:<8} {r['contender']:<9} {r['samples_per_second_median']:18.0f} "
                f"{spread(r['samples_per_second_per_run'], '{:.0f}'):>19} {r['runs'][0]['batches']:>7}"
            )
    if memory_results:
        header = f"{'memory: samples':>16} {'peak RSS MiB (median)':>22} {'spread (min-max)':>17}"
        print()
        print(header)
        print("-" * len(header))
        for r in memory_results:
            print(f"{r['samples']:>16} {r['peak_rss_mib_median']:22.0f} {spread(r['peak_rss_mib_per_run'], '{:.0f}'):>17}")
    if ratios:
        print()
        for case in speed_cases:
            if case in ratios:
                r = ratios[case]
                print(f"{case:<8} ours/pytorch samples/s: {r['ours/pytorch']:.2f}x (target >= {r['target']:g}x: {'met' if r['met'] else 'NOT met'})")
        if "memory" in ratios:
            r = ratios["memory"]
            key = next(k for k in r if k.startswith("peak"))
            print(f"memory   peak RSS {key.split(' ', 1)[1]} samples: {r[key]:.2f}x (for {r['samples ratio']:g}x the samples)")
    for w in warnings:
        print(f"warning: {w}")

    if args.out:
        report = {
            "settings": {
                "repeats": args.repeats,
                "cases": args.cases,
                "contenders": args.contenders,
                "batch_size": BATCH_SIZE,
                "batches": {"augment": args.batches, "folder": args.folder_batches},
                "pytorch_warmup_batches": args.warmup_batches,
                "workers": args.workers,
                "threads": args.threads,
                "augment": {"horizontal_flip": FLIP, "crop": 28, "padding": CROP_PADDING},
                "folder": {"root": args.png_root, "height": FOLDER_SIZE, "width": FOLDER_SIZE, "color": "grayscale"},
                "memory": {
                    "samples": args.memory_samples,
                    "shape": MEMORY_SHAPE,
                    "classes": MEMORY_CLASSES,
                    "limit_train_batches": args.memory_batches,
                    "limit_eval_batches": 5,
                },
                "model": MODEL,
                "seed": args.seed,
            },
            "machine": info,
            "results": results,
            "memory": memory_results,
            "ratios": ratios,
            "warnings": warnings,
        }
        write_report(args.out, report)
    end_work(work, args.keep)


if __name__ == "__main__":
    main()
