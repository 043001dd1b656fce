"""validate, list, show, build."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.output import emit, error_line, print_table, shown, table
from rspnet_zoo.errors import SpecError
from rspnet_zoo.spec.io import load_spec, spec_errors, spec_sha256
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.spec.render import step_text

MAX_ERRORS = 20
JsonOpt = options.JSON


def timm_checks(genotype: Genotype) -> tuple[dict, list[SpecError]]:
    """What a spec's encoders need timm to check (model names, kwargs, levels, reductions, channels): done
    when timm is installed (each encoder built on the meta device), else said to be skipped."""
    if not genotype.encoders:
        return {}, []
    if importlib.util.find_spec("timm") is None:
        return dict(timm_checks="skipped: timm is not installed"), []
    import timm

    from rspnet_zoo.nn.encoders import TIMM_CHECKS, encoder_errors

    return dict(timm_checks=f"timm {timm.__version__}: {', '.join(TIMM_CHECKS)}"), list(encoder_errors(genotype))


def validate(specs: list[Path] = typer.Argument(..., help="Spec files to check."), as_json: bool = JsonOpt) -> None:
    """Check spec files; exit 2 with one line per error (up to 20 per file). A spec's encoders are checked
    against timm when it is installed (the output says so)."""
    results = []
    for path in specs:
        try:
            g = load_spec(path)
        except SpecError:
            found = spec_errors(path, limit=MAX_ERRORS)
        else:
            checks, found = timm_checks(g)
            found = [e.at(str(path)) for e in found]
            if not found:
                results.append(dict(file=str(path), ok=True, name=g.name, sha256=spec_sha256(g), **checks))
                continue
        errors = [dict(pointer=e.pointer, error=e.reason) for e in found]
        results.append(dict(file=str(path), ok=False, **errors[0], errors=errors))
        if not as_json:
            for e in found:
                error_line(str(e))
            if len(found) == MAX_ERRORS:
                error_line(f"{path}: the first {MAX_ERRORS} errors are shown")

    def human(console):
        for r in results:
            if r["ok"]:
                checks = f"  (encoders: {r['timm_checks']})" if "timm_checks" in r else ""
                console.print(f"ok  {shown(r['file'])}  {r['name']}  {r['sha256'][:12]}{checks}", soft_wrap=True)

    emit(results, human, as_json)
    if not all(r["ok"] for r in results):
        raise typer.Exit(2)


WEIGHTS_CELL = {"trained": "trained", "imported": "imported", "initialised": "init", "unrecorded": "?"}


def list_models(as_json: bool = JsonOpt) -> None:
    """Registered architectures, what their built weights are (trained, imported, initialised), parameters
    and FLOPs; then the trained tags."""
    from rspnet_zoo.zoo.catalog import SHIPPED, home_tags, packaged_tags
    from rspnet_zoo.zoo.home import weights_path, zoo_home
    from rspnet_zoo.zoo.stats import cached_spec_stats
    from rspnet_zoo.zoo.weights import describe_status, read_metadata, weights_status

    def status(file: Path) -> str | None:
        return weights_status(read_metadata(file)) if file.is_file() else None

    tags = {**packaged_tags(), **home_tags()}
    rows = []
    for name, g in sorted(SHIPPED.items()):
        stats = cached_spec_stats(g)
        rows.append(
            dict(
                name=name,
                version=g.version,
                weights=status(weights_path(name)),
                tags={
                    key.split(".", 1)[1]: status(file)
                    for key, file in sorted(tags.items())
                    if key.split(".")[0] == name
                },
                num_classes=g.defaults.num_classes,
                input_size=list(g.defaults.input_size),
                **stats,
            )
        )

    def human(console):
        listing = table("rspnet-zoo architectures")
        for col in ("name", "version", "weights", "classes", "params", "GFLOPs", "input"):
            listing.add_column(col, justify="right" if col in ("params", "GFLOPs", "classes") else "left", no_wrap=True)
        for r in rows:
            listing.add_row(
                r["name"],
                r["version"],
                WEIGHTS_CELL.get(r["weights"], "-"),
                str(r["num_classes"]),
                f"{r['parameters']:,}",
                f"{r['flops'] / 1e9:.2f}",
                "x".join(map(str, r["input_size"])),
            )
        listing.caption = "weights: init = initialised by `build`, never trained (pretrained=True refuses them)"
        print_table(console, listing)
        console.print(f"weights in {zoo_home()}", soft_wrap=True)
        if tags:
            tagged = table("trained tags (timm.create_model(NAME.TAG, pretrained=True))")
            tagged.add_column("name.tag", no_wrap=True)
            tagged.add_column("weights")
            for key, file in sorted(tags.items()):
                tagged.add_row(shown(key), shown(describe_status(read_metadata(file))))
            print_table(console, tagged)

    emit(rows, human, as_json)


def _node_kind_text(node) -> str:
    if node.encoder is not None:
        return f"encoder:{node.encoder}[{node.level}]"
    return f"cell:{node.cell}" if node.cell else f"layer:{node.layer}"


def _describe(g: Genotype) -> dict:
    cells = {
        name: dict(
            num_inputs=c.num_inputs,
            reduction=c.reduction,
            concat=list(c.concat),
            steps=[step_text(step) for step in c.steps],
        )
        for name, c in g.cells.items()
    }
    nodes = []
    for n in g.network.nodes:
        slots = [
            " + ".join(p.node + (f"*{p.weight:g}" if p.weight is not None else "") for p in slot.paths)
            for slot in n.inputs
        ]
        nodes.append(
            dict(
                id=n.id,
                kind=_node_kind_text(n),
                reduction=n.reduction,
                channels=n.channels,
                inputs=slots,
                partial=n.partial.model_dump() if n.partial else None,
            )
        )
    return dict(
        name=g.name,
        version=g.version,
        sha256=spec_sha256(g),
        description=g.description,
        cells=cells,
        encoders={name: e.model_dump() for name, e in g.encoders.items()},
        nodes=nodes,
        head=g.head.model_dump(),
        num_classes=g.defaults.num_classes,
    )


def show(
    model: str = typer.Argument(..., help="A registered name or a spec file."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw the network graph to this .svg or .png."),
    as_json: bool = JsonOpt,
) -> None:
    """Summarise a spec: cells, nodes, paths and sizes."""
    from rspnet_zoo.spec.render import check_picture_path, render_graph
    from rspnet_zoo.zoo.registry import resolve_genotype
    from rspnet_zoo.zoo.stats import cached_spec_stats

    g = resolve_genotype(model)
    if plot is not None:
        check_picture_path(plot)
    info = _describe(g)
    info.update(cached_spec_stats(g))
    if plot is not None:
        info["plot"] = str(render_graph(g, plot))

    def human(console):
        console.print(
            f"{g.name} {g.version}  sha256 {info['sha256'][:12]}  "
            f"{info['parameters']:,} parameters, {info['flops'] / 1e9:.2f} GFLOPs at "
            f"{'x'.join(map(str, g.defaults.input_size))}"
        )
        if g.description:
            console.print(shown(g.description))
        for name, c in info["cells"].items():
            cell_table = table(f"cell '{name}'" + (" (reduction)" if c["reduction"] else ""))
            cell_table.add_column("state")
            cell_table.add_column("= sum of edges")
            for i, step in enumerate(c["steps"]):
                cell_table.add_row(str(i + c["num_inputs"]), shown(step))
            cell_table.caption = f"output: concat of states {c['concat']}"
            print_table(console, cell_table)
        for name, e in info["encoders"].items():
            weights = {False: "random init", True: "timm's default tag"}.get(e["pretrained"], e["pretrained"])
            kwargs = f" {json.dumps(e['kwargs'])}" if e["kwargs"] else ""
            console.print(f"encoder '{name}': timm {e['model']}{kwargs}, {weights}")
        network = table("network")
        for col in ("id", "kind", "reduction", "C", "inputs", "partial"):
            network.add_column(col)
        for n in info["nodes"]:
            p = n["partial"]
            network.add_row(
                n["id"],
                n["kind"],
                f"1/{n['reduction']}",
                str(n["channels"]),
                " | ".join(n["inputs"]),
                f"{p['ratio']:g} x{p['depth']}" if p else "",
            )
        print_table(console, network)
        console.print(f"head: {json.dumps(info['head'])}")
        if plot is not None:
            console.print(f"graph drawn to {shown(info['plot'])}")

    emit(info, human, as_json)


def build(
    spec: str = typer.Argument(..., help="A spec file or a registered name."),
    out: Path | None = typer.Option(
        None, "--out", help="Parent folder of the built folder.", show_default="$RSPNET_ZOO_HOME"
    ),
    num_classes: int | None = options.number(
        None, "--num-classes", kind=options.CLASSES, help="Override the spec's class count."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="A safetensors file to load instead of random init."),
    seed: int = options.seed("Seed of the random initialisation."),
    force: bool = typer.Option(False, "--force", help="Replace a folder built from another spec."),
    as_json: bool = JsonOpt,
) -> None:
    """Compile a spec into OUT/<name>/: config.json, model.safetensors and a README.md model card."""
    from rspnet_zoo.training.tasks import BuildRequest, run_build

    info = run_build(BuildRequest(spec, out=out, num_classes=num_classes, weights=weights, seed=seed, force=force))

    def human(console):
        console.print(
            f"built {info['name']} ({info['parameters']:,} parameters, "
            f"{info['flops'] / 1e9:.2f} GFLOPs) -> {shown(info['path'])}",
            soft_wrap=True,
        )
        load = f"timm.create_model('local-dir:{shown(info['path'])}', pretrained=True"
        if info["weights"]["weights_status"] == "initialised":
            console.print(
                f"its weights are initialised (seed {seed}), never trained: train it with `rspnet-zoo train`, "
                f"or load them anyway with {load}, allow_untrained=True)",
                soft_wrap=True,
            )
        else:
            console.print(f"load it with {load})", soft_wrap=True)

    emit(info, human, as_json)
