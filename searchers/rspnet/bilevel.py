"""DARTS bilevel optimisation: weights by SGD on the train half, architecture by Adam on the held-apart half.

First order takes the architecture gradient at the current weights. Second order takes it after one
virtual SGD step of the weights and corrects it with the finite-difference Hessian-vector product
(DARTS eq. 7-8), the virtual step including momentum and weight decay as the original does.

Under torchrun every gradient is averaged over the ranks before it is used (the virtual step's, the
perturbation direction's and the final ones), so each rank takes the step one process would take with
the whole global batch. What stays per rank is BatchNorm: it normalises with the statistics of the
rank's own share of the batch, so N processes match one process to float tolerance, not bit for bit.
The gradients are reduced here and not by DDP because autograd.grad bypasses DDP's backward hooks.

With ``amp="bf16"`` the supernet's forward passes and losses run under autocast, while the weights, the
architecture parameters, their gradients and both optimisers' state stay fp32. fp16 is refused: its loss
scaling (torch's GradScaler) works through ``backward`` and an optimiser's ``step``, not through the
``autograd.grad`` calls and the finite-difference Hessian of the architecture step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.data import IGNORE_INDEX
from rspnet_zoo.training import distributed
from rspnet_zoo.training.precision import autocast
from searchers.rspnet.budgets import Schedule
from searchers.rspnet.request import check_search_amp


class Supernet(Protocol):
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def arch_parameters(self) -> list[nn.Parameter]: ...
    def weight_parameters(self) -> list[nn.Parameter]: ...


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, mask, ignore_index=IGNORE_INDEX)


class Bilevel:
    """``penalty``, when given, is a term of the architecture loss that depends on the architecture alone
    (the latency penalty): its gradient is added to the architecture's, in either order."""

    def __init__(
        self,
        model: Supernet,
        schedule: Schedule,
        penalty: Callable[[], torch.Tensor] | None = None,
        amp: str | None = None,
    ):
        self.model = model
        self.amp = check_search_amp(amp)
        self.penalty = penalty
        self.schedule = schedule
        self.weights = model.weight_parameters()
        self.arch = model.arch_parameters()
        self.w_opt = torch.optim.SGD(
            self.weights, schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
        )
        self.lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, schedule.epochs, eta_min=schedule.lr_min
        )
        self.a_opt = torch.optim.Adam(
            self.arch, schedule.arch_lr, betas=(0.5, 0.999), weight_decay=schedule.arch_weight_decay
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.amp, x.device):
            logits = self.model(x)
            return segmentation_loss(logits.float(), y), logits

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.w_opt.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y)
        loss.backward()
        distributed.average_([p.grad for p in self.weights if p.grad is not None])
        nn.utils.clip_grad_norm_(self.weights, self.schedule.grad_clip)
        self.w_opt.step()
        return loss.item()

    def arch_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """One Adam step of the architecture; returns the held-apart loss and logits."""
        self.a_opt.zero_grad(set_to_none=True)
        if self.schedule.order == 1:
            loss, logits = self.loss(x_val, y_val)
            grads = torch.autograd.grad(loss, self.arch)
        else:
            loss, logits, grads = self._unrolled_grads(x_train, y_train, x_val, y_val)
        distributed.average_(grads)
        if self.penalty is not None:  # after the average: every rank holds the same architecture weights
            grads = [g + p for g, p in zip(grads, self._grad(self.penalty(), self.arch))]
        for p, g in zip(self.arch, grads):
            p.grad = g
        self.a_opt.step()
        return loss.item(), logits.detach()

    def _grad(self, loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def _unrolled_grads(self, x_train, y_train, x_val, y_val):
        lr = self.w_opt.param_groups[0]["lr"]
        saved = [p.detach().clone() for p in self.weights]
        train_grads = self._grad(self.loss(x_train, y_train)[0], self.weights)
        distributed.average_(train_grads)
        with torch.no_grad():  # w' = w - lr * (momentum * buffer + dL/dw + wd * w)
            for p, g in zip(self.weights, train_grads):
                step = g + self.schedule.weight_decay * p
                buffer = self.w_opt.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    step = step + self.schedule.momentum * buffer
                p.sub_(lr * step)
        loss, logits = self.loss(x_val, y_val)
        grads = self._grad(loss, self.arch + self.weights)
        arch_grads, weight_grads = grads[: len(self.arch)], grads[len(self.arch) :]
        distributed.average_(weight_grads)  # the perturbation direction and its norm: the global batch's
        eps = 0.01 / torch.cat([g.flatten() for g in weight_grads]).norm().clamp_min(1e-12)
        probes = []
        for sign in (1.0, -1.0):  # dL_train/dalpha at w +- eps * dL_val/dw'
            with torch.no_grad():
                for p, w, g in zip(self.weights, saved, weight_grads):
                    p.copy_(w + sign * eps * g)
            probes.append(self._grad(self.loss(x_train, y_train)[0], self.arch))
        with torch.no_grad():
            for p, w in zip(self.weights, saved):
                p.copy_(w)
        hessian = [(gp - gm) / (2 * eps) for gp, gm in zip(*probes)]
        return loss, logits, [g - lr * h for g, h in zip(arch_grads, hessian)]

    def end_epoch(self) -> None:
        self.lr_schedule.step()

    def state_dict(self) -> dict:
        return dict(
            w_opt=self.w_opt.state_dict(), a_opt=self.a_opt.state_dict(), lr_schedule=self.lr_schedule.state_dict()
        )

    def load_state_dict(self, state: dict) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
