"""Write docs/cli.md from the commands' own help (``make docs-cli``); a test checks it is current.

The help is rendered as plain text (no Rich boxes, fixed width) so the file does not
depend on the terminal.
"""

from __future__ import annotations

import textwrap
from typing import Any

import typer

from .main import app

WIDTH = 100


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return []
    first = min(max(len(a) for a, _ in rows) + 2, 36)
    out = []
    for term, text in rows:
        wrapped = textwrap.wrap(" ".join(text.split()), WIDTH - first - 2) or [""]
        if len(term) + 2 > first:
            out.append(f"  {term}")
            out.extend(" " * (first + 2) + line for line in wrapped)
        else:
            out.append(f"  {term.ljust(first)}{wrapped[0]}")
            out.extend(" " * (first + 2) + line for line in wrapped[1:])
    return out


def _plain_help(cmd: Any, ctx: Any) -> str:
    lines = [f"Usage: {ctx.command_path} {' '.join(cmd.collect_usage_pieces(ctx))}".rstrip()]
    if cmd.help:
        lines.append("")
        text = cmd.help.split("\f")[0].strip()
        lines.extend(textwrap.fill(" ".join(p.split()), WIDTH) for p in text.split("\n\n"))
    args, opts = [], []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if param.param_type_name == "argument":
            args.append(((param.name or "").upper(), getattr(param, "help", None) or ""))
        elif record:
            opts.append(record)
    for title, rows in (("Arguments", args), ("Options", opts)):
        if rows:
            lines += ["", f"{title}:"] + _rows(rows)
    subs = getattr(cmd, "commands", None)
    if subs:
        rows = [(n, (s.help or "").split("\n")[0]) for n, s in sorted(subs.items())]
        lines += ["", "Commands:"] + _rows(rows)
    return "\n".join(lines)


def _walk(cmd: Any, ctx: Any, path: list[str], out: list[str]) -> None:
    level = "#" * min(len(path) + 1, 4)
    out.append(f"{level} `{' '.join(path)}`\n\n```\n{_plain_help(cmd, ctx)}\n```\n")
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        _walk(sub, sub.context_class(sub, info_name=name, parent=ctx), path + [name], out)


def render() -> str:
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="licentia")
    out = ["# CLI reference\n", "Generated from the commands' help by `make docs-cli`; a test fails when it drifts.\n"]
    _walk(root, ctx, ["licentia"], out)
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
