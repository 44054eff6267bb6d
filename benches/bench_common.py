"""What the benchmark scripts share: the repository root, failing in one line, running a child
process with its output kept in a log, sampling GPU utilisation meanwhile, describing the
machine, and writing the results."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run_child(cmd, log_path, env):
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    wall = time.perf_counter() - started
    with open(log_path, "a") as log:
        log.write("\n--- stdout ---\n" + proc.stdout)
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        fail(f"`{' '.join(cmd)}` exited with {proc.returncode} (log kept: {log_path}); its output ends with:\n{tail}")
    return proc.stdout, wall


class GpuUtilisation:
    """Samples the utilisation of GPU 0 (percent of time a kernel ran) with `nvidia-smi` every
    100 ms while the `with` block runs. `summary()`: the mean over every sample (start-up
    included) and over the samples where the GPU was in use, or None when disabled or without
    nvidia-smi."""

    def __init__(self, enabled):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples = []

    def __enter__(self):
        if self.enabled:
            cmd = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.proc.terminate()
            out, _ = self.proc.communicate()
            self.samples = [int(line) for line in out.split() if line.strip().isdigit()]
        return False

    def summary(self):
        if not self.samples:
            return None
        busy = [s for s in self.samples if s > 0]
        return {
            "mean_percent": sum(self.samples) / len(self.samples),
            "busy_mean_percent": sum(busy) / len(busy) if busy else 0.0,
            "samples": len(self.samples),
        }


def machine(**extra):
    """The CPU, memory, torch, Python, commit (`-dirty` with uncommitted changes) and GPU, and
    `extra`."""
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        commit += "-dirty"
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), None)
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(mem / 1024 / 1024, 1) if mem else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit,
        **extra,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_report(path, report):
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"results written to {path}")


def end_work(work, keep):
    """Removes the work folder (experiments, logs, run records), unless asked to keep it."""
    if keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
