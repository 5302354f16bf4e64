"""Write docs/cli.md from the commands' own help (``make docs-cli``); a test checks it is current."""

from __future__ import annotations

import click
import typer

from .main import app


def _plain_help(cmd: click.Command, ctx: click.Context) -> str:
    formatter = click.HelpFormatter(width=100, max_width=100)
    click.Command.format_usage(cmd, ctx, formatter)
    if cmd.help:
        formatter.write_paragraph()
        formatter.write_text(cmd.help.split("\f")[0].strip())
    click.Command.format_options(cmd, ctx, formatter)
    if isinstance(cmd, click.Group):
        rows = [(name, (sub.short_help or (sub.help or "").split("\n")[0]).strip()) for name, sub in
                sorted(cmd.commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
    return formatter.getvalue()


def _walk(cmd: click.Command, ctx: click.Context, path: list[str], out: list[str]) -> None:
    level = "#" * min(len(path) + 1, 4)
    out.append(f"{level} `{' '.join(path)}`\n\n```\n{_plain_help(cmd, ctx).rstrip()}\n```\n")
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            _walk(sub, click.Context(sub, info_name=name, parent=ctx), path + [name], out)


def render() -> str:
    root = typer.main.get_command(app)
    ctx = click.Context(root, info_name="licentia")
    out = [
        "# CLI reference\n",
        "Generated from the commands' help by `make docs-cli`; a test fails when it drifts.\n",
    ]
    _walk(root, ctx, ["licentia"], out)
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
