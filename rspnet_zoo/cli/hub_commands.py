"""push: a built folder to the Hugging Face Hub, where ``timm.create_model('hf-hub:OWNER/NAME')`` reads it."""

from __future__ import annotations

import typer

from rspnet_zoo.cli.output import JSON_OPTION_HELP, emit


def push(
    model: str = typer.Argument(..., help="A built folder, or a name[.tag] built or trained into $RSPNET_ZOO_HOME."),
    repo_id: str = typer.Argument(..., help="The Hub repo, OWNER/NAME; created when missing."),
    token: str | None = typer.Option(
        None, "--token", help="Hub access token.", show_default="HF_TOKEN or `hf auth login`"
    ),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Upload config.json, model.safetensors and README.md as they are (HF_ENDPOINT picks another Hub)."""
    from rspnet_zoo.zoo import hub

    hub.check_repo_id(repo_id)
    folder = hub.built_folder(model)
    info = dict(folder=str(folder), repo_id=repo_id, commit_url=hub.push(folder, repo_id, token=token, private=private))

    def human(console):
        console.print(f"pushed {folder} -> {info['commit_url']}", soft_wrap=True)
        console.print(
            f"load it with timm.create_model('hf-hub:{repo_id}', pretrained=True) after `import rspnet_zoo`",
            soft_wrap=True,
        )

    emit(info, human, as_json)
