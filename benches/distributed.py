"""Data-parallel scaling on one machine (benches/README.md): the default experiment's CNN trained
for `--epochs` epochs by one process using every core, and by `--processes` processes
(`gymnos-host run --nproc-per-node`) that split the cores, interleaved, `--repeats` times. Each
run's last epoch is timed (the first pays libtorch's warm-up) from its `metrics.json`: epoch
seconds and training samples per second (all ranks together), and the test accuracy."""

import argparse
import glob
import json
import os
import statistics
import tempfile

from bench_common import ROOT, end_work, fail, machine, run_child, write_report

HOST = os.path.join(ROOT, "target", "release", "gymnos-host")
EXPERIMENT = os.path.join(ROOT, "experiments", "fashion-mnist-cnn.json")


def one_run(work, label, repeat, processes, threads, epochs):
    root = os.path.join(work, f"{label}-{repeat}")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [HOST, "--registry", os.path.join(ROOT, "registry.json"), "run", EXPERIMENT, "--no-progress",
           "--output-root", root, "--set", f"training.epochs={epochs}"]
    if processes > 1:
        cmd += ["--nproc-per-node", str(processes)]
    run_child(cmd, os.path.join(work, f"{label}-{repeat}.log"), env)
    record = json.load(open(glob.glob(os.path.join(root, "*", "executions", "*", "metrics.json"))[0]))
    history = record["history"]
    return {
        "epoch_seconds": history["epoch_seconds"][-1],
        "samples_per_second": history["train_samples_per_second"][-1],
        "test_accuracy": record["test"]["accuracy"],
        "world_size": (record.get("distributed") or {}).get("world_size", 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if not os.path.isfile(HOST):
        fail(f"{HOST} is missing: run scripts/setup.sh")
    cores = os.cpu_count() or 1
    if cores < args.processes:
        fail(f"{args.processes} processes need at least as many cores; this machine has {cores}")
    contenders = [
        (f"1x{cores}", 1, cores),
        (f"{args.processes}x{cores // args.processes}", args.processes, cores // args.processes),
    ]
    work = tempfile.mkdtemp(prefix="gymnos-bench-distributed-")
    runs = {label: [] for label, _, _ in contenders}
    for repeat in range(args.repeats):
        for label, processes, threads in contenders:
            result = one_run(work, label, repeat, processes, threads, args.epochs)
            runs[label].append(result)
            print(f"{label} #{repeat}: {result['epoch_seconds']:.2f} s/epoch, {result['samples_per_second']:.0f} samples/s")
    table = {}
    for label, results in runs.items():
        seconds = [r["epoch_seconds"] for r in results]
        table[label] = {
            "median_epoch_seconds": statistics.median(seconds),
            "min_epoch_seconds": min(seconds),
            "max_epoch_seconds": max(seconds),
            "median_samples_per_second": statistics.median(r["samples_per_second"] for r in results),
            "test_accuracy": statistics.median(r["test_accuracy"] for r in results),
        }
    single, parallel = (table[c[0]] for c in contenders)
    ratio = parallel["median_epoch_seconds"] / single["median_epoch_seconds"]
    print(f"\n{'processes x threads':>20} {'epoch s (median, min-max)':>28} {'samples/s':>10} {'test acc':>9}")
    for label, row in table.items():
        print(f"{label:>20} {row['median_epoch_seconds']:>10.2f} ({row['min_epoch_seconds']:.2f}-{row['max_epoch_seconds']:.2f})"
              f"{'':>8} {row['median_samples_per_second']:>10.0f} {row['test_accuracy']:>9.4f}")
    print(f"\n{contenders[1][0]} / {contenders[0][0]} epoch time: {ratio:.2f}")
    if args.out:
        write_report(args.out, {"machine": machine(), "settings": vars(args), "runs": runs, "table": table, "ratio": ratio})
    end_work(work, args.keep)


if __name__ == "__main__":
    main()
