"""Stage 1 under its latency term alone (issue 31): where the price takes the cell of the mobile space, what
the decoder emits from it, and whether the priced E matches the decoded cell's latency (the same lattice,
uniform paths, the same table).

    PYTHONPATH=. RSPNET_ZOO_HOME=<home with the table> python price_alone.py TARGET_MS STEPS
"""

import sys
from collections import Counter

import torch

from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.decode import decode_cell
from searchers.rspnet.latency_search import LatticeLatency, open_goal, placeholder_cell
from searchers.rspnet.supernet import CellSupernet

torch.manual_seed(0)
torch.set_num_threads(1)
target, steps = float(sys.argv[1]), int(sys.argv[2])
config = resolve_config("mobile", {"image_size": 32})
goal = open_goal(target, (256, 512), config, 9)
model = CellSupernet(config.cell, 9, config.cell.primitives)
penalty = goal.cell_penalty(config, 9, model)
cell = config.cell
optimizer = torch.optim.Adam(
    model.arch_parameters(), lr=cell.arch_lr, betas=(0.5, 0.999), weight_decay=cell.arch_weight_decay
)
for _ in range(steps):
    loss = penalty()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
d = decode_cell(model.decode_weights(), model.primitives, cell.steps, cell.skip_cap)
cost = LatticeLatency(
    goal.table, placeholder_cell(cell.steps), goal.lattice(config.path), config.path, 9, model.primitives
)
ops = Counter(e.op for s in d.cell.steps for e in s.edges)
counts = torch.tensor([float(ops.get(p, 0)) for p in cost.primitives])
decoded = float(cost.expected(cost.uniform(), counts))
alphas, _ = model.edge_weights()
print(
    f"target {target}: priced E {penalty.last_ms:.1f} ms; decoded cell {dict(ops)} "
    f"(skips {d.skips_before_cap} -> {d.skips}) priced {decoded:.1f} ms"
)
print("mean softmax(alpha):", dict(zip(model.primitives, [round(v, 3) for v in alphas.mean(0).tolist()])))
