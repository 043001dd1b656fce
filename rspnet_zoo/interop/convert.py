"""Published reference checkpoints into the zoo, and zoo weights back into the reference layout.

Checkpoints are read with ``torch.load(weights_only=True)`` only (or as safetensors): a pickle that
carries code is refused. A family's :class:`~rspnet_zoo.interop.conversions.Layout` says which reference
module holds which of our modules' tensors; :func:`key_map` expands it over our state dict, and the
conversion is strict both ways: every reference tensor is used exactly once, every parameter and BN
buffer of ours is filled, or nothing is written and one line names what did not match.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rspnet_zoo.fsutil import atomic_path, writable_output
from rspnet_zoo.interop.conversions import Alias, ConversionError, Family, Layout, Rename, Row, families
from rspnet_zoo.names import FOLDER, TAG, check_name
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.zoo.card import imported_note
from rspnet_zoo.zoo.catalog import tag_weights
from rspnet_zoo.zoo.folder import FolderWeights, check_build_target, write_folder
from rspnet_zoo.zoo.home import zoo_home
from rspnet_zoo.zoo.registry import load_trained, ref_files, resolve_genotype
from rspnet_zoo.zoo.stats import count_parameters
from rspnet_zoo.zoo.weights import check_tensors, imported, read_header, read_weights, torch_load

# Where the repositories keep a state dict inside a saved dict, most specific first.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")
SHOWN = 6  # keys listed per kind in a one-line error
BN_STATISTICS = (".running_mean", ".running_var", ".num_batches_tracked")


def family(name: str) -> Family:
    known = families()
    if name not in known:
        raise ConversionError(f"unknown family '{name}': choose one of {', '.join(known)}")
    return known[name]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a reference checkpoint: bare, under a key such as 'state_dict', DataParallel's
    'module.' prefix removed. Never a full unpickle."""
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        state = read_weights(path)[0]
    else:  # the tensors of a pickle through the weights reader's checks: stated dtypes, finite values
        state = check_tensors(_unwrap(path, torch_load(path, ConversionError)), str(path))
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _unwrap(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """A bare state dict, the one under a known key, or the only one in the dict."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        held = [k for k in STATE_KEYS if _is_state_dict(obj.get(k))]
        others = [k for k, v in obj.items() if _is_state_dict(v)]
        if held or len(others) == 1:
            return dict(obj[(held or others)[0]])
    found = f"top-level keys: {sorted(map(str, obj))}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise ConversionError(f"{path}: no state dict of tensors found ({found})")


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


@dataclass
class KeyMap:
    """A layout expanded over our tensors: reference key -> (our key, row or None), in reference order."""

    source: dict[str, tuple[str, int | None]]
    aliases: dict[str, str]  # reference key -> the reference key it shares its tensor with
    order: list[str]  # every reference key, aliases included, as the reference's state_dict() lists them


def key_map(layout: Layout, ours: dict[str, torch.Tensor]) -> KeyMap:
    """Expand ``layout`` over our state dict; refuse if any tensor of ours would have no reference name."""
    leaves: dict[str, list[str]] = {}
    for key in ours:
        leaves.setdefault(key.rpartition(".")[0], []).append(key)
    source: dict[str, tuple[str, int | None]] = {}
    aliases: dict[str, str] = {}
    order: list[str] = []
    for entry in layout.entries:
        if isinstance(entry, Alias):
            for ref in [r for r in source if r.startswith(entry.same_as + ".")]:
                alias = entry.ref + ref[len(entry.same_as) :]
                aliases[alias] = ref
                order.append(alias)
            continue
        for ref, key, row in _named(entry, leaves, ours):
            if ref in source:
                raise ConversionError(f"the layout names reference tensor {ref} twice ({source[ref][0]}, {key})")
            source[ref] = (key, row)
            order.append(ref)
    unnamed = [k for k, refs in _by_key(source, ours).items() if not _filled(refs, ours[k])]
    if unnamed:
        raise ConversionError(
            f"the layout names no reference tensor for {len(unnamed)} of ours: "
            + _listing(unnamed, {k: t.shape for k, t in ours.items()})
        )
    return KeyMap(source, aliases, order)


def _named(entry: Rename | Row, leaves: dict[str, list[str]], ours: dict[str, torch.Tensor]) -> list[tuple]:
    """(reference key, our key, row) for each tensor of ours an entry names."""
    if isinstance(entry, Row):
        return [(entry.ref, entry.ours, entry.row)] if entry.ours in ours else []
    return [(f"{entry.ref}.{key.rpartition('.')[2]}", key, None) for key in leaves.get(entry.ours, ())]


def _by_key(source: dict[str, tuple[str, int | None]], ours: dict[str, torch.Tensor]) -> dict[str, list]:
    """Our key -> its (row, reference key) pairs, rows in order."""
    by_key: dict[str, list] = {k: [] for k in ours}
    for ref, (key, row) in source.items():
        by_key[key].append((row, ref))
    return {k: sorted(refs, key=lambda r: -1 if r[0] is None else r[0]) for k, refs in by_key.items()}


def _filled(refs: list, t: torch.Tensor) -> bool:
    """Exactly one whole reference tensor, or one per row."""
    if len(refs) == 1 and refs[0][0] is None:
        return True
    return t.dim() > 0 and [row for row, _ in refs] == list(range(t.shape[0]))


def _dims(shape: Any) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _listing(keys: list[str], shapes: dict[str, Any], suffix: dict[str, str] | None = None) -> str:
    """The first keys with their shapes (and a remark each), and how many more there are."""
    shown = ", ".join(f"{k} {_dims(shapes[k])}{(suffix or {}).get(k, '')}" for k in keys[:SHOWN])
    return shown + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def to_zoo(
    layout: Layout, ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our state dict from a reference one; ``ours`` gives our keys, shapes and dtypes (meta tensors do)."""
    km = key_map(layout, ours)
    reference = dict(reference)
    for alias, primary in km.aliases.items():  # the same tensor twice in a torch file, once in safetensors
        if alias in reference:
            twin = reference.pop(alias)
            if primary in reference and not torch.equal(twin, reference[primary]):
                raise ConversionError(f"{where}: {alias} should be the same tensor as {primary}, but differs")
    # PyTorch < 0.4.1 saved no num_batches_tracked (the released DARTS files): they start at 0 here.
    legacy_bn = not any(k.endswith(".num_batches_tracked") for k in reference)
    expected = {ref: _expected_shape(ours, key, row) for ref, (key, row) in km.source.items()}
    unmatched = [k for k in reference if k not in expected]
    missing = [k for k in expected if k not in reference and not (legacy_bn and k.endswith(".num_batches_tracked"))]
    wrong = [k for k in expected if k in reference and tuple(reference[k].shape) != expected[k]]
    kind = [  # an integer tensor where ours is floating point (or back) is not cast
        ref
        for ref, (key, _) in km.source.items()
        if ref in reference and reference[ref].is_floating_point() != ours[key].is_floating_point()
    ]
    if unmatched or missing or wrong or kind:
        parts = []
        if unmatched:
            shapes = {k: reference[k].shape for k in unmatched}
            parts.append(f"{len(unmatched)} reference tensors match none of ours: {_listing(unmatched, shapes)}")
        if missing:
            parts.append(f"{len(missing)} of ours have no reference tensor: {_listing(missing, expected)}")
        if wrong:
            ours_shape = {k: f" (ours {_dims(expected[k])})" for k in wrong}
            shapes = {k: reference[k].shape for k in wrong}
            parts.append(f"{len(wrong)} mis-shaped: {_listing(wrong, shapes, ours_shape)}")
        if kind:
            dtypes = {k: f" {str(reference[k].dtype).removeprefix('torch.')}" for k in kind}
            shapes = {k: reference[k].shape for k in kind}
            parts.append(f"{len(kind)} integer where ours are floating point or back: {_listing(kind, shapes, dtypes)}")
        raise ConversionError(f"{where} does not fit the {layout.origin} layout of this spec: " + "; ".join(parts))
    state: dict[str, torch.Tensor] = {}
    for key, refs in _by_key(km.source, ours).items():
        pieces = [_take(reference, ref, ours[key]) for _, ref in refs]
        state[key] = pieces[0] if refs[0][0] is None else torch.stack(pieces)
    report = dict(
        tensors=len(km.source),
        aliases=len(km.aliases),
        legacy_bn=legacy_bn,
        # the reference's trainable parameters: every mapped tensor but the BN statistics
        reference_parameters=sum(t.numel() for k, t in reference.items() if not k.endswith(BN_STATISTICS)),
    )
    return state, report


def _expected_shape(ours: dict[str, torch.Tensor], key: str, row: int | None) -> tuple[int, ...]:
    shape = tuple(ours[key].shape)
    return shape if row is None else shape[1:]


def _take(reference: dict[str, torch.Tensor], ref: str, like: torch.Tensor) -> torch.Tensor:
    if ref not in reference:  # a legacy num_batches_tracked
        return torch.zeros((), dtype=like.dtype)
    return reference[ref].detach().to(like.dtype).clone().contiguous()


def to_reference(layout: Layout, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference state dict, in its order; an alias is the same tensor object as its primary."""
    km = key_map(layout, ours)
    out: dict[str, torch.Tensor] = {}
    for ref in km.order:
        if ref in km.aliases:
            out[ref] = out[km.aliases[ref]]
        else:
            key, row = km.source[ref]
            t = ours[key] if row is None else ours[key][row]
            out[ref] = t.detach().clone().contiguous()
    return out


def wants_aux(fam: Family, genotype: Genotype, reference: dict[str, torch.Tensor]) -> bool:
    """The auxiliary head is built when the spec declares one and the checkpoint holds it."""
    declared = getattr(genotype.head, "auxiliary", None) is not None
    return bool(fam.aux_prefix) and declared and any(k.startswith(fam.aux_prefix) for k in reference)


def convert_checkpoint(
    family_name: str,
    checkpoint: Path,
    spec: str,
    out: Path | None = None,
    name: str | None = None,
    tag: str | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write ``out/<name>/`` (a built folder) from a reference checkpoint; ``name`` defaults to
    ``<spec>.<tag>``, or the spec's name without a tag. Both are checked before any file is touched, and
    the folder is replaced only as ``zoo.folder.check_build_target`` allows (``force``: one built from
    another spec)."""
    fam = family(family_name)
    genotype = resolve_genotype(spec)
    if tag is not None:
        check_name(tag, "--tag", TAG)
    folder_name = (
        check_name(name, "--name", FOLDER) if name is not None else ".".join(filter(None, [genotype.name, tag]))
    )
    home = writable_output(out or zoo_home(), folder=True)
    check_build_target(home, folder_name, genotype, force)
    reference = read_checkpoint(checkpoint)
    model_args = {"aux_head": True} if wants_aux(fam, genotype, reference) else {}
    with torch.device("meta"):
        skeleton = GenotypeNet(genotype, pretrained_encoders=False, **model_args)
    layout = fam.layout(genotype, bool(model_args))
    state, report = to_zoo(layout, skeleton.state_dict(), reference, str(checkpoint))
    params = count_parameters(skeleton)
    sha256 = file_sha256(checkpoint)
    model = GenotypeNet(genotype, plan=skeleton.plan, pretrained_encoders=False, **model_args)
    model.load_state_dict(state)
    note = imported_note(
        family=fam.name,
        origin=layout.origin,
        mapping_version=fam.version,
        checkpoint=checkpoint,
        sha256=sha256,
        report=report,
        parameters=params,
        aux=bool(model_args),
        notes=layout.notes,
    )
    weights = FolderWeights(
        model,
        imported(str(checkpoint), sha256),
        note=note,
        cfg=dict(layout.cfg, notes=layout.notes),
        model_args=model_args,
    )
    folder, info = write_folder(genotype, home, weights, folder_name, force=force)
    info.update(
        family=fam.name,
        mapping_version=fam.version,
        source=str(checkpoint),
        source_sha256=sha256,
        tensors=report["tensors"],
        reference_parameters=report["reference_parameters"],
        legacy_bn=report["legacy_bn"],
        aux_head=bool(model_args),
    )
    return folder, info


def _saved_model_args(model_ref: str) -> dict[str, Any]:
    """A tag's weights file has no config.json to say that it holds an auxiliary head; its keys do."""
    if Path(model_ref).is_dir() or "." not in model_ref:
        return {}
    name, _, tag = model_ref.partition(".")
    file = tag_weights(name, tag)
    if file is None:
        return {}
    shapes, _ = read_header(file)
    return {"aux_head": True} if any(k.startswith("aux_head.") for k in shapes) else {}


def export_checkpoint(family_name: str, model_ref: str, out: Path, replace: bool = True) -> dict[str, Any]:
    """A zoo model (built folder or registered name[.tag]) as the family's reference checkpoint: the
    published wrapper for ``.pth``/``.pt``/``.tar``, or a flat ``.safetensors`` (aliases written once).
    ``out`` is never one of the model's own files; an existing one is replaced only with ``replace``."""
    fam = family(family_name)
    writable_output(out, replace=replace, avoid=ref_files(model_ref))
    model = load_trained(model_ref, **_saved_model_args(model_ref))
    layout = fam.layout(model.genotype, model.has_aux)
    state = to_reference(layout, model.state_dict())
    with atomic_path(out) as tmp:
        if out.suffix == ".safetensors":
            once: dict[int, str] = {}
            for key, t in state.items():
                once.setdefault(id(t), key)
            save_file({key: state[key] for key in once.values()}, str(tmp))
        else:
            torch.save({layout.wrapper: state} if layout.wrapper else state, tmp)
    return dict(
        family=fam.name,
        mapping_version=fam.version,
        model=model_ref,
        path=str(out),
        tensors=len(state),
        parameters=sum(p.numel() for p in model.parameters()),
        wrapper=layout.wrapper,
    )
