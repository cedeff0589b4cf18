"""`atlasrl model ...`: build tiny policies, inspect model directories."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

model_app = typer.Typer(help="Policy models: tiny random-weight builds, inspection.", no_args_is_help=True)


@model_app.command("tiny")
def tiny(
    arch: str = typer.Option("qwen2", help="Architecture: qwen2 (text) or qwen2.5-vl (vision-language)."),
    out: Path = typer.Option(None, help="Output directory (default: the shared cache, path printed)."),
    seed: int = typer.Option(0, help="Weight seed; same arguments give byte-identical files."),
    hidden: int = typer.Option(128, help="Text hidden size."),
    layers: int = typer.Option(2, help="Text decoder layers."),
    heads: int = typer.Option(4, help="Attention heads (hidden / heads must be a multiple of 8)."),
    kv_heads: int = typer.Option(2, help="Grouped-query KV heads."),
    max_pixels: int = typer.Option(112 * 112, help="VL: image processor pixel budget (28x28 px per image token)."),
):
    """Build a tiny Qwen2 / Qwen2.5-VL with random weights and a locally trained tokenizer."""
    from atlasrl.models.tiny import TinySpec, build_tiny, tiny_model_path

    kw: dict[str, Any] = dict(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, max_pixels=max_pixels)
    try:
        spec = TinySpec(arch=arch, seed=seed, **kw)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    path = build_tiny(spec, out) if out is not None else tiny_model_path(arch, seed, **kw)
    typer.echo(str(path))


@model_app.command("info")
def info(path: Path = typer.Argument(..., help="Hugging Face model directory.")):
    """Architecture, size and tokenizer facts of a model directory."""
    from atlasrl.models.load import load_policy

    try:
        policy = load_policy(path)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    n = sum(p.numel() for p in policy.model.parameters())
    typer.echo(f"architecture: {type(policy.model).__name__}")
    typer.echo(f"parameters:   {n:,}")
    typer.echo(f"vocab:        {len(policy.tokenizer)} tokens (model {policy.model.config.get_text_config().vocab_size})")
    typer.echo(f"vision:       {'yes, image token ' + str(policy.image_token_id) if policy.is_vl else 'no'}")
    typer.echo(f"eos ids:      {policy.eos_token_ids}")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
