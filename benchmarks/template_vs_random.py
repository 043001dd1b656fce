"""Template search: 20 strings from the trained controller against 20 random strings (Nekrasov et al.,
WACV 2020, Sect. 5: the controller's samples score higher; the Spearman correlation between
search-time reward and reward after longer training is 0.734 for controller samples, 0.904 for random).

1. A template search (PPO) of ``--train-samples`` strings at the given budget trains the controller.
2. ``--compare`` strings are sampled from the trained controller and as many uniformly at random
   (the same masks: every string decodes). Each is scored at search time (the budget's epochs; a string
   the search already scored takes its cached reward, which is the same by construction: a sample's
   seed is a function of the run's seed and the string).
3. Each is trained again ``--longer`` times as many epochs (frozen-stem and end-to-end alike) and
   scored the same way: the "longer training".

It prints mean and median rewards per group at both lengths, Spearman's rho (torchmetrics) per group,
the paper's figures beside them, wall and CPU time and the load average, and writes everything to
``--out`` (JSON).

The defaults are the ``small`` budget cut to fit about 13 CPU minutes (160 images, 1 + 1 epochs per
sample at search time, 3 + 3 for the longer training, 20 strings of controller training): the full
``small`` setting for all 60 + 40 trainings would take over an hour of one core.

    python benchmarks/template_vs_random.py [--budget small] [--set images=300 ...] [--workers 2]
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
from torchmetrics.functional import spearman_corrcoef

from rspnet_zoo.fsutil import atomic_write_text
from searchers.template.budgets import resolve_template_budget
from searchers.template.evaluate import EvalContext
from searchers.template.search import STEM, Pool, TemplateSearch, TemplateSearchRequest, search
from searchers.template.space import TemplateSpace

PAPER_RHO = {"controller": 0.734, "random": 0.904}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers, once their pool is closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def evaluate_all(context: EvalContext, workers: int, strings: dict[int, tuple]) -> dict[int, dict]:
    results: dict[int, dict] = {}
    pool = Pool(context, workers)
    try:
        pool.run(strings, lambda slot, result: results.__setitem__(slot, result))
    finally:
        pool.close()
    return results


def summary(rewards: list[float]) -> dict:
    return dict(mean=statistics.mean(rewards), median=statistics.median(rewards), n=len(rewards))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="small")
    parser.add_argument(
        "--set",
        nargs="*",
        default=["images=160", "frozen_epochs=1", "end_to_end_epochs=1"],
        help="budget overrides KEY=VALUE (JSON values)",
    )
    parser.add_argument("--train-samples", type=int, default=20, help="strings the controller is trained on")
    parser.add_argument("--compare", type=int, default=20, help="strings per group")
    parser.add_argument("--longer", type=int, default=3, help="epoch multiple of the longer training")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/template_vs_random"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/template_vs_random/results.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    overrides["architectures"] = args.train_samples
    cfg = resolve_template_budget(args.budget, overrides)
    started, cpu0 = time.perf_counter(), cpu_seconds()
    print(f"load average at start: {os.getloadavg()}; budget {args.budget} with {overrides}", flush=True)

    request = TemplateSearchRequest(
        budget=args.budget,
        config=cfg,
        name="template_vs_random",
        out=args.run_dir / "trained.json",
        run_dir=args.run_dir / "search",
        seed=args.seed,
        workers=args.workers,
        force=True,
    )
    found = search(request)
    phase = {"controller training": (time.perf_counter() - started, cpu_seconds() - cpu0)}
    print(f"controller trained on {found['samples']} strings: mean reward per update {found['mean_reward_per_batch']}")

    state = TemplateSearch(request)
    state.load()
    space = TemplateSpace.of(cfg)
    generator = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        controller = [tuple(a) for a in state.controller(batch=args.compare, generator=generator)[0].tolist()]
    rand = [space.sample(generator) for _ in range(args.compare)]
    groups = {"controller": controller, "random": rand}
    strings = dict(enumerate(controller + rand))

    stem_file = request.run_dir / STEM
    context = EvalContext(cfg, "synthetic", None, stem_file, args.seed)
    todo = {i: a for i, a in strings.items() if state.config_of(a) not in state.cache}
    t, c = time.perf_counter(), cpu_seconds()
    search_time = evaluate_all(context, args.workers, todo)
    for i, a in strings.items():
        search_time.setdefault(i, state.cache.get(state.config_of(a)))
    phase["search-time scoring"] = (time.perf_counter() - t, cpu_seconds() - c)

    longer_cfg = cfg.model_copy(
        update=dict(
            frozen_epochs=cfg.frozen_epochs * args.longer, end_to_end_epochs=cfg.end_to_end_epochs * args.longer
        )
    )
    t, c = time.perf_counter(), cpu_seconds()
    longer = evaluate_all(EvalContext(longer_cfg, "synthetic", None, stem_file, args.seed), args.workers, strings)
    phase["longer training"] = (time.perf_counter() - t, cpu_seconds() - c)

    report: dict = dict(
        setting=dict(
            budget=args.budget,
            overrides=overrides,
            train_samples=args.train_samples,
            compare=args.compare,
            longer_epochs=[longer_cfg.frozen_epochs, longer_cfg.end_to_end_epochs],
            workers=args.workers,
            seed=args.seed,
        ),
        phases={k: dict(wall_s=round(w, 1), cpu_s=round(c, 1)) for k, (w, c) in phase.items()},
        load_average_end=os.getloadavg(),
        groups={},
    )
    offset = 0
    for group, members in groups.items():
        idx = range(offset, offset + len(members))
        offset += len(members)
        short = [search_time[i]["reward"] for i in idx]
        long = [longer[i]["reward"] for i in idx]
        rho = float(spearman_corrcoef(torch.tensor(short), torch.tensor(long)))
        report["groups"][group] = dict(
            search_time=summary(short),
            longer=summary(long),
            spearman=rho,
            paper_spearman=PAPER_RHO[group],
            distinct=len({state.config_of(a) for a in members}),
            rows=[
                dict(config=state.config_of(strings[i]), search_time=s, longer=lg) for i, s, lg in zip(idx, short, long)
            ],
        )
    report["total"] = dict(wall_s=round(time.perf_counter() - started, 1), cpu_s=round(cpu_seconds() - cpu0, 1))
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")

    print(f"\n{'group':<11} {'distinct':>8} {'search mean':>11} {'median':>7} {'longer mean':>11} {'median':>7}"
          f" {'spearman':>8} {'paper':>6}")  # fmt: skip
    for group, g in report["groups"].items():
        s, lg = g["search_time"], g["longer"]
        print(
            f"{group:<11} {g['distinct']:>8} {s['mean']:>11.4f} {s['median']:>7.4f} {lg['mean']:>11.4f} "
            f"{lg['median']:>7.4f} {g['spearman']:>8.3f} {g['paper_spearman']:>6.3f}"
        )
    for name, p in report["phases"].items():
        print(f"{name}: {p['wall_s']} s wall, {p['cpu_s']} s CPU")
    print(
        f"total: {report['total']['wall_s']} s wall, {report['total']['cpu_s']} s CPU; load average {os.getloadavg()}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
