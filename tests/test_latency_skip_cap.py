"""Stage 1 prices the cell the decoder can emit: skip-connects past the cap cost what the other ops cost
(searchers/rspnet/latency_search.py, op_counts and cheapest_cell_ms)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rspnet_zoo.spec.ops import DARTS_PRIMITIVES
from searchers.rspnet.decode import SKIP, decode_cell
from searchers.rspnet.latency_search import cheapest_cell_ms, op_counts
from searchers.rspnet.structures import dense_edge_count
from searchers.rspnet.supernet import edge_groups

PRIMS = DARTS_PRIMITIVES
STEPS = 3


def edge_weights(alphas: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.softmax(alphas, dim=-1), torch.cat([F.softmax(betas[g], dim=0) for g in edge_groups(STEPS)])


@given(seed=st.integers(0, 10**6), cap=st.integers(0, 6), scale=st.floats(0.1, 8.0))
@settings(max_examples=25, deadline=None)
def test_capped_counts_keep_the_edges_and_hold_skips_to_the_cap(one_torch_thread, seed, cap, scale):
    g = torch.Generator().manual_seed(seed)
    alphas = scale * torch.randn(dense_edge_count(STEPS), len(PRIMS), generator=g, dtype=torch.float64)
    betas = scale * torch.randn(dense_edge_count(STEPS), generator=g, dtype=torch.float64)
    plain = op_counts(*edge_weights(alphas, betas), PRIMS)
    capped = op_counts(*edge_weights(alphas, betas), PRIMS, skip_cap=cap)
    names = [p for p in PRIMS if p != "none"]
    s = names.index(SKIP)
    assert torch.isclose(capped.sum(), plain.sum())  # 2 edges a step, whatever their ops
    assert capped[s] <= cap + 1e-9
    rest = [i for i in range(len(names)) if i != s]
    if plain[s] <= cap:
        assert torch.allclose(capped, plain)
    else:  # the struck skips go to the other ops in their proportions
        assert torch.allclose(capped[rest] / capped[rest].sum(), plain[rest] / plain[rest].sum())


def price_alone(skip_cap: int | None) -> tuple[float, float]:
    """Skip free, every other op 1 ms: the architecture after the price alone moved it, as (priced cost of
    the cell, cost of the cell the decoder emits with a cap of 2)."""
    names = [p for p in PRIMS if p != "none"]
    cost = torch.tensor([0.0 if p == SKIP else 1.0 for p in names], dtype=torch.float64)
    torch.manual_seed(0)
    alphas = torch.nn.Parameter(1e-3 * torch.randn(dense_edge_count(STEPS), len(PRIMS), dtype=torch.float64))
    betas = torch.nn.Parameter(1e-3 * torch.randn(dense_edge_count(STEPS), dtype=torch.float64))
    optimizer = torch.optim.Adam([alphas, betas], lr=0.1)
    for _ in range(100):
        priced = op_counts(*edge_weights(alphas, betas), PRIMS, skip_cap=skip_cap) @ cost
        optimizer.zero_grad()
        priced.backward()
        optimizer.step()
    a, b = edge_weights(alphas.detach(), betas.detach())
    decision = decode_cell(a * b[:, None], PRIMS, STEPS, skip_cap=2)
    emitted = sum(float(cost[names.index(e.op)]) for step in decision.cell.steps for e in step.edges)
    return float(op_counts(a, b, PRIMS, skip_cap=skip_cap) @ cost), emitted


def test_under_the_price_alone_the_priced_cell_is_the_one_the_decoder_emits(one_torch_thread):
    """Priced as free, skips won every edge and the price saw a cell of about 0 ms; the decoder keeps 2
    and emits 4 ms of other ops. Priced with the cap, the price sees those 4 ms."""
    priced, emitted = price_alone(skip_cap=2)
    assert emitted == 4.0 and abs(priced - emitted) < 0.05
    priced, emitted = price_alone(skip_cap=None)
    assert emitted == 4.0 and priced < 0.5


def test_the_cheapest_emittable_cell_has_at_most_the_cap_of_skips():
    names = ["skip_connect", "max_pool_3x3", "sep_conv_3x3"]
    ops_ms = torch.tensor([[0.0, 2.0, 3.0], [5.0, 2.0, 3.0]], dtype=torch.float64)
    assert cheapest_cell_ms(ops_ms, names, edges=6, skip_cap=2).tolist() == [8.0, 12.0]  # 4 pools; 6 pools
    assert cheapest_cell_ms(ops_ms, names, edges=6, skip_cap=None).tolist() == [0.0, 12.0]
