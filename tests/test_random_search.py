"""Random search over the RSPNet search space (searchers/rspnet/random_search.py): every sample is a network
the search could emit, narrowed to a latency target by the search's own width rule, and the best proxy
score wins."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Subset

from rspnet_zoo.data import build_dataset
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.ops import DARTS_PRIMITIVES
from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.decode import SKIP
from searchers.rspnet.latency_search import LatencyGoal
from searchers.rspnet.random_search import ProxyTraining, random_cell, random_network, random_search


@given(seed=st.integers(0, 10**6), steps=st.integers(1, 5), cap=st.integers(0, 4))
@settings(max_examples=60, deadline=None)
def test_a_random_cell_has_the_decoded_shape_and_respects_the_skip_cap(seed, steps, cap):
    cell = random_cell(DARTS_PRIMITIVES, steps, cap, random.Random(seed))
    assert len(cell.steps) == steps and cell.concat == list(range(2, 2 + steps))
    for i, step in enumerate(cell.steps):
        inputs = [e.input for e in step.edges]
        assert len(inputs) == 2 and len(set(inputs)) == 2 and all(0 <= j < 2 + i for j in inputs)
        assert all(e.op in DARTS_PRIMITIVES and e.op != "none" for e in step.edges)
    assert sum(e.op == SKIP for s in cell.steps for e in s.edges) <= cap


def test_the_same_seed_draws_the_same_network():
    config = resolve_config("mobile")
    first = random_network(config, random.Random(3), 9, "a")
    assert first == random_network(config, random.Random(3), 9, "a")
    assert first != random_network(config, random.Random(4), 9, "a")
    GenotypeNet(first)  # it compiles


class ChannelTable:
    """A stand-in latency table: a network costs the sum of its nodes' channels."""

    def predict(self, genotype) -> float:
        return float(sum(n.channels or 0 for n in genotype.network.nodes))


def test_under_a_goal_the_width_is_the_widest_predicted_to_meet_the_target():
    config = resolve_config("mobile")
    table = ChannelTable()
    widths = sorted({round(config.path.spec_channels * m) for m in config.path.latency_widths})
    costs = {}
    for w in widths:
        cost_config = config.model_copy(
            update=dict(path=config.path.model_copy(update=dict(spec_channels=w, latency_widths=(1.0,))))
        )
        costs[w] = table.predict(random_network(cost_config, random.Random(0), 9, "n"))
    target = (costs[widths[1]] + costs[widths[2]]) / 2  # between the second and third narrowest
    network = random_network(config, random.Random(0), 9, "n", LatencyGoal(table, target))
    assert table.predict(network) == costs[widths[1]]


def test_random_search_keeps_the_best_held_out_score_within_its_budget(one_torch_thread):
    config = resolve_config("smoke")
    data = build_dataset("synthetic", "train", crop=(32, 32), train=True)
    halves = (Subset(data, range(2)), Subset(data, range(2, 4)))
    proxy = ProxyTraining(steps=1, batch_size=2)
    random_search(config, data.num_classes, *halves, proxy, 0, 0.0)  # warm: the first sample pays for imports
    once = random_search(config, data.num_classes, *halves, proxy, 0, 0.0)
    assert len(once.scores) == 1 and once.best_miou == once.scores[0] and once.best.name == "random_search"
    more = random_search(config, data.num_classes, *halves, proxy, 0, 4 * once.cpu_s)
    assert 2 <= len(more.scores) <= 8 and more.best_miou == max(more.scores)
    assert more.scores[0] == once.scores[0]  # sample i is a function of the seed and i
