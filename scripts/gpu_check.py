"""The CUDA path, proven in one call (scripts/gpu-check.sh says how it is called).

`pack` (here, after the set-up) writes target/gpu-check/ (or --out DIR): `bundle.tar.xz` (the
stripped binaries, the built-in plugins the checks use, a Fashion-MNIST slice) and
`manifest.json` (every file of the bundle with its size and sha256, the build, the commit).

`run` (on the GPU machine, from the repository root, the bundle carried) unpacks the bundle,
installs its plugins into a registry of its own, and runs the checks, each with its time limit,
writing `gpu-check.json` and `gpu-check.txt` into $OUT (or --out DIR) after every check, so that
a timeout still leaves what finished:

  1. cuda            what the engine sees (device, capability, memory, driver, libtorch's CUDA)
                     and a training step whose plugin tensors live on the device
  2. precision       the default CNN for a fixed number of steps on CUDA in fp32, bf16 and fp16
                     against the same steps on the CPU; channels-last on and off
  3. fused_optimizer the fused kernels against the per-parameter reference, 10 steps
  4. resume          a run paused and resumed, and one preempted mid-epoch and resumed, against
                     the uninterrupted run
  5. benchmark       the product against PyTorch eager on the same device, MLP and CNN, batch 128
                     and 512 (benches/training.py)
  6. data_parallel   NCCL's process group for a world of one; two processes sharing the GPU
                     through Gloo (NCCL refuses two ranks on one device)
  7. sweep           two trials of a sweep, each pinned with CUDA_VISIBLE_DEVICES

Without a GPU each check runs what it can on the CPU (the suite runs this), the last line says
that there is no GPU, and the exit status is 1. A check's result: `passed`, `failed` (with why),
`cpu_only` (its CPU part passed; its CUDA part needs a GPU) or `skipped`.
"""

import argparse
import glob
import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE_LIMIT = 40 * 1024 * 1024
# The plugins the checks train with (the crates' library files).
PLUGINS = ["gymnos-synthetic", "gymnos-idx-dataset", "gymnos-standardize", "gymnos-random-flip", "gymnos-mlp", "gymnos-cnn", "gymnos-linear"]
# The Fashion-MNIST slice: the first images of each part, as gzipped IDX files.
SLICE = {"train": 12000, "t10k": 2000}
# The time limits of the checks, seconds (6 minutes in all).
LIMITS = {"cuda": 40, "precision": 70, "fused_optimizer": 20, "resume": 50, "benchmark": 120, "data_parallel": 40, "sweep": 40}


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- pack -------------------------------------------------------------------------------------


def idx_slice(source, target, count):
    """The first `count` items of a gzipped IDX file, as another."""
    with gzip.open(source, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = list(struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims]))
    item = 1
    for d in shape[1:]:
        item *= d
    shape[0] = min(count, shape[0])
    header = data[:4] + struct.pack(f">{dims}I", *shape)
    body = data[4 + 4 * dims : 4 + 4 * dims + shape[0] * item]
    with gzip.open(target, "wb", compresslevel=9) as f:
        f.write(header + body)


def pack(args):
    release = os.path.join(ROOT, "target", "release")
    out = args.out or os.path.join(ROOT, "target", "gpu-check")
    staging = tempfile.mkdtemp(prefix="gymnos-gpu-pack-")
    try:
        files = []
        os.makedirs(os.path.join(staging, "bin"))
        os.makedirs(os.path.join(staging, "plugins"))
        os.makedirs(os.path.join(staging, "data", "fashion-mnist"))
        for name in ["gymnos-host", "gymnos-engine"]:
            source = os.path.join(release, name)
            if not os.path.isfile(source):
                fail(f"{source} is missing: run scripts/setup.sh")
            files.append((source, f"bin/{name}"))
        for package in PLUGINS:
            source = os.path.join(release, "lib" + package.replace("-", "_") + ".so")
            if not os.path.isfile(source):
                fail(f"{source} is missing: run scripts/setup.sh")
            files.append((source, "plugins/" + os.path.basename(source)))
        for source, target in files:
            shutil.copy2(source, os.path.join(staging, target))
            subprocess.run(["strip", "--strip-unneeded", os.path.join(staging, target)], check=True)
        fmnist = os.path.join(ROOT, "data", "fashion-mnist")
        for part, count in SLICE.items():
            for kind in ["images-idx3", "labels-idx1"]:
                name = f"{part}-{kind}-ubyte.gz"
                if not os.path.isfile(os.path.join(fmnist, name)):
                    fail(f"{os.path.join(fmnist, name)} is missing: run scripts/setup.sh")
                idx_slice(os.path.join(fmnist, name), os.path.join(staging, "data", "fashion-mnist", name), count)
        members = sorted(
            os.path.relpath(os.path.join(d, f), staging) for d, _, fs in os.walk(staging) for f in fs
        )
        os.makedirs(out, exist_ok=True)
        bundle = os.path.join(out, "bundle.tar.xz")
        partial = bundle + ".partial"
        with tarfile.open(partial, "w:xz", preset=6) as tar:
            for member in members:
                tar.add(os.path.join(staging, member), arcname=member)
        size = os.path.getsize(partial)
        if size > BUNDLE_LIMIT:
            os.remove(partial)
            fail(f"the bundle would take {size / 2**20:.1f} MiB, over the {BUNDLE_LIMIT / 2**20:.0f} MiB it may")
        os.replace(partial, bundle)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        build = open(os.path.join(ROOT, ".venv", "libtorch", "build-version")).read().strip() if os.path.exists(os.path.join(ROOT, ".venv", "libtorch", "build-version")) else None
        manifest = {
            "bundle": "bundle.tar.xz",
            "bundle_bytes": size,
            "bundle_sha256": sha256(bundle),
            "commit": commit,
            "libtorch": build,
            "fashion_mnist_slice": SLICE,
            "files": [
                {"path": m, "bytes": os.path.getsize(os.path.join(staging, m)), "sha256": sha256(os.path.join(staging, m))}
                for m in members
            ],
        }
        with open(os.path.join(out, "manifest.json.partial"), "w") as f:
            json.dump(manifest, f, indent=2)
        os.replace(os.path.join(out, "manifest.json.partial"), os.path.join(out, "manifest.json"))
        print(f"{bundle}: {size / 2**20:.1f} MiB, {len(members)} files (manifest.json beside it)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- run --------------------------------------------------------------------------------------


class Checker:
    def __init__(self, args):
        self.args = args
        self.python = args.python
        self.out = args.out or os.environ.get("OUT") or os.path.join(ROOT, "target", "gpu-check", "results")
        os.makedirs(self.out, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="gymnos-gpu-check-")
        self.results = []
        self.started = time.monotonic()

    # Running things.

    def command(self, args, limit, env=None, cwd=None):
        """Runs a command with a time limit; (exit status, stdout, stderr); 124 on timeout."""
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=limit, env=env, cwd=cwd or self.work)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            return 124, out, err + f"\n(timed out after {limit}s)"

    def host(self, *args, limit=60, env=None):
        return self.command([self.host_bin, "--registry", self.registry, *args], limit, env=env)

    def engine(self, *args, limit=60):
        code, out, err = self.command([self.engine_bin, *args], limit)
        if code != 0:
            raise RuntimeError(f"gymnos-engine {' '.join(args)} exited with {code}: {last_line(err)}")
        return json.loads(out)

    def experiment(self, name, exp):
        path = os.path.join(self.work, f"{name}.json")
        with open(path, "w") as f:
            json.dump(exp, f)
        return path

    def train(self, name, exp, *extra, limit=60, env=None, expect=0):
        """Runs an experiment; its run folder's metrics.json."""
        path = self.experiment(name, exp)
        root = os.path.join(self.work, "runs", name)
        code, out, err = self.host("run", path, "--no-progress", "--output-root", root, *extra, limit=limit, env=env)
        if code != expect:
            raise RuntimeError(f"`run {name}` exited with {code}: {last_line(err)}")
        return run_dir(root)

    # The bundle.

    def unpack(self):
        bundle_dir = self.args.bundle or os.path.join(ROOT, "target", "gpu-check")
        manifest = json.load(open(os.path.join(bundle_dir, "manifest.json")))
        bundle = os.path.join(bundle_dir, manifest["bundle"])
        if sha256(bundle) != manifest["bundle_sha256"]:
            fail(f"{bundle}: its sha256 is not the manifest's: pack it again")
        with tarfile.open(bundle, "r:xz") as tar:
            tar.extractall(self.work, filter="data")
        for entry in manifest["files"]:
            if sha256(os.path.join(self.work, entry["path"])) != entry["sha256"]:
                fail(f"{entry['path']}: not what the manifest says")
        self.host_bin = os.path.join(self.work, "bin", "gymnos-host")
        self.engine_bin = os.path.join(self.work, "bin", "gymnos-engine")
        self.data = os.path.join(self.work, "data", "fashion-mnist")
        registry_dir = os.path.join(self.work, "registry")
        self.registry = os.path.join(registry_dir, "registry.json")
        for args in (["plugins", "init", "--no-builtins", registry_dir], ["plugins", "install", os.path.join(self.work, "plugins")]):
            code, _, err = self.command([self.host_bin, "--registry", self.registry, *args], 60)
            if code != 0:
                fail(f"gymnos-host {' '.join(args)}: {last_line(err)}")
        self.manifest = manifest

    # Recording.

    def record(self, name, status, seconds, **details):
        self.results.append({"check": name, "status": status, "seconds": round(seconds, 2), **details})
        summary = {
            "gpu": self.gpu,
            "python": self.python,
            "bundle": {k: self.manifest.get(k) for k in ("commit", "libtorch", "bundle_bytes")},
            "elapsed_seconds": round(time.monotonic() - self.started, 1),
            "checks": self.results,
        }
        with open(os.path.join(self.out, "gpu-check.json.partial"), "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(os.path.join(self.out, "gpu-check.json.partial"), os.path.join(self.out, "gpu-check.json"))
        lines = [f"{'check':<16} {'status':<9} {'seconds':>8}  details"]
        for r in self.results:
            brief = {k: v for k, v in r.items() if k not in ("check", "status", "seconds")}
            lines.append(f"{r['check']:<16} {r['status']:<9} {r['seconds']:>8.1f}  {json.dumps(brief)[:300]}")
        with open(os.path.join(self.out, "gpu-check.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(lines[-1], flush=True)

    def check(self, name, fn):
        started = time.monotonic()
        try:
            status, details = fn()
        except Exception as e:  # a check that cannot finish is a failed check, not the end
            status, details = "failed", {"why": str(e)}
        self.record(name, status, time.monotonic() - started, **details)

    # The GPU.

    def find_gpu(self):
        code, out, _ = self.command(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"], 20) if shutil.which("nvidia-smi") else (1, "", "")
        rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()] if code == 0 else []
        probe = subprocess.run([self.python, "-c", "import torch, json; print(json.dumps({'available': torch.cuda.is_available(), 'cuda': torch.version.cuda, 'count': torch.cuda.device_count()}))"], capture_output=True, text=True, timeout=120)
        torch_view = json.loads(probe.stdout) if probe.returncode == 0 else {"available": False, "error": last_line(probe.stderr)}
        self.gpu = {
            "nvidia_smi": [dict(zip(["name", "memory", "driver", "capability"], r)) for r in rows],
            "torch": torch_view,
        }
        return bool(torch_view.get("available"))


def last_line(text):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def run_dir(root):
    runs = glob.glob(os.path.join(root, "*", "executions", "*"))
    if len(runs) != 1:
        raise RuntimeError(f"{root}: {len(runs)} run folders")
    return runs[0]


def metrics(run):
    return json.load(open(os.path.join(run, "metrics.json")))


def deterministic(record):
    history = {k: v for k, v in record["history"].items() if k not in ("epoch_seconds", "train_samples_per_second", "data_wait_seconds")}
    return history, record.get("test")


def relative(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def synthetic(name, device, epochs=4, dropout=0.2, extra=None):
    training = {"epochs": epochs, "batch_size": 32, "device": device, "optimizer": {"name": "adam", "lr": 0.01}}
    training.update(extra or {})
    return {
        "experiment": {"name": name, "seed": 3},
        "dataset": {"plugin": "synthetic", "config": {"samples": 2000, "shape": [32], "classes": 5, "noise": 1.0, "seed": 1}},
        "model": {"plugin": "mlp", "config": {"hidden": [64], "dropout": dropout}},
        "training": training,
    }


def cnn(name, data, device, precision="fp32", channels_last=True, steps=30):
    return {
        "experiment": {"name": name, "seed": 42},
        "dataset": {"plugin": "idx", "config": {"path": data}, "split": {"train": 0.9, "val": 0.1, "test": 0.0}},
        "preprocessors": [{"plugin": "standardize"}],
        "model": {"plugin": "cnn", "config": {"channels": [32, 64], "hidden": 128, "dropout": 0.0, "channels_last": channels_last}},
        "training": {
            "epochs": 1, "batch_size": 128, "device": device, "precision": precision,
            "optimizer": {"name": "adamw", "lr": 0.002},
            "limit_train_batches": steps, "limit_eval_batches": 2, "num_workers": 2,
        },
    }


def run_checks(args):
    c = Checker(args)
    cuda = c.find_gpu()
    c.unpack()
    device = "cuda" if cuda else "cpu"
    print(f"gpu-check: {'GPU: ' + json.dumps(c.gpu['nvidia_smi']) if cuda else 'no GPU: the CPU parts only'}; results in {c.out}", flush=True)

    def check_cuda():
        seen = c.engine("selftest", "device", "--device", "cuda:0" if cuda else "cpu")
        run = c.train("cuda-step", synthetic("cuda-step", device, epochs=1), limit=LIMITS["cuda"])
        hardware = metrics(run)["hardware"]
        details = {"engine": seen, "nvidia_smi": c.gpu["nvidia_smi"], "torch_cuda": c.gpu["torch"].get("cuda"), "trained_on": hardware["device"]}
        if not cuda:
            return "cpu_only", details
        ok = seen["cuda_available"] and seen["tensor_on_device"] and hardware["device"].startswith("Cuda")
        return ("passed" if ok else "failed"), details

    def check_precision():
        losses = {}
        variants = [("cpu-fp32", "cpu", "fp32", True), ("cpu-fp32-nchw", "cpu", "fp32", False)]
        if cuda:
            variants += [("cuda-fp32", "cuda", "fp32", True), ("cuda-bf16", "cuda", "bf16", True), ("cuda-fp16", "cuda", "fp16", True), ("cuda-fp32-nchw", "cuda", "fp32", False)]
        for name, dev, precision, channels_last in variants:
            record = metrics(c.train(name, cnn(name, c.data, dev, precision, channels_last), limit=LIMITS["precision"]))
            losses[name] = record["history"]["train_loss"][0]
        # 30 steps: kernels differ (cuDNN, TF32 off by default in libtorch for matmul) and their
        # rounding compounds; 2 % for fp32 and channels-last, 5 % for the low precisions.
        bounds = {"cpu-fp32-nchw": ("cpu-fp32", 0.02), "cuda-fp32": ("cpu-fp32", 0.02), "cuda-bf16": ("cuda-fp32", 0.05),
                  "cuda-fp16": ("cuda-fp32", 0.05), "cuda-fp32-nchw": ("cuda-fp32", 0.02)}
        compared = {k: {"against": a, "relative": relative(losses[k], losses[a]), "bound": b} for k, (a, b) in bounds.items() if k in losses}
        ok = all(v["relative"] <= v["bound"] for v in compared.values())
        status = "failed" if not ok else ("passed" if cuda else "cpu_only")
        return status, {"train_loss": losses, "compared": compared}

    def check_fused():
        comparisons = c.engine("selftest", "fused", "--device", "cuda:0" if cuda else "cpu", limit=LIMITS["fused_optimizer"])
        worst = max(x["max_relative_error"] for x in comparisons)
        fell_back = [x["settings"] for x in comparisons if x["fell_back"]]
        ok = worst <= 2.5e-7 and not fell_back
        return ("failed" if not ok else ("passed" if cuda else "cpu_only")), {"max_relative_error": worst, "bound": 2.5e-7, "fell_back": fell_back}

    def check_resume():
        straight = metrics(c.train("straight", synthetic("straight", device)))
        paused_run = c.train("paused", synthetic("paused", device), "--stop-after-epoch", "2")
        code, _, err = c.host("resume", paused_run, "--no-progress", limit=LIMITS["resume"])
        if code != 0:
            raise RuntimeError(f"resume: {last_line(err)}")
        paused = metrics(paused_run)
        # Preempted mid-epoch: SIGUSR1 once the first epoch's checkpoint exists.
        path = c.experiment("preempted", synthetic("preempted", device, epochs=40))
        root = os.path.join(c.work, "runs", "preempted")
        proc = subprocess.Popen([c.host_bin, "--registry", c.registry, "run", path, "--no-progress", "--output-root", root], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=c.work)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not glob.glob(os.path.join(root, "*", "executions", "*", "checkpoints", "last.safetensors")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=60)
        preempted_run = run_dir(root)
        status_then = metrics(preempted_run)["status"]
        code, _, err = c.host("resume", preempted_run, "--no-progress", limit=LIMITS["resume"])
        if code != 0:
            raise RuntimeError(f"resume after preemption: {last_line(err)}")
        uninterrupted = metrics(c.train("uninterrupted", synthetic("uninterrupted", device, epochs=40)))
        same_pause = deterministic(paused) == deterministic(straight)
        same_preempt = deterministic(metrics(preempted_run)) == deterministic(uninterrupted)
        details = {"paused_equal": same_pause, "preempt_exit": proc.returncode, "status_when_preempted": status_then, "preempted_equal": same_preempt}
        ok = same_pause and same_preempt and proc.returncode == 75 and status_then == "preempted"
        return ("failed" if not ok else ("passed" if cuda else "cpu_only")), details

    def check_benchmark():
        if not cuda:
            return "skipped", {"why": "the benchmark compares speeds on a GPU"}
        release = os.path.join(ROOT, "target", "release")
        os.makedirs(release, exist_ok=True)
        for name in ["gymnos-host", "gymnos-engine"]:
            link = os.path.join(release, name)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.join(c.work, "bin", name), link)
        results = {}
        for batch in [128, 512]:
            out = os.path.join(c.out, f"benchmark-{batch}.json")
            code, stdout, err = c.command(
                [c.python, os.path.join(ROOT, "benches", "training.py"), "--device", "cuda", "--models", "mlp,cnn",
                 "--contenders", "product,pytorch", "--repeats", "1", "--epochs", "2", "--warmup-epochs", "1",
                 "--batch-size", str(batch), "--data", c.data, "--registry", c.registry, "--out", out],
                LIMITS["benchmark"] // 2, cwd=ROOT)
            if code != 0:
                raise RuntimeError(f"benches/training.py at batch {batch}: {last_line(err) or last_line(stdout)}")
            results[batch] = json.load(open(out)).get("ratios")
        return "passed", {"ratios": results}

    def check_data_parallel():
        nccl = c.engine("selftest", "nccl", "--device", "cuda:0" if cuda else "cpu", limit=LIMITS["data_parallel"])
        run = c.train("two-ranks", synthetic("two-ranks", device, epochs=2, dropout=0.0), "--nproc-per-node", "2", "--dist-backend", "gloo", "--dist-timeout", "30", limit=LIMITS["data_parallel"])
        record = metrics(run)
        details = {"nccl_world_of_one": nccl, "two_ranks": {"status": record["status"], "world_size": record["distributed"]["world_size"], "backend": record["distributed"]["backend"], "device": record["hardware"]["device"]}}
        two_ok = record["status"] == "completed" and record["distributed"]["world_size"] == 2
        if not cuda:
            # Without a GPU libtorch refuses NCCL's group, saying so.
            ok = two_ok and "refused" in nccl
            return ("cpu_only" if ok else "failed"), details
        return ("passed" if two_ok and nccl.get("reduced") else "failed"), details

    def check_sweep():
        base = c.experiment("sweep-base", synthetic("sweep-base", device, epochs=2, dropout=0.0))
        sweep = {"name": "pinned", "experiment": base, "output_root": os.path.join(c.work, "sweeps"),
                 "parameters": {"training.optimizer.lr": {"values": [0.01, 0.003]}},
                 "metric": {"name": "test.accuracy", "direction": "max"},
                 "executor": {"kind": "local", "parallel": 2, "threads_per_trial": 1}}
        path = c.experiment("sweep", sweep)
        code, _, err = c.host("sweep", path, limit=LIMITS["sweep"])
        if code != 0:
            raise RuntimeError(f"sweep: {last_line(err)}")
        results = json.load(open(os.path.join(c.work, "sweeps", "pinned", "sweep.json")))
        trials = [{"status": t["status"], "device": metrics(t["run_dir"])["hardware"]["device"]} for t in results["trials"]]
        ok = all(t["status"] == "completed" for t in trials) and (not cuda or all(t["device"].startswith("Cuda") for t in trials))
        return ("failed" if not ok else ("passed" if cuda else "cpu_only")), {"trials": trials}

    for name, fn in [("cuda", check_cuda), ("precision", check_precision), ("fused_optimizer", check_fused), ("resume", check_resume),
                     ("benchmark", check_benchmark), ("data_parallel", check_data_parallel), ("sweep", check_sweep)]:
        c.check(name, fn)
    shutil.rmtree(c.work, ignore_errors=True)
    failed = [r["check"] for r in c.results if r["status"] == "failed"]
    if not cuda:
        fail(f"no CUDA GPU on this machine (torch.cuda.is_available() is False{'; nvidia-smi: none' if not c.gpu['nvidia_smi'] else ''}): ran the checks' CPU parts only{', and ' + ', '.join(failed) + ' failed' if failed else ''}; see {c.out}/gpu-check.txt")
    if failed:
        fail(f"{', '.join(failed)} failed; see {c.out}/gpu-check.txt")
    print(f"gpu-check: every check passed in {time.monotonic() - c.started:.0f}s; see {c.out}/gpu-check.txt")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", help="where the bundle goes (default target/gpu-check)")
    r = sub.add_parser("run")
    r.add_argument("--out", help="where the results go (default $OUT, else target/gpu-check/results)")
    r.add_argument("--bundle", help="the folder of the bundle and its manifest (default target/gpu-check)")
    r.add_argument("--python", required=True, help="the Python with torch 2.11.0 (gpu-check.sh finds it)")
    args = parser.parse_args()
    if args.action == "pack":
        pack(args)
    else:
        run_checks(args)


if __name__ == "__main__":
    main()
