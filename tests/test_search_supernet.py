"""The supernets and the bilevel step: partial channels, edge normalisation, path attention, second order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rspnet_zoo.nn.ops import DARTS_PRIMITIVES
from rspnet_zoo.spec.plan import check_genotype
from searchers.rspnet.bilevel import Bilevel
from searchers.rspnet.budgets import CellStage, PathStage, resolve_config
from searchers.rspnet.decode import decode_cell
from searchers.rspnet.path_search import PathSupernet
from searchers.rspnet.structures import lattice
from searchers.rspnet.supernet import CellSupernet, MixedStep, channel_shuffle, search_op

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def per_edge_reference(step: MixedStep, states, alphas, betas):
    """The PC-DARTS step written edge by edge, each edge's ops cut out of the step's blocks."""
    w, out = step.width, 0
    for j, h in enumerate(states):
        mixed = 0
        for k, i in enumerate(step.index):
            op = search_op(DARTS_PRIMITIVES[i], w)
            with torch.no_grad():
                for p, wide in zip(op.parameters(), step.ops[k].parameters()):
                    p.copy_(wide[j * w : (j + 1) * w])
            mixed = mixed + alphas[j, i] * op(h[:, :w])
        if step.partial > 1:
            mixed = channel_shuffle(torch.cat([mixed, h[:, w:]], dim=1), step.partial)
        out = out + betas[j] * mixed
    return out


@pytest.mark.parametrize("partial", [4, 1])
def test_a_mixed_step_computes_one_mixed_op_per_edge(partial):
    torch.manual_seed(0)
    step = MixedStep(3, 16, DARTS_PRIMITIVES, partial)
    states = [torch.randn(2, 16, 8, 8) for _ in range(3)]
    alphas = torch.softmax(torch.randn(3, len(DARTS_PRIMITIVES)), -1).requires_grad_()
    betas = torch.softmax(torch.randn(3), 0).requires_grad_()
    out, reference = step(states, alphas, betas), per_edge_reference(step, states, alphas, betas)
    assert out.shape == (2, 16, 8, 8)
    assert torch.allclose(out, reference, atol=1e-5)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), [alphas, betas])
    reference_grads = torch.autograd.grad((reference * probe).sum(), [alphas, betas])
    assert all(torch.allclose(g, r, atol=1e-4) for g, r in zip(grads, reference_grads))


def test_partial_channels_run_a_quarter_of_the_channels_and_shuffle_the_rest_back():
    torch.manual_seed(0)
    step = MixedStep(2, 16, DARTS_PRIMITIVES, partial=4)
    full = MixedStep(2, 16, DARTS_PRIMITIVES, partial=1)
    assert all(m.num_features == 2 * 4 for m in step.modules() if isinstance(m, nn.BatchNorm2d))
    assert sum(p.numel() for p in step.parameters()) < sum(p.numel() for p in full.parameters()) / 4
    states = [torch.randn(2, 16, 8, 8) for _ in range(2)]
    alphas = torch.zeros(2, len(DARTS_PRIMITIVES))
    alphas[:, DARTS_PRIMITIVES.index("skip_connect")] = 1.0  # identity on the partial channels
    betas = torch.tensor([1.0, 0.0])  # and only the first edge: a pure shuffle of its input
    assert torch.equal(step(states, alphas, betas), channel_shuffle(states[0], 4))
    assert not any(m.affine for m in step.modules() if isinstance(m, nn.BatchNorm2d))  # search BN has no affine


def test_cell_supernet_segments_at_input_size_and_splits_weights_from_architecture():
    cfg = CellStage(epochs=2, layers=4, levels=2, channels=8, steps=3, partial=2, head_channels=8)
    model = CellSupernet(cfg, num_classes=5)
    check_genotype(model.genotype)  # the proxy chain is itself a valid spec
    out = model(torch.randn(2, 3, 35, 47))
    assert out.shape == (2, 5, 35, 47)
    arch = {id(p) for p in model.arch_parameters()}
    assert model.alphas.shape == (2 + 3 + 4, len(DARTS_PRIMITIVES)) and model.betas.shape == (9,)
    assert not arch & {id(p) for p in model.weight_parameters()}
    assert len(arch) + len(model.weight_parameters()) == len(list(model.parameters()))
    _, betas = model.edge_weights()
    assert torch.allclose(betas[:2].sum(), torch.tensor(1.0)) and torch.allclose(betas[5:].sum(), torch.tensor(1.0))


def test_path_supernet_offers_every_candidate_and_its_attention_is_a_softmax_per_node():
    cell = decode_cell(torch.rand(5, len(DARTS_PRIMITIVES)), DARTS_PRIMITIVES, steps=2).cell
    stage = PathStage(epochs=2, layers=3, channels=4, two_back=True, head_channels=8)
    model = PathSupernet(cell, stage, num_classes=4)
    nodes = lattice(3, two_back=True)
    assert [n.id for n in model.lattice] == [n.id for n in nodes]
    by_id = {n.id: n for n in nodes}
    assert by_id["l3_r16"].previous == ("l2_r8", "l2_r16") and by_id["l3_r16"].two_back == ("l1_r8",)
    assert by_id["l3_r32"].candidates == ("l2_r16",)  # each layer reaches one level deeper
    attention = model.attention()
    assert torch.allclose(attention.sum(-1), torch.ones(len(nodes)))
    assert all(attention[r, len(n.candidates) :].sum() == 0 for r, n in enumerate(nodes))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4, 32, 32)
    out.logsumexp(1).mean().backward()
    assert model.logits.grad is not None and model.logits.grad.abs().sum() > 0


class Toy(nn.Module):
    """Two branches mixed by softmax(alpha): small enough for the exact unrolled gradient."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x):
        w = F.softmax(self.alpha, 0)
        return w[0] * self.a(x) + w[1] * torch.tanh(self.b(x))

    def arch_parameters(self):
        return [self.alpha]

    def weight_parameters(self):
        return [p for n, p in self.named_parameters() if n != "alpha"]


def test_second_order_matches_the_exact_unrolled_gradient_and_restores_the_weights():
    torch.manual_seed(0)
    model = Toy().double()
    x_t, x_v = torch.randn(2, 3, 6, 6).double(), torch.randn(2, 3, 6, 6).double()
    y_t, y_v = torch.randint(0, 4, (2, 6, 6)), torch.randint(0, 4, (2, 6, 6))
    lr = 0.1
    # exact: d/dalpha L_val(w - lr * dL_train/dw, alpha), by double backward
    names = [n for n, _ in model.named_parameters() if n != "alpha"]
    weights = model.weight_parameters()
    g = torch.autograd.grad(F.cross_entropy(model(x_t), y_t), weights, create_graph=True)
    unrolled = {n: w - lr * gi for n, w, gi in zip(names, weights, g)} | {"alpha": model.alpha}
    exact = torch.autograd.grad(F.cross_entropy(functional_call(model, unrolled, (x_v,)), y_v), model.alpha)[0]

    schedule = resolve_config(
        "smoke", {"cell.lr": lr, "cell.momentum": 0.0, "cell.weight_decay": 0.0, "cell.order": 2}
    ).cell
    bilevel = Bilevel(model, schedule)
    before = [w.detach().clone() for w in weights]
    _, _, grads = bilevel._unrolled_grads(x_t, y_t, x_v, y_v)
    assert torch.allclose(grads[0], exact, rtol=1e-3, atol=1e-6), (grads[0], exact)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))
    first = torch.autograd.grad(F.cross_entropy(model(x_v), y_v), model.alpha)[0]
    assert not torch.allclose(first, exact, rtol=1e-3)  # the second-order term is really there


def test_an_architecture_step_moves_only_the_architecture():
    torch.manual_seed(0)
    cfg = resolve_config("smoke", {"order": 2})
    model = CellSupernet(cfg.cell, num_classes=3)
    bilevel = Bilevel(model, cfg.cell)
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    weights = [w.detach().clone() for w in model.weight_parameters()]
    alphas = model.alphas.detach().clone()
    bilevel.arch_step(x, y, x, y)
    assert not torch.equal(model.alphas, alphas)
    assert all(torch.equal(a, b) for a, b in zip(model.weight_parameters(), weights))
