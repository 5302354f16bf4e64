"""``licentia central serve``: run License Central (uvicorn) on this machine."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from . import _common

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.command()
def serve(
    data: Path = typer.Option(None, "--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8480, "--port", help="Port to listen on."),
    demo: bool = typer.Option(False, "--demo", help="On an empty database, seed a demo firm, item, customer, ticket."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (PostgreSQL scales with them)."),
) -> None:
    """Run License Central. Ctrl-C stops it."""
    _common.run_guarded(_serve, data, host, port, demo, workers)


@app.command()
def migrate(
    data: Path = typer.Option(None, "--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia)."),
) -> None:
    """Create or upgrade Central's database schema, then exit."""

    def run() -> None:
        from ..central.db import Database, current_revision
        from ..central.db import migrate as do_migrate
        from ..central.settings import Settings

        settings = Settings.from_env(data_dir=data)
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        database = Database(settings.db_url, pool_size=1)
        try:
            do_migrate(database.engine)
            _common.console.print(f"database at revision {current_revision(database.engine)}", highlight=False)
        finally:
            database.dispose()

    _common.run_guarded(run)


def _serve(data: Path | None, host: str, port: int, demo: bool, workers: int) -> None:
    import uvicorn

    from ..central import demo as demo_data
    from ..central.app import create_app
    from ..central.settings import Settings

    settings = Settings.from_env(data_dir=data)  # the edge: env is read here only
    if not _common.port_free(host, port):
        _common.fail(f"port {port} on {host} is in use: stop what runs there or pick another with --port")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    ctx = app.state.central
    out = _common.console
    shown_host = f"[{host}]" if ":" in host else host
    out.print(f"License Central: http://{shown_host}:{port}  (API docs: /docs)", highlight=False)
    keys = ctx.keys
    if keys.admin_source == "environment":
        out.print("admin key: from LICENTIA_ADMIN_KEY", highlight=False)
    elif keys.admin_key_created:
        out.print(f"admin key: {keys.admin_key_created}", highlight=False)
        out.print(f"  (written to {keys.admin_source}; shown only this once)", highlight=False)
    else:
        out.print(f"admin key: in {keys.admin_source}", highlight=False)
    if keys.master_source == "environment":
        out.print("master key: from LICENTIA_MASTER_KEY", highlight=False)
    else:
        out.print(
            f"master key: {keys.master_source} (keep it apart from the database and its backups)", highlight=False
        )
    if demo:
        seeded = demo_data.seed(ctx)
        if seeded.seeded:
            out.print(
                f"demo firm {demo_data.FIRM_CODE} ({demo_data.FIRM_NAME}), item {demo_data.ITEM_ID}", highlight=False
            )
        elif seeded.pem_path is None:
            out.print("demo: the database is not empty and has no demo firm: nothing seeded", highlight=False)
        if seeded.ticket:
            out.print(f"demo ticket: {seeded.ticket}", highlight=False)
        if seeded.pem_path:
            out.print(f"demo firm public key: {seeded.pem_path}", highlight=False)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
    else:
        # Each worker process builds its own app from the environment; the keys and
        # the schema exist now, so they find them.
        ctx.db.dispose()
        os.environ["LICENTIA_DATA"] = str(settings.data_dir.resolve())
        uvicorn.run(
            "licentia.central.asgi:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
        )
    out.print("License Central stopped.", highlight=False)
