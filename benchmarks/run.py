"""Speed of tdlab's training loop and batched sweeps, printed as a markdown table.

    python benchmarks/run.py [--steps 500] [--configs 16] [--device cpu|cuda] [--threads N]

Side by side, in one run on the same machine:

1. steps/s of ``tdlab.core.train.train`` (device-resident tensors, batches by index, the
   flat-buffer AdamW of ``tdlab.core.flat``) vs a plain PyTorch ``DataLoader`` loop training
   the same MLP on MNIST-1D (same batch size, same steps, ``torch.optim.AdamW``), and,
   to show where the difference comes from, the same plain loop with the DataLoader
   replaced by index slicing ("index loop");
2. wall time of a sweep of ``--configs`` configurations (learning rate × weight decay
   × seed): one batched ``tdlab.core.sweep.sweep`` vs ``--configs`` sequential ``train`` runs,
   and vs a single run;
3. the same on CUDA when a GPU is present (and a 64-configuration sweep there).

Each timing is the best of ``--repeats`` interleaved runs after a warm-up run.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from tdlab.core import data as tdata
from tdlab.core import engine
from tdlab.core import models, sweep, train

BATCH = 128


def mlp(width):
    return lambda: models.MLP(40, 10, width=width, depth=2)


def cnn():
    return models.CNN1d(40, 10, channels=32)


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(functions: dict, repeats: int, warm_up: bool = True) -> dict:
    """Best wall time of each function. After one warm-up call each (allocations, caches,
    cudnn autotune), the functions run in turn ``repeats`` times — interleaved, so a slow
    spell on a shared machine slows all of them rather than one."""
    if warm_up:
        for fn in functions.values():
            fn()
    best = {name: math.inf for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def dataloader_loop(model_fn, dataset, steps, device):
    """The textbook loop: numpy arrays → TensorDataset → DataLoader(shuffle) → .to(device)."""
    torch.manual_seed(0)
    model = model_fn().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(dataset.x_train.cpu(), dataset.y_train.cpu()), batch_size=BATCH,
                        shuffle=True, drop_last=True)
    done = 0
    while done < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break


def index_loop(model_fn, dataset, steps, device):
    """The loop without the DataLoader: tensors on the device, batches sliced by index, torch.optim.AdamW."""
    torch.manual_seed(0)
    model = model_fn().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    for index in engine.batch_order(len(x), BATCH, steps, seed=0, device=device):
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def tdlab_loop(model_fn, dataset, steps):
    train.train(model_fn, dataset, steps=steps, eval_every=steps, batch_size=BATCH, progress=False)


def configs(count):
    lrs = [3e-4, 1e-3, 3e-3, 1e-2]
    wds = [0.0, 1e-4, 1e-3, 1e-2]
    out = [{"lr": lrs[i % 4], "weight_decay": wds[(i // 4) % 4], "seed": i} for i in range(count)]
    return out


def benchmark(device: str, steps: int, count: int, repeats: int, widths=(32, 256)) -> list[dict]:
    dataset = tdata.load("mnist1d", device=device)
    rows = []
    for label, model_fn in [*[(f"MLP 40-{w}-{w}-10", mlp(w)) for w in widths], ("CNN1d (32 ch)", cnn)]:
        times = best_of({
            "loader": lambda: dataloader_loop(model_fn, dataset, steps, device),
            "plain": lambda: index_loop(model_fn, dataset, steps, device),
            "ours": lambda: tdlab_loop(model_fn, dataset, steps),
            "batched": lambda: sweep.sweep(model_fn, dataset, configs(count), steps=steps, eval_every=steps,
                                           batch_size=BATCH, progress=False),
        }, repeats)
        loader, plain, ours, batched = (times[k] for k in ("loader", "plain", "ours", "batched"))
        single = ours
        sequential = best_of({"sequential": lambda: sweep.sequential(
            model_fn, dataset, configs(count), steps=steps, eval_every=steps, batch_size=BATCH, progress=False)},
            1, warm_up=False)["sequential"]  # 16 runs: the first one warms up the rest
        rows.append({"device": device, "model": label, "steps": steps, "configs": count,
                     "dataloader steps/s": steps / loader, "index-loop steps/s": steps / plain,
                     "tdlab steps/s": steps / ours,
                     "loop speed-up": loader / ours, "single run s": single, "batched sweep s": batched,
                     "sequential s": sequential, "batched / single": batched / single,
                     "sequential / batched": sequential / batched})
    return rows


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]  # markdown
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    rows = []
    if args.device in ("cpu", "all"):
        rows += benchmark("cpu", args.steps, args.configs, args.repeats)
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        rows += benchmark("cuda", args.steps, args.configs, args.repeats)
        rows += benchmark("cuda", args.steps, 64, args.repeats, widths=(256,))
    print(table(rows))


if __name__ == "__main__":
    main()
