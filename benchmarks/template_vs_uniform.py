"""Does the template search's controller beat uniform sampling at equal samples (issue 31)?

Per seed (``--seeds``):

1. the template search (``searchers.template.search.search``: LSTM controller, PPO) samples
   ``--samples`` strings, ``--per-update`` per PPO update, at a budget of tiny proxy training (the
   ``smoke`` space and data, ``--frozen-epochs`` on the precomputed stem outputs, no end-to-end epochs)
   so that the controller gets many updates;
2. as many strings are drawn uniformly (``TemplateSpace.sample``, the same masks) and scored by the same
   evaluator on the same stem (the search's, from that seed); a string scored before takes its cached
   reward, which is the same by construction (a sample's seed is a function of the run's seed and the
   string), as in the search;
3. for seed 0, ``--rank-strings`` distinct uniform strings are trained again ``--longer`` times as many
   epochs, and Spearman's rho between the search-time and the longer reward is printed (the paper:
   0.734 for controller samples, 0.904 for random ones).

It prints, per seed and over seeds, the mean reward of every sample and of the second half of the
samples (where the controller has had half its updates) for both methods, wall and CPU time and the load
average, and writes everything to ``--out`` (JSON).

    nice -n 5 python benchmarks/template_vs_uniform.py [--seeds 3] [--samples 48] [--per-update 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch

from rspnet_zoo.fsutil import atomic_write_text
from searchers.template.budgets import resolve_template_budget
from searchers.template.evaluate import EvalContext
from searchers.template.search import STEM, Pool, TemplateSearch, TemplateSearchRequest, search
from searchers.template.space import TemplateSpace, config_text

PAPER_RHO = {"controller": 0.734, "random": 0.904}


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (exact with ties)."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def scored(context: EvalContext, strings: list[tuple], cache: dict[str, dict], space: TemplateSpace) -> list[dict]:
    """The result of every string, evaluating only those ``cache`` lacks (by their config)."""
    todo = {}
    for i, actions in enumerate(strings):
        key = config_text(space.to_config(actions))
        if key not in cache and key not in {config_text(space.to_config(a)) for a in todo.values()}:
            todo[i] = actions
    pool = Pool(context, 1)
    pool.run(todo, lambda i, result: cache.__setitem__(config_text(space.to_config(strings[i])), result))
    pool.close()
    return [cache[config_text(space.to_config(a))] for a in strings]


def halves(rewards: list[float]) -> dict:
    return dict(mean=statistics.fmean(rewards), second_half=statistics.fmean(rewards[len(rewards) // 2 :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=48, help="strings per method and seed")
    parser.add_argument("--per-update", type=int, default=4, help="strings per PPO update")
    parser.add_argument("--frozen-epochs", type=int, default=2)
    parser.add_argument("--controller-lr", type=float, default=5e-3, help="the small budget's")
    parser.add_argument("--entropy-weight", type=float, default=1e-2, help="the small budget's")
    parser.add_argument("--stem-steps", type=int, default=50)
    parser.add_argument("--rank-strings", type=int, default=10)
    parser.add_argument("--longer", type=int, default=4, help="epoch multiple of the longer training")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/template_vs_uniform"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/template_vs_uniform/results.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = dict(
        architectures=args.samples,
        strings_per_update=args.per_update,
        frozen_epochs=args.frozen_epochs,
        end_to_end_epochs=0,
        controller_lr=args.controller_lr,
        entropy_weight=args.entropy_weight,
        stem_steps=args.stem_steps,
    )
    cfg = resolve_template_budget("smoke", overrides)
    space = TemplateSpace.of(cfg)
    started, cpu0, load0 = time.perf_counter(), cpu_seconds(), os.getloadavg()
    print(f"load average {load0}; smoke budget with {overrides}", flush=True)
    report: dict = dict(setting=dict(budget="smoke", overrides=overrides, seeds=args.seeds), seeds=[])
    for seed in range(args.seeds):
        request = TemplateSearchRequest(
            budget="smoke",
            config=cfg,
            name=f"template_s{seed}",
            out=args.run_dir / f"s{seed}" / "found.json",
            run_dir=args.run_dir / f"s{seed}",
            seed=seed,
            force=True,
        )
        search(request)
        state = TemplateSearch(request)
        state.load()
        controller = [r["reward"] for r in sorted(state.rows, key=lambda r: r["index"])]
        generator = torch.Generator().manual_seed(10_000 + seed)
        uniform_strings = [space.sample(generator) for _ in range(args.samples)]
        context = EvalContext(cfg, "synthetic", None, request.run_dir / STEM, seed)
        cache = dict(state.cache)  # the same string at the same seed scores the same: taken as the search takes it
        uniform = [r["reward"] for r in scored(context, uniform_strings, cache, space)]
        row = dict(
            seed=seed,
            updates=len(state.updates),
            controller=halves(controller),
            uniform=halves(uniform),
            controller_distinct=len({r["config"] for r in state.rows}),
            uniform_distinct=len({config_text(space.to_config(a)) for a in uniform_strings}),
            mean_reward_per_update=[round(u["mean_reward"], 4) for u in state.updates],
        )
        if seed == 0:
            distinct = list({config_text(space.to_config(a)): a for a in uniform_strings}.values())[: args.rank_strings]
            short = [r["reward"] for r in scored(context, distinct, cache, space)]
            longer_cfg = cfg.model_copy(update=dict(frozen_epochs=cfg.frozen_epochs * args.longer))
            longer_context = EvalContext(longer_cfg, "synthetic", None, request.run_dir / STEM, seed)
            long = [r["reward"] for r in scored(longer_context, distinct, {}, space)]
            row["rank"] = dict(strings=len(distinct), short=short, longer=long, spearman=spearman(short, long))
        report["seeds"].append(row)
        print(
            f"seed {seed}: {row['updates']} PPO updates; mean reward controller {row['controller']['mean']:.4f} "
            f"(second half {row['controller']['second_half']:.4f}, {row['controller_distinct']} distinct), uniform "
            f"{row['uniform']['mean']:.4f} (second half {row['uniform']['second_half']:.4f}, "
            f"{row['uniform_distinct']} distinct)"
            + (
                f"; Spearman rho {row['rank']['spearman']:.3f} over {row['rank']['strings']} strings"
                if seed == 0
                else ""
            ),
            flush=True,
        )
    for method in ("controller", "uniform"):
        for part in ("mean", "second_half"):
            values = [r[method][part] for r in report["seeds"]]
            report[f"{method}_{part}"] = [
                statistics.fmean(values),
                statistics.stdev(values) if len(values) > 1 else 0.0,
            ]
    report["total"] = dict(
        wall_s=round(time.perf_counter() - started, 1),
        cpu_s=round(cpu_seconds() - cpu0, 1),
        load_average=[list(load0), list(os.getloadavg())],
    )
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    for part in ("mean", "second_half"):
        c, u = report[f"controller_{part}"], report[f"uniform_{part}"]
        verdict = "beats" if c[0] > u[0] else "does not beat"
        print(
            f"{part}: controller {c[0]:.4f} +- {c[1]:.4f}, uniform {u[0]:.4f} +- {u[1]:.4f}: the controller {verdict}"
        )
    print(f"total {report['total']}; wrote {args.out}")


if __name__ == "__main__":
    main()
