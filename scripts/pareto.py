#!/usr/bin/env python3
"""scripts/pareto.py: the paper's quality-vs-window Pareto at tiny scale, in one command.

    make pareto-quick                      # = scripts/pareto.py --grid quick   (local-only, w = 16)
    make pareto                            # = --grid hard, then --grid lg-hard (the harder regime, hours)
    scripts/pareto.py --grid full          # the window ladder 8, 16, 32 on the easy data, 7 arms, 2 seeds
    scripts/pareto.py --grid full --text ../shared/data/tinyshakespeare.txt --jobs 2
    scripts/pareto.py --grid text --text FILE        # byte-level LMs only: T = 512, w = 32, 64, LLLG, 3 seeds
    scripts/pareto.py --grid full --dry-run          # print the runs and the estimated time, run nothing

Trains every (arm, window, seed[, task]) of the grid with bin/train_tiny, evaluates each checkpoint
with bin/pareto_eval on the held-out test set (its own generator seed, never used to choose settings)
at 1x, 2x and 4x its training length, and, with --decode-lengths (recall), through the constant-memory
decode at those multiples of it (1, 4, 16 by default), and writes to --out (results/pareto/<grid>):
    runs.csv      one row per run: config, training time, and every metric at every length
    table.md      the markdown table (mean and min..max over seeds), with the quick sweep's criteria checked
    *.png         plots drawn by gnuplot (accuracy vs window like the paper's Figure 4, accuracy vs
                  evaluation length like its RULER figure, accuracy by distance bucket, passkey by depth)

Arms (--arms), all with the same width, heads and depth:
    full        full causal attention with RoPE: every layer local (swa) with a window covering the
                longest evaluation length, i.e. the local-only stack with no window at all
    full-nope   every layer global (full causal attention, NoPE, as the paper's global layers)
    lg-swa      local-global (--lg-pattern, default LG): SWA local layers
    lg-rattn    local-global: RATTENTION local layers (SWA + residual linear attention)
    lg-linear   local-global: linear attention local layers (no window)
    lo-swa      local-only diagnostic (every layer local): SWA
    lo-rattn    local-only diagnostic: RATTENTION
    lo-linear   local-only: linear attention local layers (no window)
    lg-rattn-gain0  lg-rattn with the RLA branch's norm scale gamma_rla starting at 0 (train_tiny
                --rla-gain-init 0): the branch grows only as training finds it useful
    lg-rattn-hold   lg-rattn with gamma_rla at 0 and not updated for the first 2000 steps (--rla-hold 2000):
                until then the model is lg-swa, step for step; then the branch may grow
    lo-rattn-gain0  lo-rattn with gamma_rla starting at 0 (does the small start cost what the branch is for?)
    lo-rattn-hold   lo-rattn with gamma_rla at 0 and not updated for the first 2000 steps (as lg-rattn-hold)
    lg-rattn-half, lo-rattn-half  lg-rattn, lo-rattn with gamma_rla starting at 0.5: between the default
                start (1) and the start at 0, each of which serves one stack and not the other
    lg-rattn-tenth, lo-rattn-tenth  as the -half arms with gamma_rla starting at 0.1

Recall accuracy is split by reach (model/eval.h), for a stack of L = --layers local layers of window w:
within one layer's reach (d <= w+1), within the stack's relay reach (w+1 < d <= L*w), beyond it
(d > L*w); the buckets describe the data, so every arm of a row has the same ones.

Every arm of a window w trains on the same data: the recall task's gap mix is tied to w through
train_tiny --data-window w (about 40 % of the queries within w), whatever the model's own window.

Runs are cached in --runs: a run whose command line and finished log are there is not retrained, and
its evaluation is not repeated, so an interrupted sweep continues where it stopped. Seeds run apart (at
other times, on other machines) are put into one table with --merge: it trains nothing, reads the
runs.csv files it is given, refuses rows of another configuration, and writes runs.csv, table.md and
the plots of them all to --out, e.g.
    scripts/pareto.py --grid hard --merge results/pareto/hard-seed1/runs.csv,results/pareto/hard-seed2/runs.csv
Only the Python standard library is used. Exit status: 0 done, 1 a run failed, 2 bad command line.
"""
import argparse
import csv
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (pattern source, local kind, further train_tiny flags); "full" is local-only with a window covering every
# length. The rattn variants test why the RLA branch can block what lg-swa learns: they differ from their
# arm in the branch's scale only (its initial value, and whether it may change in the first steps).
ARMS = {
    "full": ("L", "swa", []),
    "full-nope": ("G", "swa", []),
    "lg-swa": ("lg", "swa", []),
    "lg-rattn": ("lg", "rattn", []),
    "lg-linear": ("lg", "linear", []),
    "lo-swa": ("L", "swa", []),
    "lo-rattn": ("L", "rattn", []),
    "lo-linear": ("L", "linear", []),
    "lg-rattn-gain0": ("lg", "rattn", ["--rla-gain-init", "0"]),
    "lg-rattn-hold": ("lg", "rattn", ["--rla-gain-init", "0", "--rla-hold", "2000"]),
    "lo-rattn-gain0": ("L", "rattn", ["--rla-gain-init", "0"]),
    "lo-rattn-hold": ("L", "rattn", ["--rla-gain-init", "0", "--rla-hold", "2000"]),
    "lg-rattn-half": ("lg", "rattn", ["--rla-gain-init", "0.5"]),
    "lo-rattn-half": ("L", "rattn", ["--rla-gain-init", "0.5"]),
    "lg-rattn-tenth": ("lg", "rattn", ["--rla-gain-init", "0.1"]),
    "lo-rattn-tenth": ("L", "rattn", ["--rla-gain-init", "0.1"]),
}

# Grids. Every field can be overridden on the command line (--steps, --windows, ...).
GRIDS = {
    # CI / workshop (under 5 minutes on 2 idle cores): the local-only diagnostic at w = 16, the quick-sweep
    # criteria checked. No decode-path evaluation by default: its pairs sit at position 0, and the decode
    # set moves them (`--decode-lengths 1,4,16` runs it; the hard grid trains with the pairs anywhere).
    # 3 runs of 1500 steps, one after the other on 2 threads. 1500, not 1000: at 1000 steps
    # full attention had learned the task with seed 1 (100 %) but not with seed 2 (29 %, still on the loss
    # plateau before the recall circuit forms); at 1500 seeds 2 and 3 reach 99-100 %.
    # 4 key-value pairs (8 tokens, half the window): with 8 pairs the key block is as long as w = 16, so
    # 60 % of the queries past w land in (w, 2w], within the relay reach of two stacked SWA layers; with
    # 4 the far keys spread over (w, T]. 128 evaluation sequences keep 512 scored queries per length.
    # far_beyond_reach: no key in (w, 2w]. Two stacked SWA layers reach 2w back in two hops, and with
    # such keys SWA scored 80.6 % there (17.9 % for all d > w, results/pareto/quick-with-band): the
    # quick grid's d > w then measured the stack's reach, not what the window cannot see.
    "quick": dict(arms="full,lo-swa,lo-rattn", windows="16", seeds="1", seq_len=128, steps=1500, warmup=50,
                  lr=3e-3, tasks="recall", pairs=4, far_beyond_reach=1, eval_seqs=128, lengths="1,2,4", layers=2,
                  batch=32, jobs=1, threads=2, filler="constant", distractors=0, pairs_at="start",
                  decode_lengths="", decode_seqs=64, lg_pattern="LG", text_ladder=0, eval_interval=0),
    # The harder recall regime: random filler bytes (an alphabet disjoint from keys and values), 8 key-value
    # pairs, keys of the sequence recurring in the gap as distractors, the pairs anywhere in the sequence
    # (a model trained with them at position 0 only fails when they move: the decode-path evaluation moves
    # them), keys in every reach bucket (no band removed); linear attention alone as a fourth arm; 3 seeds;
    # the decode path at 1x, 4x, 16x T. 8000 steps, not 3000: at 3000 no arm learned the task (full
    # attention 12.9 %, one of the sequence's 8 values at random), neither with distractors nor without
    # them; with the 8000-step schedule (cosine, so the rate stays near its peak longer) full attention
    # went from 15.4 % at step 1500 to 98.8 % at step 2000 on the validation set (seed 1).
    "hard": dict(arms="full,lo-swa,lo-rattn,lo-linear", windows="16", seeds="1,2,3", seq_len=128, steps=8000,
                 warmup=100, lr=3e-3, tasks="recall", pairs=8, far_beyond_reach=0, eval_seqs=128, lengths="1,2,4",
                 layers=2, batch=32, jobs=2, threads=1, filler="random", distractors=8, pairs_at="anywhere",
                 decode_lengths="1,4,16", decode_seqs=128, lg_pattern="LG", text_ladder=0, eval_interval=0),
    # The hard regime in local-global stacks (pattern LG: one SWA or RATTENTION layer under one global layer):
    # 16 pairs, twice the hard grid's, everything else as the hard grid. With the global layer the stack
    # reaches every distance, so the buckets say where the key is, not what the stack can see. Validation every
    # 500 steps keeps the RLA branch's size along training: in a 3000-step pilot (seed 1, validation set)
    # LG-SWA reached 100 % while LG-RATTENTION stayed at 9 %, its RLA branch 8 times the size of its SWA branch.
    # lg-rattn-gain0 and lg-rattn-hold differ from lg-rattn in the branch's initial scale only (and the hold):
    # they test whether the branch's size is what keeps RATTENTION from learning the binding. lg-linear (the
    # local layer linear attention alone) was added after the others had run; no setting changed with it.
    "lg-hard": dict(arms="full,lg-swa,lg-rattn,lg-linear,lg-rattn-gain0,lg-rattn-hold", windows="16",
                    seeds="1,2,3", seq_len=128, steps=8000, warmup=100, lr=3e-3, tasks="recall", pairs=16,
                    far_beyond_reach=0, eval_seqs=128, lengths="1,2,4", layers=2, batch=32, jobs=2, threads=1,
                    filler="random", distractors=8, pairs_at="anywhere", decode_lengths="1,4,16", decode_seqs=128,
                    lg_pattern="LG", text_ladder=0, eval_interval=500),
    # The full sweep (`--dry-run` prints the estimate; measured time in docs/experiments.md): T = 128, the window
    # ladder T/16, T/8, T/4, every arm, 2 seeds, recall; passkey at w = T/8 (half the steps). w >= T - 1
    # is full attention by construction (the `full` arm). 3000 steps: at 1500 the local-global stack at
    # w = 8 had not yet learned recall (51 %). T = 128, not 256: at 256 the grid is about 20 hours on 2
    # cores; `--windows 8,16,32,64` adds T/2 (14 runs, about 40 minutes; the others stay cached).
    "full": dict(arms="full,full-nope,lg-swa,lg-rattn,lg-linear,lo-swa,lo-rattn", windows="8,16,32",
                 seeds="1,2", seq_len=128, steps=3000, warmup=100, lr=3e-3, tasks="recall,passkey", pairs=8,
                 far_beyond_reach=0, filler="constant", distractors=0, pairs_at="start", decode_lengths="",
                 decode_seqs=128, lg_pattern="LG", text_ladder=0, eval_interval=0,
                 eval_seqs=128, lengths="1,2,4", layers=2, batch=32, jobs=2, threads=1),
    # Text at a longer context, as the paper's models: byte-level LM on --text FILE (required), T = 512, the
    # windows T/16 and T/8, the local-global pattern LLLG (4 layers: 3 local, 1 global), full attention as
    # the reference; no recall. Batch 8 keeps 4096 tokens a step, as the recall grids. Validation every 250
    # steps, so each RATTENTION run's log holds the size of its RLA branch along training (the branch table).
    # Text has one held-out split (the file's last 10 %), never used to choose these settings. `full` does not
    # depend on w here (no recall data): it runs once per seed, at the first window.
    "text": dict(arms="full,lg-swa,lg-rattn", windows="32,64", seeds="1,2,3", seq_len=512, steps=2000, warmup=100,
                 lr=3e-3, tasks="", pairs=8, far_beyond_reach=0, eval_seqs=32, lengths="1,2,4", layers=4, batch=8,
                 jobs=2, threads=1, filler="constant", distractors=0, pairs_at="start", decode_lengths="",
                 decode_seqs=128, lg_pattern="LLLG", text_ladder=1, eval_interval=250),
    # The test's grid (tests/test_pareto.cpp): seconds, checks the plumbing only.
    "test": dict(arms="full,lo-swa,lo-rattn", windows="8", seeds="1", seq_len=32, steps=3, warmup=1, lr=3e-3,
                 tasks="recall", pairs=2, far_beyond_reach=1, eval_seqs=4, lengths="1,2", layers=2, batch=4, jobs=1,
                 threads=1, filler="constant", distractors=0, pairs_at="start", decode_lengths="1,4", decode_seqs=6,
                 lg_pattern="LG", text_ladder=0, eval_interval=0),
}

# Fields of runs.csv, in order. Metric fields are "<metric>_<m>x" for each length multiplier m.
CONFIG_FIELDS = ["grid", "task", "arm", "stack", "local", "window", "model_window", "seed", "T", "steps", "batch",
                 "d_model", "layers", "pattern", "train_s", "ms_per_step", "final_train_loss", "branch_rla_swa",
                 "branch_growth"]
METRICS = ["loss", "acc", "near_acc", "relay_acc", "beyond_acc", "beyondT_acc",
           "depth0_acc", "depth25_acc", "depth50_acc", "depth75_acc", "depth100_acc", "bpb", "n", "near_n", "relay_n",
           "beyond_n", "beyondT_n"]
# Fields of the decode evaluation ("dec_<metric>_<m>x" for each --decode-lengths multiplier m).
DEC_METRICS = ["acc", "near_acc", "relay_acc", "beyond_acc", "beyondT_acc", "n", "near_n", "relay_n", "beyond_n",
               "beyondT_n", "mem_bytes"]
# The reach buckets of pareto_eval: (field, column title, plot label).
BUCKETS = [("near", "d <= w+1 (one layer)", "d<=w+1"), ("relay", "w+1 < d <= Lw (relay)", "relay"),
           ("beyond", "d > Lw (beyond reach)", "d>Lw")]


_log_lock = threading.Lock()


def log(msg):
    with _log_lock:  # --jobs > 1: one line at a time
        print(f"[pareto {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    """One training run: its name, its train_tiny command, its files."""

    def __init__(self, a, grid, task, arm, window, seed):
        self.grid, self.task, self.arm, self.window, self.seed = grid, task, arm, window, seed
        src, kind, arm_flags = ARMS[arm]
        self.pattern = a.lg_pattern if src == "lg" else src
        self.stack = "full" if arm.startswith("full") else {"L": "local-only"}.get(src, "local-global")
        self.local = "-" if src == "G" else kind
        # The model's window: w, except for "full", whose window covers the longest evaluation length
        # (SWA over [0, t] at every length: full causal attention with RoPE). The data's window is w.
        self.model_window = full_window(a) if arm == "full" else window
        self.steps = a.steps if task != "passkey" else a.passkey_steps
        self.name = f"{task}-{arm}-w{window}-s{seed}"
        base = os.path.join(a.runs, self.name)
        self.ckpt, self.log, self.cmdfile, self.evalfile = base + ".ckpt", base + ".log", base + ".cmd", base + ".eval"
        self.decfile = base + ".decode"  # the decode-path evaluation (recall, --decode-lengths)
        self.a = a
        cmd = [a.bin_train, "--layers", str(a.layers), "--pattern", self.pattern, "--local", kind,
               "--window", str(self.model_window), "--data-window", str(a.data_window or window),
               "--d-model", str(a.d_model), "--seq-len", str(a.seq_len),
               "--batch", str(a.batch), "--lr", repr(a.lr), "--steps", str(self.steps),
               "--warmup", str(min(a.warmup, self.steps)), "--seed", str(seed)]
        if a.qk_norm:  # only when on: a sweep without it keeps the commands (and runs) it had
            cmd += ["--qk-norm", "1"]
        cmd += arm_flags
        if task == "text":
            cmd += ["--text", a.text]
        else:
            cmd += ["--task", task]
        if task == "recall":
            cmd += ["--pairs", str(a.pairs)]
            if a.far_beyond_reach and a.layers > 1:  # no key within the stack's reach but out of w
                cmd += ["--far-beyond", str(a.layers * (a.data_window or window))]
            if a.filler != "constant":
                cmd += ["--filler", a.filler]
            if a.distractors:
                cmd += ["--distractors", str(a.distractors)]
            if a.pairs_at != "start":
                cmd += ["--pairs-at", a.pairs_at]
        cmd += ["--eval-interval", str(a.eval_interval), "--eval-seqs", "32", "--ckpt-interval", str(a.ckpt_interval),
                "--log-every", str(a.log_every), "--threads", str(a.threads), "--ckpt", self.ckpt]
        self.cmd = cmd

    def cmdline(self):
        return " ".join(shlex.quote(x) for x in self.cmd)

    @staticmethod
    def key(cmdline):
        """The command without the program's path (--bin: another build folder of the same program),
        the checkpoint's path (--runs: the run's files moved to another folder) and the run flags that
        cannot change the model (threads, logging, how often to checkpoint): a run trained with other
        such flags is the same run (training is bit-exact for any thread count)."""
        words, out, i = shlex.split(cmdline)[1:], [], 0
        while i < len(words):
            if words[i] in ("--threads", "--log-every", "--ckpt-interval", "--eval-seqs", "--eval-interval", "--ckpt"):
                i += 2
                continue
            out.append(words[i])
            i += 1
        return out

    def same_command(self):
        """The files in --runs are of this run's command (not of an older version of the grid)."""
        try:
            with open(self.cmdfile) as f:
                return Run.key(f.read().strip()) == Run.key(self.cmdline())
        except OSError:
            return False

    def trained(self):
        try:
            with open(self.log) as f:
                done = "trained " in f.read()
            return self.same_command() and done and os.path.exists(self.ckpt)
        except OSError:
            return False

    def train(self):
        if self.trained():
            log(f"{self.name}: trained before (cached)")
            return True
        resume = []
        if os.path.exists(self.ckpt) and self.same_command():
            resume = ["--resume", self.ckpt]  # an interrupted run of the same command: continue it bit-exactly
        else:  # another command's files (an older grid): start afresh
            for old in (self.ckpt, self.log, self.evalfile):
                if os.path.exists(old):
                    os.remove(old)
        with open(self.cmdfile, "w") as f:
            f.write(self.cmdline() + "\n")
        log(f"{self.name}: training ({self.steps} steps){' (resuming)' if resume else ''}")
        t0 = time.time()
        with open(self.log, "a" if resume else "w") as out:
            cmd = self.cmd + resume if not resume else \
                [self.a.bin_train, "--resume", self.ckpt, "--steps", str(self.steps), "--threads", str(self.a.threads),
                 "--eval-interval", str(self.a.eval_interval), "--eval-seqs", "32", "--log-every", str(self.a.log_every),
                 "--ckpt-interval", str(self.a.ckpt_interval)]
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env())
        if rc != 0:
            log(f"{self.name}: train_tiny exited with status {rc}; see {self.log}")
            return False
        log(f"{self.name}: trained in {time.time() - t0:.0f} s")
        return True

    def evaluate(self):
        """pareto_eval on the held-out test set: the forward at --lengths, and for recall the decode path
        at --decode-lengths. An evaluation is reused when it is newer than the checkpoint and of the
        same lengths, seqs and split."""
        reach = ["--split", "test", "--reach-layers", str(self.a.layers), "--threads", str(self.a.threads)]
        todo = [(self.evalfile, ["--lengths", self.a.lengths, "--eval-seqs", str(self.a.eval_seqs)], self.a.lengths)]
        if self.a.decode_lengths and self.task == "recall":
            todo.append((self.decfile, ["--mode", "decode", "--lengths", self.a.decode_lengths, "--eval-seqs",
                                        str(self.a.decode_seqs)], self.a.decode_lengths))
        for path, args, lengths in todo:
            if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(self.ckpt):
                with open(path) as f:
                    text = f.read()
                seqs = args[args.index("--eval-seqs") + 1]
                mults = [f"mult={m} " for m in lengths.split(",")]
                if (text.count("mult=") == len(mults) and all(m in text for m in mults) and "split=test" in text and
                        (" seqs=" + seqs + " " in text or self.task == "passkey")):
                    continue
            cmd = [self.a.bin_eval, "--ckpt", self.ckpt] + args + reach
            r = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
            if r.returncode != 0:
                log(f"{self.name}: pareto_eval exited with status {r.returncode}: {r.stderr.strip()}")
                return False
            with open(path + ".tmp", "w") as f:
                f.write(r.stdout)
            os.replace(path + ".tmp", path)
        return True

    def row(self):
        """The CSV row: config, training figures from the log, metrics from the evaluation."""
        row = {k: "" for k in csv_fields(self.a)}
        row.update(grid=self.grid, task=self.task, arm=self.arm, stack=self.stack, local=self.local,
                   window=self.window, model_window=self.model_window, seed=self.seed, T=self.a.seq_len,
                   steps=self.steps, batch=self.a.batch,
                   d_model=self.a.d_model, layers=self.a.layers, pattern=self.pattern)
        with open(self.log) as f:
            lines = f.read().splitlines()
        growth, evaluated = {}, None  # evaluated: the step of the last "val " line (None after a "test" line)
        for line in lines:
            if line.startswith("val  step ") or line.startswith("test step "):
                evaluated = int(line.split()[2]) if line.startswith("val") else None
            # "     branch size RLA/SWA at scored positions: layer 0 0.412, layer 1 0.873" after each
            # validation: the branch's size along training, "step:l0/l1/...;step:..."
            sizes = None
            if line.strip().startswith("branch size RLA/SWA"):
                sizes = "/".join(x.split()[-1] for x in line.split(":", 1)[1].split(","))
                if evaluated is not None:
                    growth[evaluated] = sizes
            if line.startswith("trained "):  # "trained 500 steps in 123.4 s (246.8 ms/step)"
                parts = line.split()
                row["train_s"] = parts[4]
                row["ms_per_step"] = parts[6].lstrip("(")
            if line.startswith("step ") and "| loss " in line:
                row["final_train_loss"] = line.split("| loss ")[1].split()[0]
            # "     branch size RLA/SWA at scored positions: layer 0 0.412, layer 1 0.873" (the last one
            # printed is the held-out test set's): one value per rattn layer, joined by "/"
            if sizes:
                row["branch_rla_swa"] = sizes
        row["branch_growth"] = ";".join(f"{k}:{v}" for k, v in sorted(growth.items()))
        with open(self.evalfile) as f:
            for line in f:
                kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
                m = kv.get("mult")
                for k in METRICS:
                    if k in kv and f"{k}_{m}x" in row:
                        row[f"{k}_{m}x"] = kv[k]
        if os.path.exists(self.decfile) and self.a.decode_lengths:
            with open(self.decfile) as f:
                for line in f:
                    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
                    m = kv.get("mult")
                    for k in DEC_METRICS:
                        if k in kv and f"dec_{k}_{m}x" in row:
                            row[f"dec_{k}_{m}x"] = kv[k]
        return row


def full_window(a):
    """The window of the "full" arm: the longest evaluation length, so no key is ever outside it."""
    return max(int(m) for m in a.lengths.split(",")) * a.seq_len


def csv_fields(a):
    dec = [f"dec_{k}_{m}x" for m in a.decode_lengths.split(",") for k in DEC_METRICS] if a.decode_lengths else []
    return CONFIG_FIELDS + [f"{k}_{m}x" for m in a.lengths.split(",") for k in METRICS] + dec


def child_env():
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "passive")  # idle OpenMP workers sleep: the machine is shared
    return env


def build_runs(a):
    runs = []
    tasks = [t for t in a.tasks.split(",") if t]
    if a.text:
        tasks.append("text")
    windows = [int(x) for x in a.windows.split(",")]
    ref_w = a.ref_window if a.ref_window else max(1, a.seq_len // 8)
    for task in tasks:
        # recall: the whole ladder; passkey and text: only at the reference window (w = T/8), to keep
        # the sweep's time in bounds (their length and depth figures are what they are for).
        ws = windows if task == "recall" or len(windows) == 1 or (task == "text" and a.text_ladder) else [ref_w]
        for w in ws:
            for arm in a.arms.split(","):
                if task == "text" and arm.startswith("full") and w != ws[0]:
                    continue  # the text data does not depend on w, nor does full attention: once per seed
                for seed in [int(s) for s in a.seeds.split(",")]:
                    runs.append(Run(a, a.grid, task, arm, w, seed))
    return runs


def fnum(x):
    try:
        v = float(x)
        return None if math.isnan(v) else v
    except (TypeError, ValueError):
        return None


def stats(rows, key):
    vals = [v for v in (fnum(r.get(key)) for r in rows) if v is not None]
    if not vals:
        return None
    return sum(vals) / len(vals), min(vals), max(vals)


def pct(s):
    if s is None:
        return "-"
    mean, lo, hi = s
    if hi - lo < 5e-4:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * lo:.1f}..{100 * hi:.1f})"


def groups(rows, task):
    out = {}
    for r in rows:
        if r["task"] == task:
            out.setdefault((r["arm"], int(r["window"])), []).append(r)
    return out


def arm_order(arm):
    return list(ARMS).index(arm) if arm in ARMS else 99


def write_table(a, rows, path):
    mults = a.lengths.split(",")
    name = os.path.basename(os.path.normpath(a.out))
    title = f"{a.grid} grid" if name == a.grid else f"`{name}`: the {a.grid} grid's settings with overrides"
    regime = ("random filler bytes" if a.filler == "random" else "a constant filler byte") + (
        f", up to {a.distractors} distractor keys in the gap" if a.distractors else ", no distractors") + (
        ", the pairs anywhere in the sequence" if a.pairs_at == "anywhere" else ", the pairs at position 0")
    if not any(r["task"] != "text" for r in rows):
        return write_text_table(a, rows, path, title)
    lines = [f"# Window-size sweep ({title})", "",
             f"Model: d_model {a.d_model}, {a.layers} layers, 2 heads of 32, T = {a.seq_len}, batch {a.batch}, "
             f"recall with {a.pairs} key-value pairs, {regime}"
             + (f"; local-global pattern `{a.lg_pattern}`" if any(arm.startswith("lg-") for arm in a.arms.split(","))
                else "") + ". Every accuracy is on the **held-out test set** (a generator seed of its own, never "
             "used to choose settings), in %, mean over seeds with min..max when they differ; chance is 1.6 % for "
             "recall, 3.8 % for passkey letters.", "",
             f"Recall by reach, for a stack of L = {a.layers} local layers of window w: `d <= w+1` within one "
             f"layer's reach, `relay` within the stack's relay reach (w+1 < d <= {a.layers}w), `d > Lw` beyond it "
             "(no chain of windows reaches the key); `beyond T`: d larger than the training length (2x, 4x). A "
             "global layer (`lg-*`, `full-nope`) reaches every key; the buckets say where the key was.", "",
             f"Arms: `full` = full causal attention with RoPE (every layer local, `swa`, with a window of "
             f"{full_window(a)} tokens, longer than every evaluation length); `full-nope` = every layer global "
             "(full causal attention, NoPE, like the paper's global layers); `lo-*` = local-only (every layer "
             "local); `lg-*` = local-global. `w` is the window of the data: every arm of a row trains on the same "
             "recall data, whose gap mix puts about 40 % of the queries within w (train_tiny --data-window w); "
             "`full` ignores w otherwise.", ""]
    if a.qk_norm:
        lines += ["Every run with qk-norm (train_tiny --qk-norm 1: q and k RMS-normalised over the head dim after "
                  "RoPE, on the SWA branch and global layers, docs/spec.md §2.9).", ""]
    if a.data_window:
        lines += [f"Every run trains and is scored on the recall data of window {a.data_window} (--data-window "
                  f"{a.data_window}): `w` is the model's window, and the reach buckets refer to "
                  f"{a.data_window}, not to w.", ""]
    if a.far_beyond_reach and a.layers > 1:
        lines += [f"Recall data with no key in (w, {a.layers}w] (train_tiny --far-beyond {a.layers}w): the relay "
                  "bucket is empty in training and in the forward evaluation.", ""]
    g = groups(rows, "recall")
    if g:
        head = ["arm", "w", "seeds", "steps", "s/run", "acc 1x"] + [t for _, t, _ in BUCKETS]
        head += [f"acc {m}x" for m in mults if m != "1"] + [f"beyond T {m}x" for m in mults if m != "1"]
        lines += ["## Recall (multi-query associative recall)", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for (arm, w), rs in sorted(g.items(), key=lambda kv: (arm_order(kv[0][0]), kv[0][1])):
            t = stats(rs, "train_s")
            cells = [arm, str(w), str(len(rs)), str(rs[0]["steps"]), f"{t[0]:.0f}" if t else "-",
                     pct(stats(rs, "acc_1x"))] + [pct(stats(rs, f"{b}_acc_1x")) for b, _, _ in BUCKETS]
            cells += [pct(stats(rs, f"acc_{m}x")) for m in mults if m != "1"]
            cells += [pct(stats(rs, f"beyondT_acc_{m}x")) for m in mults if m != "1"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if a.decode_lengths:
            dm = a.decode_lengths.split(",")
            head = ["arm", "w", "seeds", "length"] + ["all"] + [t for _, t, _ in BUCKETS] + ["beyond T",
                                                                                              "memory held"]
            lines += ["## Recall through the constant-memory decode, queries at the end of each length", "",
                      "bin/pareto_eval --mode decode: every token through the decode caches (ref/decode.h); the "
                      "queries end each sequence, their keys placed in turn in each reach bucket and beyond T, "
                      "filler before the pairs. `memory held`: the decode caches after the last token, every "
                      "layer (the full arm keeps every key and value; its window grows with the length).", "",
                      "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for (arm, w), rs in sorted(g.items(), key=lambda kv: (arm_order(kv[0][0]), kv[0][1])):
                for m in dm:
                    mem = stats(rs, f"dec_mem_bytes_{m}x")
                    cells = [arm, str(w), str(len(rs)), f"{int(m) * a.seq_len} ({m}x)",
                             pct(stats(rs, f"dec_acc_{m}x"))]
                    cells += [pct(stats(rs, f"dec_{b}_acc_{m}x")) for b, _, _ in BUCKETS]
                    cells += [pct(stats(rs, f"dec_beyondT_acc_{m}x")),
                              f"{mem[0] / 1024:.1f} KiB" if mem else "-"]
                    lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    g = groups(rows, "passkey")
    if g:
        depths = ["0", "25", "50", "75", "100"]
        head = ["arm", "w", "seeds", "steps"] + [f"depth {d}% ({m}x)" for m in mults for d in depths]
        lines += ["## Passkey (letters of the hidden key, by depth: 0 % = start of the sequence)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (arm, w), rs in sorted(g.items(), key=lambda kv: (arm_order(kv[0][0]), kv[0][1])):
            cells = [arm, str(w), str(len(rs)), str(rs[0]["steps"])]
            cells += [pct(stats(rs, f"depth{d}_acc_{m}x")) for m in mults for d in depths]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += text_rows(a, rows, mults)
    lines += branch_table(rows)
    lines += growth_table(rows)
    lines += targets(rows, a)
    if getattr(a, "timing_note", None):
        lines += [a.timing_note, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def text_rows(a, rows, mults):
    """The held-out text table: bits per byte at each evaluation length, mean over seeds (min..max)."""
    g = groups(rows, "text")
    if not g:
        return []
    head = ["arm", "w", "seeds", "steps", "s/run"] + [f"bits/byte {m}x" for m in mults]
    name = os.path.basename(a.text) if a.text else "the text file"
    lines = [f"## Held-out text ({name}, last 10 %)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (arm, w), rs in sorted(g.items(), key=lambda kv: (arm_order(kv[0][0]), kv[0][1])):
        t = stats(rs, "train_s")
        cells = [arm, "-" if arm.startswith("full") and a.text_ladder else str(w), str(len(rs)), str(rs[0]["steps"]),
                 f"{t[0]:.0f}" if t else "-"]
        for m in mults:
            s = stats(rs, f"bpb_{m}x")
            cells.append((f"{s[0]:.3f}" + (f" ({s[1]:.3f}..{s[2]:.3f})" if s[2] > s[1] else "")) if s else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def write_text_table(a, rows, path, title):
    """table.md of a sweep that trains byte-level LMs only (the text grid)."""
    mults = a.lengths.split(",")
    lines = [f"# Byte-level language models ({title})", "",
             f"Model: d_model {a.d_model}, {a.layers} layers, 2 heads of 32, T = {a.seq_len}, batch {a.batch}, "
             f"local-global pattern `{a.lg_pattern}`" + (", qk-norm on (train_tiny --qk-norm 1: q and k "
             "RMS-normalised over the head dim after RoPE, on the SWA branch and the global layers, docs/spec.md "
             "§2.9)" if a.qk_norm else ", no qk-norm") + ". Bits per byte on the file's last 10 % (the held-out "
             "split, never used to choose settings) at 1x, 2x and 4x the training length, mean over seeds with "
             "min..max when they differ. `full`: full causal attention with RoPE on every layer (no window; it "
             "does not depend on w).", ""]
    lines += text_rows(a, rows, mults)
    lines += branch_table(rows)
    lines += growth_table(rows)
    if getattr(a, "timing_note", None):
        lines += [a.timing_note, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def growth(row):
    """{step: [RLA/SWA of each local layer]} from runs.csv's branch_growth ("250:0.99/1.00;500:...")."""
    out = {}
    for part in filter(None, (row.get("branch_growth") or "").split(";")):
        step, vals = part.split(":")
        out[int(step)] = [float(x) for x in vals.split("/")]
    return out


def growth_stats(rows):
    """The RLA branch's size along training over the seeds of each configuration, for the table and the plot:
    {(task, arm, w): {step: [(mean, min, max) of each local layer]}}, in table order."""
    g = {}
    for r in rows:
        if gr := growth(r):
            g.setdefault((r["task"], r["arm"], int(r["window"])), []).append(gr)
    out = {}
    for key in sorted(g, key=lambda k: (k[0], arm_order(k[1]), k[2])):
        runs, out[key] = g[key], {}
        for st in sorted({st for gr in runs for st in gr}):
            vs = [gr[st] for gr in runs if st in gr]
            out[key][st] = [(sum(v[i] for v in vs) / len(vs), min(v[i] for v in vs), max(v[i] for v in vs))
                            for i in range(min(len(v) for v in vs))]
    return out


def growth_table(rows):
    """The RLA branch's size along training (the validation evaluations of train_tiny --eval-interval):
    per layer, mean over seeds."""
    g = growth_stats(rows)
    if not any(len(by_step) > 1 for by_step in g.values()):
        return []  # validated at the end only (--eval-interval 0): the branch table above says it all
    seeds = {}
    for r in rows:
        if growth(r):
            key = (r["task"], r["arm"], int(r["window"]))
            seeds[key] = seeds.get(key, 0) + 1
    steps = sorted({st for by_step in g.values() for st in by_step})
    lines = ["## The RLA branch along training", "",
             "RLA/SWA (as above) of each local layer, `layer 1 / layer 2 / ...`, on the validation split at each "
             "validation while the model trains, mean over seeds. How fast and how far the layers turn their "
             "RLA branch up or down.", "",
             "| task | arm | w | seeds | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|" + "---|" * (4 + len(steps))]
    for (task, arm, w), by_step in g.items():
        cells = [task, arm, str(w), str(seeds[(task, arm, w)])]
        cells += [" / ".join(f"{m:.2f}" for m, _, _ in by_step[st]) if st in by_step else "-" for st in steps]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def branch_table(rows):
    """How much the RATTENTION layers use their RLA branch: the size of the RLA term over the SWA term at
    the scored positions of the held-out test set (model/branch_share.h), per layer, mean over seeds.
    Both terms are normalised per head before their learned scales, so 1 is where training starts."""
    g = {}
    for r in rows:
        if r.get("branch_rla_swa"):
            g.setdefault((r["task"], r["arm"], int(r["window"])), []).append([float(x) for x in r["branch_rla_swa"].split("/")])
    if not g:
        return []
    n = max(len(v) for vs in g.values() for v in vs)
    head = ["task", "arm", "w", "seeds"] + [f"RLA/SWA, local layer {i + 1}" for i in range(n)]
    lines = ["## How much the RATTENTION layers use their RLA branch", "",
             "The size of each layer's RLA term over its SWA term, GRMS_rla(o_rla) against GRMS_swa(o_swa), at the "
             "scored positions of the test set past the window (model/branch_share.h; train_tiny prints it with "
             "every evaluation). Each branch is normalised per head before its learned scale, so training starts "
             "at 1.0; below 1 the layer has turned its RLA branch down. Mean over seeds (min..max).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, arm, w), vs in sorted(g.items(), key=lambda kv: (kv[0][0], arm_order(kv[0][1]), kv[0][2])):
        cells = [task, arm, str(w), str(len(vs))]
        for i in range(n):
            col = [v[i] for v in vs if i < len(v)]
            if not col:
                cells.append("-")
                continue
            m = sum(col) / len(col)
            cells.append(f"{m:.2f}" + (f" ({min(col):.2f}..{max(col):.2f})" if max(col) > min(col) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def targets(rows, a):
    """The quick-sweep criteria (local-only, w = 16), checked when those runs exist, on the queries whose
    key is beyond the stack's reach (d > L*w): what no chain of windows can see. No ratio to SWA's
    score is printed: SWA is at chance there, and a ratio to chance measures noise."""
    g = groups(rows, "recall")
    full, swa, rat = g.get(("full", 16)), g.get(("lo-swa", 16)), g.get(("lo-rattn", 16))
    if a.grid != "quick" or not (full and swa and rat):  # the criteria are the quick grid's (its regime)
        return []
    f, s, r = stats(full, "acc_1x"), stats(swa, "beyond_acc_1x"), stats(rat, "beyond_acc_1x")
    if not (f and s and r):
        return []
    checks = [("full attention accuracy >= 90 %", f[0] >= 0.90, f"{100 * f[0]:.1f} %"),
              ("local-only SWA beyond the stack's reach (d > Lw) <= 5 %", s[0] <= 0.05, f"{100 * s[0]:.1f} %"),
              ("local-only RATTENTION beyond the stack's reach (d > Lw) >= 15 %", r[0] >= 0.15,
               f"{100 * r[0]:.1f} %")]
    out = ["## Quick-sweep criteria (w = 16, local-only, held-out test set)", "", "| target | measured | met |",
           "|---|---|---|"]
    out += [f"| {name} | {val} | {'yes' if ok else 'NO'} |" for name, ok, val in checks]
    return out + [""]


# ---- plots ---------------------------------------------------------------------------------------

def find_gnuplot(install):
    g = shutil.which("gnuplot")
    if g or not install:
        return g
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "gnuplot-nox"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("gnuplot not found: installing it (" + " ".join(cmd) + ")")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL) != 0:
            subprocess.call(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL)
        return shutil.which("gnuplot")
    log("gnuplot not found and not root: install it with `sudo " + " ".join(cmd) + "`, then rerun (cached runs "
        "are not retrained)")
    return None


STYLE = {"full": "lc rgb 'black' dt 2 pt 7", "full-nope": "lc rgb '#7f7f7f' dt 2 pt 3",
         "lg-swa": "lc rgb '#d62728' pt 5", "lg-rattn": "lc rgb '#1f77b4' pt 7",
         "lg-linear": "lc rgb '#2ca02c' pt 9", "lo-swa": "lc rgb '#ff7f0e' dt 3 pt 4",
         "lo-rattn": "lc rgb '#17becf' dt 3 pt 6", "lo-linear": "lc rgb '#9467bd' dt 3 pt 8",
         "lg-rattn-gain0": "lc rgb '#1f77b4' dt 4 pt 6", "lg-rattn-hold": "lc rgb '#1f77b4' dt 2 pt 4",
         "lo-rattn-gain0": "lc rgb '#17becf' dt 4 pt 6", "lo-rattn-hold": "lc rgb '#17becf' dt 2 pt 4",
         "lg-rattn-half": "lc rgb '#1f77b4' dt 5 pt 12", "lo-rattn-half": "lc rgb '#17becf' dt 5 pt 12",
         "lg-rattn-tenth": "lc rgb '#1f77b4' dt 3 pt 14", "lo-rattn-tenth": "lc rgb '#17becf' dt 3 pt 14"}

LAYER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def plots(a, rows, out_dir, gnuplot):
    data_dir = os.path.join(a.runs, "plot-data")
    os.makedirs(data_dir, exist_ok=True)
    made = []
    g = groups(rows, "recall")
    arms = sorted({arm for arm, _ in g}, key=arm_order)
    windows = sorted({w for _, w in g})
    mults = a.lengths.split(",")

    def series(name, pts, scale=100.0):  # x, mean, min, max; accuracies as %, others (scale 1) as they are
        p = os.path.join(data_dir, name + ".dat")
        with open(p, "w") as f:
            for x, s in pts:
                if s is not None:
                    f.write(f"{x} {scale * s[0]:.4f} {scale * s[1]:.4f} {scale * s[2]:.4f}\n")
        return p

    def draw(png, title, xlabel, ylabel, plots_, logx=False, xtics=None, yrange="0:*"):
        script = [f"set terminal pngcairo size 900,560 font ',11'" if has_cairo(gnuplot) else
                  "set terminal png size 900,560", f"set output '{png}'", f"set title \"{title}\"",
                  f"set xlabel \"{xlabel}\"", f"set ylabel \"{ylabel}\"", f"set yrange [{yrange}]", "set grid",
                  "set key outside right", "set offsets graph 0.05, graph 0.05, 0, 0"]
        if logx:
            script.append("set logscale x 2")
        if xtics:
            script.append("set xtics (" + ", ".join(f"'{lab}' {x}" for lab, x in xtics) + ")")
        script.append("plot " + ", ".join(plots_))
        r = subprocess.run([gnuplot], input="\n".join(script) + "\n", capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(png) or os.path.getsize(png) == 0:
            log(f"gnuplot failed on {png}: {r.stderr.strip()}")
            if os.path.exists(png):
                os.remove(png)
            return
        made.append(png)

    if g:
        for metric, fname, label in [("acc_1x", "recall_acc_vs_window", "recall accuracy (all queries), %"),
                                     ("beyond_acc_1x", "recall_beyond_reach_vs_window",
                                      "recall accuracy, keys beyond the stack's reach (d > Lw), %")]:
            pl = []
            for arm in arms:
                p = series(f"{fname}-{arm}", [(w, stats(g.get((arm, w), []), metric)) for w in windows])
                pl.append(f"'{p}' using 1:2:3:4 with yerrorlines {STYLE.get(arm, '')} lw 2 title '{arm}'")
            draw(os.path.join(out_dir, fname + ".png"), f"Recall vs window (T = {a.seq_len}, mean and range "
                 "over seeds)", "window w (keys to the left)", label, pl, logx=len(windows) > 1,
                 xtics=[(str(w), w) for w in windows])
        # accuracy vs evaluation length, at the reference window (like the paper's RULER figure)
        w_ref = pick_ref_window(a, windows)
        pl = []
        for arm in arms:
            rs = g.get((arm, w_ref), [])
            p = series(f"recall_vs_length-{arm}", [(int(m) * a.seq_len, stats(rs, f"acc_{m}x")) for m in mults])
            pl.append(f"'{p}' using 1:2:3:4 with yerrorlines {STYLE.get(arm, '')} lw 2 title '{arm}'")
        draw(os.path.join(out_dir, "recall_vs_length.png"), f"Length extrapolation: recall at w = {w_ref}, "
             f"trained at T = {a.seq_len}", "evaluation length (tokens)", "recall accuracy, %", pl, logx=True,
             xtics=[(f"{int(m) * a.seq_len} ({m}x)", int(m) * a.seq_len) for m in mults])
        # accuracy by reach bucket at the reference window
        labels = [(lab, b) for b, _, lab in BUCKETS]
        # a bucket no query fell in (--far-beyond-reach empties the relay bucket) is left off the axis
        labels = [(lab, b) for lab, b in labels if any(stats(rs, f"{b}_acc_1x") for rs in g.values())]
        pl = []
        for arm in arms:
            rs = g.get((arm, w_ref), [])
            p = series(f"recall_by_distance-{arm}", [(i, stats(rs, f"{b}_acc_1x")) for i, (_, b) in enumerate(labels)])
            pl.append(f"'{p}' using 1:2:3:4 with yerrorlines {STYLE.get(arm, '')} lw 2 title '{arm}'")
        draw(os.path.join(out_dir, "recall_by_distance.png"), f"Recall by reach of the key, w = {w_ref}, "
             f"L = {a.layers}, T = {a.seq_len}, held-out test set", "key-to-query distance d", "recall accuracy, %",
             pl, xtics=[(lab, i) for i, (lab, _) in enumerate(labels)])
        # the decode path: accuracy beyond the stack's reach and over all queries vs evaluation length
        if a.decode_lengths:
            dm = a.decode_lengths.split(",")
            for metric, fname, label in [("acc", "recall_decode_vs_length", "recall accuracy (all queries), %"),
                                         ("beyond_acc", "recall_decode_beyond_reach_vs_length",
                                          "recall accuracy, keys beyond the stack's reach, %")]:
                pl = []
                for arm in arms:
                    rs = g.get((arm, w_ref), [])
                    p = series(f"{fname}-{arm}", [(int(m) * a.seq_len, stats(rs, f"dec_{metric}_{m}x")) for m in dm])
                    pl.append(f"'{p}' using 1:2:3:4 with yerrorlines {STYLE.get(arm, '')} lw 2 title '{arm}'")
                draw(os.path.join(out_dir, fname + ".png"), f"Constant-memory decode, queries at the end: w = "
                     f"{w_ref}, trained at T = {a.seq_len}", "evaluation length (tokens)", label, pl, logx=True,
                     xtics=[(f"{int(m) * a.seq_len} ({m}x)", int(m) * a.seq_len) for m in dm])
    gt = groups(rows, "text")
    if gt:
        text_ws = sorted({w for _, w in gt})
        # bits/byte at the training length vs window, like the paper's Figure 4 (full attention, which
        # has no window, drawn across the ladder); the y axis fitted to the data, where the arms differ
        pl = []
        for arm in sorted({arm for arm, _ in gt}, key=arm_order):
            if arm.startswith("full") and a.text_ladder:
                s1 = stats([r for (a_, _), rs in gt.items() if a_ == arm for r in rs], "bpb_1x")
                pts = [(w, s1) for w in text_ws]
            else:
                pts = [(w, stats(gt.get((arm, w), []), "bpb_1x")) for w in text_ws]
            p = series(f"text_bpb_vs_window-{arm}", pts, scale=1.0)
            pl.append(f"'{p}' using 1:2:3:4 with yerrorlines {STYLE.get(arm, '')} lw 2 title '{arm}'")
        draw(os.path.join(out_dir, "text_bpb_vs_window.png"), f"Held-out text at T = {a.seq_len}: bits per byte vs "
             "window (mean and range over seeds)", "window w (keys to the left)", "bits per byte (lower is better)",
             pl, logx=len(text_ws) > 1, xtics=[(str(w), w) for w in text_ws], yrange="*:*")
    # The RLA branch along training (runs validated more than once: --eval-interval), text or recall
    grown = {key: by_step for key, by_step in growth_stats(rows).items() if len(by_step) > 1}
    first_w = min((w for _, _, w in grown), default=0)
    grown_arms = sorted({arm for _, arm, _ in grown}, key=arm_order)
    pl = []
    for (task, arm, w), by_step in grown.items():
        for i in range(min(len(v) for v in by_step.values())):
            p = series(f"branch_growth-{task}-{arm}-w{w}-layer{i + 1}", [(st, v[i]) for st, v in by_step.items()],
                       scale=1.0)
            # a colour per layer (per arm when there are several arms; the layers then by point type), other
            # windows than the first dashed
            which = grown_arms.index(arm) if len(grown_arms) > 1 else i
            colour = LAYER_COLOURS[which % len(LAYER_COLOURS)]
            pl.append(f"'{p}' using 1:2:3:4 with yerrorlines lc rgb '{colour}' pt {4 + 2 * i} lw 2"
                      f"{'' if w == first_w else ' dt 2'} title '{arm} w={w} layer {i + 1}'")
    if pl:
        draw(os.path.join(out_dir, "branch_growth.png"), "RATTENTION: size of the RLA branch over the SWA branch "
             "along training (validation)", "training step", "RLA / SWA (1 = where training starts)", pl)
    gp = groups(rows, "passkey")
    if gp:
        depths = [0, 25, 50, 75, 100]
        pl = []
        for (arm, w), rs in sorted(gp.items(), key=lambda kv: (arm_order(kv[0][0]), kv[0][1])):
            for m in mults:
                p = series(f"passkey-{arm}-w{w}-{m}x", [(d, stats(rs, f"depth{d}_acc_{m}x")) for d in depths])
                style = STYLE.get(arm, "")
                if m != "1":  # longer evaluation lengths: the arm's colour, dashed (2x), dotted (4x and up)
                    style = re.sub(r"dt \d+", "", style) + (" dt 2" if m == "2" else " dt 3")
                pl.append(f"'{p}' using 1:2 with linespoints {style} lw 2 "
                          f"title '{arm} w={w} {m}x T'")
        draw(os.path.join(out_dir, "passkey_by_depth.png", ), "Passkey retrieval by depth (0 % = key at the start)",
             "depth of the hidden key, % of the sequence", "passkey letters correct, %", pl,
             xtics=[(f"{d}", d) for d in depths])
    return made


_cairo = {}


def has_cairo(gnuplot):
    if gnuplot not in _cairo:
        r = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True)
        _cairo[gnuplot] = "pngcairo" in (r.stdout + r.stderr)
    return _cairo[gnuplot]


def pick_ref_window(a, windows):
    want = a.ref_window if a.ref_window else max(1, a.seq_len // 8)
    return min(windows, key=lambda w: abs(w - want))


# ---- main ----------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--grid", choices=list(GRIDS), default="quick", help="the preset grid (default quick)")
    p.add_argument("--arms", help="comma-separated arms, from: " + ",".join(ARMS))
    p.add_argument("--windows", help="comma-separated window ladder, e.g. 8,16,32,64,128")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 1,2")
    p.add_argument("--tasks", help="comma-separated tasks: recall, passkey")
    p.add_argument("--text", help="also train byte-level LMs on this text file (held-out loss at 1x/2x/4x)")
    p.add_argument("--steps", type=int, help="training steps per recall/text run")
    p.add_argument("--passkey-steps", type=int, help="training steps per passkey run (default: --steps / 2)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--seq-len", type=int, help="training length T")
    p.add_argument("--layers", type=int)
    p.add_argument("--lg-pattern", help="pattern of the local-global arms (default: the grid's, text LLLG, the "
                   "others LG)")
    p.add_argument("--eval-interval", type=int, help="validate every N steps while training (default: the "
                   "grid's, text 250, lg-hard 500, the others 0: at the end only); the logs then hold the RLA "
                   "branch's size along training")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--batch", type=int, help="sequences per step (default 32)")
    p.add_argument("--pairs", type=int, help="recall key-value pairs (default: the grid's, 4 quick, 8 hard and full, "
                   "16 lg-hard)")
    p.add_argument("--data-window", type=int, default=0,
                   help="train and score every window on the recall data of this one window (its gap mix and "
                        "distance buckets), so that along the ladder only the model's window changes "
                        "(default: each window its own data, about 40 %% of the queries within it)")
    p.add_argument("--far-beyond-reach", type=int, choices=[0, 1],
                   help="1: recall data with no key in (w, layers * w], the band two or more stacked SWA layers "
                        "reach (train_tiny --far-beyond); every query is then within one layer's reach or "
                        "beyond the stack's (default: the grid's, quick 1, full 0)")
    p.add_argument("--filler", choices=["constant", "random"],
                   help="recall filler: a constant byte, or random bytes disjoint from keys and values (default: "
                        "the grid's, hard and lg-hard random, the others constant)")
    p.add_argument("--distractors", type=int,
                   help="recall: keys of the sequence that recur in the gap, not followed by a value (default: the "
                        "grid's, hard and lg-hard 8, the others 0)")
    p.add_argument("--pairs-at", choices=["start", "anywhere"],
                   help="recall: the pairs at position 0, or anywhere after a random filler lead (default: the "
                        "grid's, hard and lg-hard anywhere, the others start)")
    p.add_argument("--decode-lengths", help="recall: also evaluate through the constant-memory decode at these "
                   "multiples of T, queries at the end of each length, e.g. 1,4,16 ('' = off; default: the grid's)")
    p.add_argument("--decode-seqs", type=int, help="sequences per decode length (default: the grid's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the grid's, 3e-3)")
    p.add_argument("--qk-norm", type=int, choices=[0, 1], default=0,
                   help="1: every run with qk-norm on its softmax attention (train_tiny --qk-norm 1, "
                        "docs/spec.md §2.9); default 0, off")
    p.add_argument("--ref-window", type=int, help="window of the passkey/text runs and of the length plots "
                   "(default T/8)")
    p.add_argument("--eval-seqs", type=int, help="evaluation sequences per length (passkey: per depth)")
    p.add_argument("--lengths", help="evaluation lengths as multiples of T (default 1,2,4)")
    p.add_argument("--threads", type=int, help="OpenMP threads per run (default: the grid's, 2 or 1)")
    p.add_argument("--jobs", type=int, help="runs at once (default: the grid's; threads x jobs <= cores)")
    p.add_argument("--runs", help="folder of checkpoints and logs (default runs/pareto/<grid>)")
    p.add_argument("--out", help="folder of csv, md, png (default results/pareto/<grid>)")
    p.add_argument("--bin", default="bin", help="folder of train_tiny and pareto_eval (default bin)")
    p.add_argument("--ckpt-interval", type=int, default=250)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--no-install", action="store_true", help="never install gnuplot")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the runs and the time estimate only")
    p.add_argument("--merge", help="comma-separated runs.csv files of this grid's settings (other seeds): "
                   "train nothing; write their rows' runs.csv, table and plots to --out")
    p.add_argument("--ms-per-step", type=float, default=0.0,
                   help="for the estimate: ms per training step at 2 threads, every arm (default: from the "
                        "finished runs of this grid, else the measured table MS_PER_STEP)")
    a = p.parse_args()
    grid = GRIDS[a.grid]
    for k, v in grid.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.passkey_steps is None:
        a.passkey_steps = max(1, a.steps // 2)
    for arm in a.arms.split(","):
        if arm not in ARMS:
            p.error(f"--arms: unknown arm '{arm}' (choose from {','.join(ARMS)})")
    if a.text and not os.path.exists(a.text):
        p.error(f"--text: no such file '{a.text}'")
    a.runs = a.runs or os.path.join("runs", "pareto", a.grid)
    a.out = a.out or os.path.join("results", "pareto", a.grid)
    a.bin_train = os.path.join(a.bin, "train_tiny")
    a.bin_eval = os.path.join(a.bin, "pareto_eval")
    if a.merge:
        return merge(a, p)
    if not a.text and not [t for t in a.tasks.split(",") if t]:
        p.error(f"--grid {a.grid} trains byte-level LMs only: give the text with --text FILE "
                "(e.g. --text ../shared/data/tinyshakespeare.txt)")
    for b in (a.bin_train, a.bin_eval):
        if not os.access(b, os.X_OK) and not a.dry_run:
            p.error(f"{b} not found: build it first (make {b})")
    os.makedirs(a.runs, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)

    runs = build_runs(a)
    todo = [r for r in runs if not r.trained()]
    steps_todo = sum(r.steps for r in todo)
    est_s = estimate_seconds(a, runs, todo)
    log(f"grid {a.grid}: {len(runs)} runs ({len(runs) - len(todo)} cached), {steps_todo} training steps to go, "
        f"about {fmt_duration(est_s)} of training on {machine_cores(a)} cores (estimate: see --dry-run); "
        f"runs in {a.runs}, results in {a.out}")
    if a.dry_run:
        for r in runs:
            print(("cached  " if r.trained() else "to run  ") + f"[{r.steps} steps x {run_ms(a, r):.0f} ms] " +
                  r.cmdline())
        per_arm = {}
        for r in todo:
            per_arm.setdefault(r.arm, [0, 0.0])
            per_arm[r.arm][0] += r.steps
            per_arm[r.arm][1] += r.steps * run_ms(a, r) / 1000.0
        source = ("--ms-per-step" if a.ms_per_step else
                  "ms/step per arm: finished runs of this grid, else the table MS_PER_STEP in scripts/pareto.py")
        print(f"estimate ({source}), T = {a.seq_len}, {a.layers} layers, batch {a.batch}:")
        for arm, (st, sec) in sorted(per_arm.items(), key=lambda kv: arm_order(kv[0])):
            print(f"  {arm:10s} {st:8d} steps  {fmt_duration(sec)} at 2 threads")
        print(f"  total: {fmt_duration(est_s)} of training with --jobs {a.jobs} --threads {a.threads} on "
              f"{machine_cores(a)} cores, plus evaluation (seconds per run)")
        return 0

    t0, load0 = time.time(), load_average()

    def one(r):
        return r.train() and r.evaluate()

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        ok = list(ex.map(one, runs))
    done = [r for r, good in zip(runs, ok) if good]
    rows = [r.row() for r in done]
    train_s = sum(fnum(r["train_s"]) or 0 for r in rows)
    a.timing_note = previous_timing(os.path.join(a.out, "table.md")) if not todo else None
    a.timing_note = a.timing_note or (
        f"Timing: the runs' training took {train_s:.0f} s in all (`train_s` in runs.csv); the "
        f"invocation that wrote this table trained {len(todo)} of them and took "
        f"{time.time() - t0:.0f} s wall including evaluation, with --jobs {a.jobs} --threads "
        f"{a.threads} on a machine with {os.cpu_count()} cores, load average (1 min) {load0} "
        f"at its start and {load_average()} at its end.")
    made = write_results(a, rows)
    log(f"{len(rows)} of {len(runs)} runs in {os.path.join(a.out, 'runs.csv')}; table "
        f"{os.path.join(a.out, 'table.md')}; {len(made)} plots; {time.time() - t0:.0f} s")
    return 0 if len(done) == len(runs) else 1


def write_results(a, rows):
    """runs.csv, table.md (printed too) and the plots of rows in --out; the plots drawn."""
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "runs.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=csv_fields(a), extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    print("\n".join(write_table(a, rows, os.path.join(a.out, "table.md"))))
    if a.no_plots:
        return []
    gnuplot = find_gnuplot(not a.no_install)
    return plots(a, rows, a.out, gnuplot) if gnuplot else []


def merge(a, p):
    """--merge: the rows of several runs.csv files (seeds run apart) in one runs.csv, table and plots. Every
    row must be of the configuration --grid and the flags give, which the table's header describes."""
    rows, seen, train_s = [], {}, 0.0
    want = {"grid": a.grid, "T": a.seq_len, "batch": a.batch, "d_model": a.d_model, "layers": a.layers}
    for path in a.merge.split(","):
        try:
            with open(path, newline="") as f:
                got = list(csv.DictReader(f))
        except OSError as e:
            p.error(f"--merge: {path}: {e.strerror}")
        for r in got:
            want["steps"] = a.passkey_steps if r.get("task") == "passkey" else a.steps
            for k, v in want.items():
                if r.get(k) != str(v):
                    p.error(f"--merge: {path}: {k} = {r.get(k)}, not {v} as --grid {a.grid} and the flags give")
            run = (r["task"], r["arm"], r["window"], r["seed"])
            if run in seen:
                p.error(f"--merge: {path}: task {run[0]} arm {run[1]} w {run[2]} seed {run[3]} is in {seen[run]} too")
            seen[run] = path
            rows.append(r)
            train_s += fnum(r.get("train_s")) or 0
    if not rows:
        p.error("--merge: no rows")
    seeds = sorted({int(r["seed"]) for r in rows})
    a.timing_note = (f"Timing: the runs' training took {train_s:.0f} s in all (`train_s` in runs.csv); seeds "
                     f"{', '.join(map(str, seeds))}, merged from {a.merge.replace(',', ', ')}.")
    made = write_results(a, rows)
    log(f"merged {len(rows)} runs into {os.path.join(a.out, 'runs.csv')}; {len(made)} plots")
    return 0


# Measured ms per training step of each arm with 2 OpenMP threads on the shared 2-core development
# machine (-march=native build, batch 32, d_model 64, 2 layers, w = 16; `full` has w = 4T): the mean of
# steps 2..20 of a 20-step bin/train_tiny run, the smallest of 3 such runs, measured 2026-11-29 with a
# load average of 3.6-4.6 (about 2 of it from other users' builds), so on idle cores expect less
# (on idle cores the quick grid's runs took 43 (full), 43 (lo-swa) and 55 (lo-rattn) ms/step at T = 128).
# Other T, layers and batch sizes are scaled from the nearest T, linearly: an estimate, not a measurement.
# lo-linear was not in that measurement: lg-linear's figure stands in for it.
MS_PER_STEP = {
    128: {"full": 76, "full-nope": 77, "lg-swa": 80, "lg-rattn": 99, "lg-linear": 81, "lo-swa": 74, "lo-rattn": 112,
          "lo-linear": 81},
    256: {"full": 207, "full-nope": 226, "lg-swa": 257, "lg-rattn": 286, "lg-linear": 248, "lo-swa": 229,
          "lo-rattn": 374, "lo-linear": 248},
}


# ms/step at 1 thread over ms/step at 2 threads. Measured 1.0 (lo-swa 82-85 vs 78-84 ms, lo-rattn 118-127
# vs 114-118 ms) with a load average of 3.8: the second core was busy. On idle cores it is larger, so an
# estimate for --threads 1 is optimistic there.
SPEEDUP_2T = 1.0


def logged_ms(r):
    """ms/step of a finished run from its log ("trained 500 steps in 123.4 s (246.8 ms/step)"), or None."""
    try:
        with open(r.log) as f:
            for line in f:
                if line.startswith("trained "):
                    return float(line.split()[6].lstrip("("))
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_cores(a):
    return max(1, min(os.cpu_count() or 2, a.jobs * a.threads))


def run_ms(a, r):
    """Estimated ms per step of run r at 2 threads: --ms-per-step, else a finished run of the same arm in
    this grid (its rate scaled to 2 threads when it ran with 1), else the MS_PER_STEP table."""
    if a.ms_per_step:
        return a.ms_per_step
    if not hasattr(a, "_logged"):
        a._logged = {}
        for x in build_runs(a):
            ms = logged_ms(x) if x.trained() else None
            if ms is not None:
                a._logged.setdefault(x.arm, []).append(ms / SPEEDUP_2T if a.threads == 1 else ms)
    if r.arm in a._logged:
        vals = a._logged[r.arm]
        return sum(vals) / len(vals)
    T = min(MS_PER_STEP, key=lambda t: abs(t - a.seq_len))
    # a variant of an arm (lg-rattn-gain0: the same model, another start) costs what its arm costs
    arm = r.arm if r.arm in MS_PER_STEP[T] else r.arm.rsplit("-", 1)[0]
    return MS_PER_STEP[T][arm] * (a.seq_len / T) * (a.layers / 2.0) * (a.batch / 32.0)


def estimate_seconds(a, runs, todo):
    """Training time of the runs to do: their steps at 2 threads, spread over min(cores, jobs x threads)."""
    two_thread_s = sum(r.steps * run_ms(a, r) for r in todo) / 1000.0
    if machine_cores(a) == 1:
        return two_thread_s * SPEEDUP_2T
    return two_thread_s * 2.0 / machine_cores(a)


def previous_timing(table_path):
    """The timing line of an earlier table.md, kept when this invocation trained nothing (a redraw)."""
    try:
        with open(table_path) as f:
            for line in f:
                if line.startswith("Timing: "):
                    return line.rstrip("\n")
    except OSError:
        pass
    return None


def load_average():
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def fmt_duration(sec):
    if sec < 120:
        return f"{sec:.0f} s"
    if sec < 2 * 3600:
        return f"{sec / 60:.0f} min"
    return f"{sec / 3600:.1f} h"


if __name__ == "__main__":
    sys.exit(main())
