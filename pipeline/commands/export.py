"""`srkd export`: write a student as ONNX (or a torch.export program) plus its JSON spec."""

from __future__ import annotations

from typing import Any

import typer

from pipeline.commands import options as O
from pipeline.commands._common import user_errors
from srkd.export.config import ExportConfig


@O.with_options(ExportConfig)
def export(**cli: Any) -> None:
    """Export a trained student for deployment: a network that ONNX Runtime runs without torch or spconv."""
    with user_errors():
        from pipeline.params import resolve

        c = resolve(ExportConfig, None, cli)
        if c.checkpoint is None:
            from srkd.errors import ConfigError

            raise ConfigError("srkd export needs --checkpoint <srkd checkpoint of a PTv3 or SpUNet student>")
        typer.echo(f"exporting {c.checkpoint} ({c.format}) ...", err=True)
        from srkd.export.export import export_checkpoint

        result = export_checkpoint(c.checkpoint, c.out, fmt=c.format, opset=c.opset, grid_size=c.grid_size)
        s = result.spec
        typer.echo(f"wrote {result.network} and {result.folder / 'student.json'}: {s.model_name}, "
                   f"{len(s.classes)} classes, grid {s.grid_size} m, inputs {'+'.join(s.features)}")  # fmt: skip
        typer.echo(f"checked on {result.points_checked} points against srkd's own inference: max |diff| "
                   f"{result.max_rel_diff:.1e} of the largest logit, {100 * result.agreement:.2f}% same labels")  # fmt: skip
