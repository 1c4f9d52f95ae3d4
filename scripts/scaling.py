#!/usr/bin/env python3
"""Data-parallel step time: measured here with mpirun, and modelled for a larger model (docs/scaling.md).

  scripts/scaling.py --measure     run bin/train_tiny under mpirun with 1, 2 and 4 ranks (and once without
                                   mpirun), write results/scaling/measured.tsv, then draw
  scripts/scaling.py               draw from the committed measured.tsv and the model below

Writes results/scaling/measured.tsv (per run: ranks, threads per rank, ms/step, and, as rank 0 saw them, the
ms/step spent waiting for the other ranks and in the all-reduce), results/scaling/model.tsv (the modelled setups)
and results/scaling/step_time.png (gnuplot: the step split into compute, waiting and all-reduce; measured, in % of
the step, on the left; modelled, in ms, on the right).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "results", "scaling")

# The measured configurations: the default --single model (d_model 64, 2 layers, T 128, batch 32) and a wider
# one whose gradient is 40x larger, so that the all-reduce's share shows.
CONFIGS = {  # name: (flags, steps)
    "small": (["--single", "--batch", "32"], 20),
    "wide": (["--single", "--batch", "32", "--d-model", "256", "--heads", "4", "--kv-heads", "4", "--head-dim", "64",
              "--layers", "4"], 6),
}
# (label, ranks, OpenMP threads per rank): 2 cores in all; 4 ranks oversubscribe them.
RUNS = [("1 process", 0, 2), ("mpirun -np 1", 1, 2), ("mpirun -np 2", 2, 1), ("mpirun -np 4", 4, 1)]
REPEATS = 3


def measure(binary):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_WAIT_POLICY="passive")
    mpirun = shutil.which("mpirun")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cname, (flags, steps) in CONFIGS.items():
            for label, ranks, threads in RUNS:
                cmd = ([] if ranks == 0 else [mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks)])
                cmd += [binary] + flags + ["--steps", str(steps), "--eval-interval", "0", "--eval-seqs", "8",
                                           "--threads", str(threads), "--ckpt", os.path.join(tmp, "m.ckpt")]
                best = None
                for _ in range(REPEATS):  # the machine is shared: keep the fastest of a few runs
                    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if r.returncode != 0:
                        sys.exit(f"scaling.py: {' '.join(cmd)} failed:\n{r.stderr}")
                    step = float(re.search(r"trained \d+ steps in [\d.]+ s \(([\d.]+) ms/step\)", r.stdout).group(1))
                    m = re.search(r"rank 0: all-reduce ([\d.]+) ms/step .* waiting for the other ranks ([\d.]+) "
                                  r"ms/step", r.stdout)
                    reduce_ms, wait_ms = (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)
                    if best is None or step < best[0]:
                        best = (step, wait_ms, reduce_ms)
                step, wait_ms, reduce_ms = best
                params = int(re.search(r"(\d+) parameters", r.stdout).group(1))
                rows.append((cname, params, label, max(ranks, 1), threads, step, wait_ms, reduce_ms))
                print(f"{cname:6s} {label:14s} {step:8.1f} ms/step, waiting {wait_ms:6.1f}, all-reduce "
                      f"{reduce_ms:6.1f} ms/step")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "measured.tsv"), "w") as f:
        f.write("config\tparams\trun\tranks\tthreads_per_rank\tms_per_step\twait_ms_per_step\tallreduce_ms_per_step\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r[:5]) + f"\t{r[5]:.1f}\t{r[6]:.1f}\t{r[7]:.1f}\n")


# ---- the model of a larger run (docs/scaling.md states every assumption) ----------------------------------
C, L, T, W, V, H, D = 1024, 16, 4096, 512, 256, 16, 64  # every layer local rattn, H*D = C, no GQA
F = ((8 * C // 3 + 7) // 8) * 8
GLOBAL_BATCH = 64  # sequences per step: 262144 tokens


def model_rows():
    params = L * (4 * C * C + 3 * C * F + 2 * C + 2 * H * D) + 2 * V * C + C
    grad_bytes = 4 * params  # fp32 gradient
    # FLOPs per token, training = forward + backward (2x forward): 6 per weight of every matmul, plus the
    # attention cores: SWA 2 matmuls of (w+1) keys, RLA with a 2D feature map (state update and read, 2 x 2 x 2D x D
    # per head) and the chunk's intra part, taken as the same again.
    swa = 2 * 2 * (W + 1) * C
    rla = 2 * (2 * 2 * (2 * D) * D * H)
    flops_token = 6 * params + 3 * L * (swa + rla)
    setups = [  # (label, GPUs, compute FLOP/s per GPU, all-reduce bus bandwidth B/s per GPU)
        ("8 GPUs NVLink, fp32", 8, 0.5 * 67e12, 360e9),
        ("8 GPUs NVLink, bf16", 8, 0.4 * 989e12, 360e9),
        ("4 nodes x 8, fp32", 32, 0.5 * 67e12, 50e9),
        ("4 nodes x 8, bf16", 32, 0.4 * 989e12, 50e9),
    ]
    rows = []
    for label, n, flops, bw in setups:
        compute_ms = 1e3 * flops_token * T * GLOBAL_BATCH / n / flops
        reduce_ms = 1e3 * 2 * (n - 1) / n * grad_bytes / bw
        rows.append((label, n, params, flops_token, compute_ms, reduce_ms))
    return rows


def write_model(rows):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "model.tsv"), "w") as f:
        f.write("setup\tgpus\tparams\tflops_per_token\tcompute_ms_per_step\tallreduce_ms_per_step\n")
        for label, n, params, ft, c, r in rows:
            f.write(f"{label}\t{n}\t{params}\t{ft:.4g}\t{c:.1f}\t{r:.1f}\n")
            print(f"{label:22s} {n:3d} GPUs: compute {c:8.1f} ms, all-reduce {r:6.1f} ms ({100 * r / (c + r):.0f}%)")


def draw(model):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        sys.exit("scaling.py: gnuplot not found (apt-get install gnuplot-nox)")
    measured = []
    with open(os.path.join(OUT, "measured.tsv")) as f:
        next(f)
        for line in f:
            cfg, _, run, _, _, step, wait, red = line.rstrip("\n").split("\t")
            measured.append((f"{cfg}: {run}", float(step) - float(wait) - float(red), float(wait), float(red)))
    with tempfile.TemporaryDirectory() as tmp:
        left, right = os.path.join(tmp, "measured.dat"), os.path.join(tmp, "model.dat")
        with open(left, "w") as f:
            for lab, c, w, r in measured:  # as percentages of the step (the ms are in measured.tsv)
                t = c + w + r
                f.write(f"\"{lab} ({t:.0f} ms)\" {100 * c / t:.2f} {100 * w / t:.2f} {100 * r / t:.2f}\n")
        with open(right, "w") as f:
            for label, _, _, _, c, r in model:
                f.write(f"\"{label}\" {c:.2f} {r:.2f}\n")
        terminal = "pngcairo size 1200,560 font ',10'" if "pngcairo" in subprocess.run(
            [gnuplot, "-e", "set terminal"], capture_output=True, text=True).stdout else "png size 1200,560"
        png = os.path.join(OUT, "step_time.png")
        script = f"""set terminal {terminal}
set output '{png}'
set multiplot layout 1,2
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.7
set key top left
set grid ytics
set xtics rotate by -35 left
set termoption noenhanced
set title "measured here (2 shared cores): share of the step"
set ylabel "% of the step (rank 0)"
set key top left vertical
set yrange [0:150]
set ytics 0,20,100
plot '{left}' using 2:xtic(1) title 'compute' lc rgb '#1f77b4', '' using 3 title 'waiting for the other ranks' lc rgb '#ff7f0e', '' using 4 title 'all-reduce' lc rgb '#d62728'
set title "model: d_model 1024, 16 layers, T 4096, w 512, batch 64"
set key top right vertical
set ylabel "ms per step (log)"
set logscale y
set yrange [1:10000]
set ytics auto
set style histogram clustered gap 1
plot '{right}' using 2:xtic(1) title 'compute' lc rgb '#1f77b4', '' using 3 title 'all-reduce' lc rgb '#d62728'
unset multiplot
"""
        r = subprocess.run([gnuplot], input=script, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"scaling.py: gnuplot failed: {r.stderr}")
        print(f"wrote {png}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", action="store_true", help="run the measurements (about a minute on 2 cores)")
    p.add_argument("--bin", default=os.path.join(ROOT, "bin", "train_tiny"))
    a = p.parse_args()
    if a.measure:
        measure(a.bin)
    rows = model_rows()
    write_model(rows)
    draw(rows)


if __name__ == "__main__":
    main()
