"""The inference path: a model traced once by torch.fx and rewritten into an equivalent, faster graph.

The passes read the graph, not the zoo's module classes, so they hold for any model fx can trace
(timm, torchvision, a compiled spec whatever its op classes are called):

- weight-free nodes go: ``nn.Identity``, dropout, drop path, multiplications by one (a single path
  fused with weight 1) and whatever becomes dead;
- every BatchNorm folds into the convolution next to it where that is exact: after a conv (also the
  depthwise and dilated ones of separable convs), after a channel concatenation of convs (factorized
  reduce), and before an unpadded conv (a transition's 1x1); timm's BatchNormAct2d after a conv folds
  and leaves its activation;
- a ReLU that is the only reader of a conv's (or BN's) output runs in place (never on a view, an input);
- ``channels_last``: the weights and the input are NHWC, where oneDNN's convolutions (the depthwise
  ones above all) run much faster on CPU; outputs come back in that layout, as after
  ``model.to(memory_format=torch.channels_last)``;
- ``compile=True`` hands the result to ``torch.compile`` (inductor fuses ReLUs into its kernels).

``compile=True`` stays opt-in: inductor compiles for a long time at the first call, and whether it then runs
faster than the fold and ``channels_last`` depends on the machine (measure it with ``rspnet-zoo bench
--runtime compile``; docs/benchmarks.md has the runs).
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, DropPath, get_notrace_functions, get_notrace_modules
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from rspnet_zoo.errors import ZooError

# Attributes a caller reads off a zoo or timm model (predict reads the cfg and the class count).
KEPT_ATTRIBUTES = ("pretrained_cfg", "default_cfg", "num_classes", "genotype", "output_reduction", "in_chans")
WEIGHT_FREE = (nn.Identity, nn.Dropout, nn.Dropout2d, DropPath)


def optimize(model: nn.Module, *, compile: bool = False, channels_last: bool = True) -> nn.Module:
    """An equivalent module for inference (eval mode, no gradients needed); ``model`` is left as it is."""
    gm = trace(model)
    remove_weight_free(gm)
    fold_batch_norms(gm)
    relu_in_place(gm)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    if channels_last:
        to_channels_last(gm)
    gm.recompile()
    for name in KEPT_ATTRIBUTES:
        if hasattr(model, name):
            setattr(gm, name, getattr(model, name))
    return torch.compile(gm) if compile else gm


class TimmTracer(fx.Tracer):
    """fx's tracer with timm's leaves: the modules and functions timm marks as not traceable (those whose
    forward reads sizes: 'same' padding, BatchNormAct2d's checks) stay one call each, as in timm's own fx
    feature extraction, so any timm encoder inside a spec traces."""

    def __init__(self):
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))
        self.leaves = tuple(get_notrace_modules())

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """A symbolic trace of an eval-mode copy, typed for TorchScript (fx copies the source's string
    annotations, which ``torch.jit.script`` cannot read)."""
    model = copy.deepcopy(model).eval()
    try:
        tracer = TimmTracer()
        gm = fx.GraphModule(model, tracer.trace(model), type(model).__name__)
    except Exception as e:  # fx raises many kinds for data-dependent control flow
        raise ZooError(f"cannot optimise {type(model).__name__}: torch.fx cannot trace it ({e})") from None
    for node in gm.graph.nodes:
        node.type = torch.Tensor if node.op == "placeholder" else None
    gm.recompile()
    return gm.eval()


def _module(gm: fx.GraphModule, node: fx.Node, kind: type | tuple[type, ...]) -> nn.Module | None:
    if node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if isinstance(module, kind) else None


def _calls(gm: fx.GraphModule) -> dict[str, int]:
    """How many nodes call each submodule: a module called twice shares its weights and cannot fold."""
    counts: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def _bypass(gm: fx.GraphModule, node: fx.Node, source: fx.Node) -> None:
    node.replace_all_uses_with(source)
    gm.graph.erase_node(node)


def remove_weight_free(gm: fx.GraphModule) -> None:
    """Identities, dropout and multiplications by one read their input and change nothing in eval."""
    for node in list(gm.graph.nodes):
        if _module(gm, node, WEIGHT_FREE) is not None and isinstance(node.args[0], fx.Node):
            _bypass(gm, node, node.args[0])
        elif node.op in ("call_function", "call_method") and node.target in (operator.mul, torch.mul, "mul"):
            a, b = node.args[:2]
            if isinstance(a, fx.Node) and isinstance(b, (int, float)) and b == 1 and not node.kwargs:
                _bypass(gm, node, a)


def _single_reader(node: fx.Node, calls: dict[str, int]) -> bool:
    return len(node.users) == 1 and calls.get(node.target, 0) == 1


def _cat_channels(node: fx.Node) -> list[fx.Node] | None:
    """The inputs of ``torch.cat(inputs, dim=1)``, or None."""
    if node.op != "call_function" or node.target is not torch.cat:
        return None
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    inputs = node.args[0]
    return list(inputs) if dim == 1 and all(isinstance(i, fx.Node) for i in inputs) else None


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    fused = fuse_conv_bn_eval(conv, bn)
    conv.weight, conv.bias = fused.weight, fused.bias


def _bn_slice(bn: nn.BatchNorm2d, start: int, stop: int) -> nn.BatchNorm2d:
    part = nn.BatchNorm2d(stop - start, eps=bn.eps)
    part.load_state_dict(
        {k: v[start:stop] for k, v in bn.state_dict().items() if k != "num_batches_tracked"}, strict=False
    )
    return part.eval()


def _fold_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """conv(scale * x + shift) = conv'(x): the scale goes into the input channels, the shift into the
    bias. Exact only when no padding is read (padding would see zeros, not the shift)."""
    weight = torch.ones_like(bn.running_var) if bn.weight is None else bn.weight
    bias = torch.zeros_like(bn.running_mean) if bn.bias is None else bn.bias
    scale = weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bias - bn.running_mean * scale
    with torch.no_grad():
        bias = conv.weight.sum(dim=(2, 3)) @ shift
        if conv.bias is not None:
            bias = bias + conv.bias
        conv.weight = nn.Parameter(conv.weight * scale[None, :, None, None])
        conv.bias = nn.Parameter(bias)


def _foldable_bn(gm: fx.GraphModule, node: fx.Node) -> nn.BatchNorm2d | None:
    bn = _module(gm, node, nn.BatchNorm2d)
    if bn is None or not bn.track_running_stats or not isinstance(node.args[0], fx.Node):
        return None
    return bn


def fold_batch_norms(gm: fx.GraphModule) -> None:
    """Every eval-mode BatchNorm2d next to a conv, folded into it (see the module docstring)."""
    calls = _calls(gm)
    for node in list(gm.graph.nodes):
        bn = _foldable_bn(gm, node)
        if bn is None:
            continue
        source = node.args[0]
        conv = _module(gm, source, nn.Conv2d)
        if conv is not None and _single_reader(source, calls):
            _fold_into(conv, bn)
            if isinstance(bn, BatchNormAct2d):  # in eval: BN, dropout (none), then its activation
                node.target = f"{node.target}.act"
            else:
                _bypass(gm, node, source)
            continue
        if isinstance(bn, BatchNormAct2d):
            continue
        parts = _cat_channels(source) if len(source.users) == 1 else None
        convs = [_module(gm, p, nn.Conv2d) for p in parts or []]
        if (
            parts
            and len(set(parts)) == len(parts)
            and all(c is not None and _single_reader(p, calls) for c, p in zip(convs, parts))
        ):
            start = 0
            for c in convs:
                _fold_into(c, _bn_slice(bn, start, start + c.out_channels))
                start += c.out_channels
            _bypass(gm, node, source)
            continue
        (reader,) = node.users if len(node.users) == 1 else (None,)
        conv = _module(gm, reader, nn.Conv2d) if reader is not None else None
        if (
            conv is not None
            and calls[reader.target] == 1
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and all(p == 0 for p in conv.padding)
            and calls[node.target] == 1
        ):
            _fold_before(bn, conv)
            _bypass(gm, node, source)


def relu_in_place(gm: fx.GraphModule) -> None:
    """A ReLU that is the only reader of a conv's output overwrites it instead of allocating (a view or
    an input could be read elsewhere, so only tensors a conv or BN just made)."""
    for node in list(gm.graph.nodes):
        if _module(gm, node, nn.ReLU) is None:
            continue
        source = node.args[0]
        fresh = isinstance(source, fx.Node) and _module(gm, source, (nn.Conv2d, nn.BatchNorm2d)) is not None
        if fresh and len(source.users) == 1:
            with gm.graph.inserting_after(node):
                fused = gm.graph.call_function(F.relu, (source,), {"inplace": True})
            _bypass(gm, node, fused)


def to_channels_last(gm: fx.GraphModule) -> None:
    """NHWC weights, and the first thing the graph does is make its input NHWC."""
    gm.to(memory_format=torch.channels_last)
    image = next(n for n in gm.graph.nodes if n.op == "placeholder")
    with gm.graph.inserting_after(image):
        nhwc = gm.graph.call_method("contiguous", (image,), {"memory_format": torch.channels_last})
    image.replace_all_uses_with(nhwc, delete_user_cb=lambda user: user is not nhwc)
