"""The controller of the template search: an LSTM policy over action strings, trained by PPO.

The policy emits an action string one position at a time. Each position has its own number of
choices (6 ops, 2 aggregations, a pool that grows with the blocks, ...), so each has its own linear
head and its own embedding of the chosen action, which is the next step's input. PPO (Schulman et
al., 2017) updates it from a batch of rewarded strings: the clipped surrogate on advantages against
an exponential moving average of the rewards, plus an entropy bonus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

# (position, the actions before it) -> which choices are allowed there (None: all)
MaskFn = Callable[[int, tuple[int, ...]], "tuple[bool, ...] | None"]


class Controller(nn.Module):
    """An LSTM cell walking the positions; ``forward`` samples strings or scores given ones.

    ``mask`` (optional) refuses choices that the actions before a position rule out; refused choices
    get probability 0 both when sampling and when scoring, so PPO's ratios stay exact."""

    def __init__(self, choices: Sequence[int], hidden: int = 100, mask: MaskFn | None = None):
        super().__init__()
        self.mask = mask
        self.choices = tuple(int(n) for n in choices)
        offsets = torch.tensor((0,) + self.choices[:-1]).cumsum(0) + 1  # embedding 0 is the start token
        self.register_buffer("offsets", offsets, persistent=False)
        self.embed = nn.Embedding(1 + sum(self.choices), hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.choices)

    def forward(
        self,
        actions: torch.Tensor | None = None,
        batch: int = 1,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actions B x T, log-probability B, entropy B): of ``actions`` if given, else of ``batch``
        strings sampled (or the most likely one with ``greedy``)."""
        if actions is not None:
            batch = actions.shape[0]
        h = c = self.embed.weight.new_zeros(batch, self.lstm.hidden_size)
        x = self.embed(torch.zeros(batch, dtype=torch.long, device=h.device))
        taken, logp, entropy = [], h.new_zeros(batch), h.new_zeros(batch)
        for t, head in enumerate(self.heads):
            h, c = self.lstm(x, (h, c))
            logits = head(h)
            if self.mask is not None:
                logits = self._masked(t, logits, torch.stack(taken, 1) if taken else None)
            log_probs = torch.log_softmax(logits, dim=-1)
            if actions is not None:
                a = actions[:, t]
            elif greedy:
                a = log_probs.argmax(-1)
            else:
                a = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
            logp = logp + log_probs.gather(1, a[:, None]).squeeze(1)
            entropy = entropy - (log_probs.exp() * log_probs.clamp_min(-1e4)).sum(-1)
            taken.append(a)
            x = self.embed(self.offsets[t] + a)
        return torch.stack(taken, 1), logp, entropy

    def _masked(self, t: int, logits: torch.Tensor, before: torch.Tensor | None) -> torch.Tensor:
        prefixes = [()] * logits.shape[0] if before is None else [tuple(row) for row in before.tolist()]
        masks = [self.mask(t, prefix) for prefix in prefixes]
        if all(m is None for m in masks):
            return logits
        allowed = torch.tensor(
            [[True] * logits.shape[1] if m is None else list(m) for m in masks], device=logits.device
        )
        return logits.masked_fill(~allowed, float("-inf"))


class PPO:
    """Proximal policy optimisation of a Controller on (action strings, rewards) batches."""

    def __init__(
        self,
        controller: Controller,
        lr: float = 1e-4,
        clip: float = 0.2,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
        epochs: int = 4,
    ):
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr)
        self.clip = clip
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.epochs = epochs
        self.baseline: float | None = None
        self.updates = 0

    def update(self, actions: torch.Tensor, rewards: torch.Tensor, old_logp: torch.Tensor) -> dict:
        """``epochs`` gradient steps on the clipped surrogate; then the baseline moves towards the batch mean."""
        rewards = rewards.float()
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        advantage = rewards - self.baseline
        old_logp = old_logp.detach()
        for _ in range(self.epochs):
            _, logp, entropy = self.controller(actions)
            ratio = (logp - old_logp).exp()
            surrogate = torch.min(ratio * advantage, ratio.clamp(1 - self.clip, 1 + self.clip) * advantage)
            loss = -surrogate.mean() - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        used = self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(rewards.mean())
        self.updates += 1
        return dict(
            loss=float(loss.detach()),
            baseline=used,
            entropy=float(entropy.mean().detach()),
            advantage=advantage.tolist(),
        )

    def state_dict(self) -> dict:
        return dict(
            controller=self.controller.state_dict(),
            optimizer=self.optimizer.state_dict(),
            baseline=self.baseline,
            updates=self.updates,
        )

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline, self.updates = state["baseline"], state["updates"]
