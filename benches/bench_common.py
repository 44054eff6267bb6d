"""What the benchmark scripts share: the repository root, failing in one line, running a child
process with its output kept in a log, describing the machine, and writing the results."""

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
