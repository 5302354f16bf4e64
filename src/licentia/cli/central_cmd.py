"""``licentia central serve``: run License Central (uvicorn) on this machine;
``migrate`` its database; ``backup`` its database (never its keys); ``usage purge``
the usage store's old events, ``usage rollup`` rebuild its rollup."""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import _common

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from ..central.demo import Demo

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
usage_app = typer.Typer(no_args_is_help=True, help="The usage store: retention and rollup.")
app.add_typer(usage_app, name="usage")


@app.command()
def serve(
    data: Annotated[
        Path | None, typer.Option("--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8480,
    demo: Annotated[
        bool, typer.Option("--demo", help="On an empty database, seed a demo firm, item, customer, ticket.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (PostgreSQL scales with them).")
    ] = 1,
    no_migrate: Annotated[
        bool,
        typer.Option(
            "--no-migrate",
            help="Do not migrate the database on start (as LICENTIA_MIGRATE=0): refuse to start unless "
            "'licentia central migrate' brought it to the newest schema.",
        ),
    ] = False,
) -> None:
    """Run License Central. Ctrl-C stops it.

    It migrates the database to the newest schema first, unless --no-migrate."""
    _common.run_guarded(_serve, data, host, port, demo, workers, no_migrate)


@app.command()
def migrate(
    data: Annotated[
        Path | None, typer.Option("--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
) -> None:
    """Create or upgrade Central's database schema, then exit.

    On PostgreSQL runs at the same time take turns (an advisory lock): the later one finds
    nothing to do."""

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


@usage_app.command("purge")
def usage_purge(
    data: Annotated[
        Path | None, typer.Option("--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
) -> None:
    """Delete each firm's usage events older than its retention now (Central also does it
    once a day while it serves), and print how many per firm."""

    def run() -> None:
        import time

        from ..central.services.retention import RetentionService
        from ..central.settings import Settings
        from ..central.startup import prepare

        settings = Settings.from_env(data_dir=data)
        ctx = prepare(settings, lambda: int(time.time()))
        try:
            with ctx.db.session() as session:
                purged = RetentionService(ctx, session).purge()
        finally:
            ctx.db.dispose()
        if not purged:
            _say("no firms: nothing to purge")
        for p in purged:
            _say(f"firm {p.firm_code}: {p.deleted} event(s) older than {p.retention_days} days deleted")

    _common.run_guarded(run)


@usage_app.command("rollup")
def usage_rollup(
    firm: Annotated[int | None, typer.Option("--firm", help="Only this firm's (its firm code).")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
) -> None:
    """Rebuild the reporting rollups from the stored events: the product view's (uploads
    keep it exact as they write) and the billing view's (Central's job computes the days
    uploads mark, every LICENTIA_USAGE_ROLLUP_INTERVAL seconds). Run this after loading
    events into the store by other means (a bulk COPY). --firm limits the product view's."""

    def run() -> None:
        import time

        from ..central.services.billing import BillingRollup
        from ..central.services.rollup import RollupService
        from ..central.settings import Settings
        from ..central.startup import prepare

        settings = Settings.from_env(data_dir=data)
        ctx = prepare(settings, lambda: int(time.time()))
        try:
            with ctx.db.session() as session:
                svc = RollupService(ctx, session)
                rows = svc.rebuild(None if firm is None else svc.firm_by_code(firm).id)
                days = BillingRollup(ctx, session).rebuild()
        finally:
            ctx.db.dispose()
        _say(f"product view rollup rebuilt: {rows} row(s)" + ("" if firm is None else f" of firm {firm}"))
        _say(f"billing view rollup rebuilt: {days} day(s)")

    _common.run_guarded(run)


@app.command()
def backup(
    output: Annotated[Path, typer.Option("-o", "--output", help="Backup file to write (mode 0600).")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
) -> None:
    """Copy Central's SQLite database to a file, also while Central runs; the master
    key is never in it. With PostgreSQL, print the pg_dump command to run instead."""
    _common.run_guarded(_backup, data, output)


def _say(line: str) -> None:
    _common.console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_demo(seeded: Demo, admin_source: str, url: str) -> None:
    """What ``serve --demo`` made: on the first start the firm, item, customer and
    ticket; on a later one what is there, and the command that lists the demo
    customer's tickets (the ticket printed first may have been activated since)."""
    from ..central import demo as demo_data

    made = (
        f"firm {demo_data.FIRM_CODE} ({demo_data.FIRM_NAME}), item {demo_data.ITEM_ID}, "
        f"customer {demo_data.CUSTOMER} ({demo_data.CUSTOMER_NAME})"
    )
    if seeded.seeded:
        _say(f"demo {made}")
    elif seeded.pem_path is None:
        _say("demo: the database is not empty and has no demo firm: nothing seeded")
        return
    else:
        _say(f"demo data from an earlier start: {made}")
    if seeded.ticket:
        _say(f"demo ticket: {seeded.ticket}")
    if not seeded.seeded:
        key = "$LICENTIA_ADMIN_KEY" if admin_source == "environment" else f"$(cat {shlex.quote(admin_source)})"
        command = shlex.join(
            [
                "licentia",
                "vendor",
                "ticket",
                "list",
                "--customer",
                demo_data.CUSTOMER,
                "--firm-code",
                str(demo_data.FIRM_CODE),
                "--central",
                url,
            ]
        )
        _say(f"demo tickets: LICENTIA_API_KEY={key} {command}")
    if seeded.pem_path:
        _say(f"demo firm public key: {seeded.pem_path}")


def _backup(data: Path | None, output: Path) -> None:
    from sqlalchemy.engine import make_url

    from ..central.db import normalize_url
    from ..central.keys import master_key_location
    from ..central.settings import Settings

    settings = Settings.from_env(data_dir=data)
    url = make_url(normalize_url(settings.db_url))
    where = master_key_location(settings)
    keep = "keep it separately" + (f" (it is in {where})" if where else "")
    if url.get_backend_name() == "postgresql":
        _say(
            f"PostgreSQL: run pg_dump, under umask 077 (it asks for the password or reads ~/.pgpass); "
            f"the master key is NOT in the dump: {keep}"
        )
        _say(_pg_dump_command(url, output))
        return
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        shown = url.render_as_string(hide_password=True)
        _common.fail(f"cannot back up {shown}: backup copies a SQLite file or names the pg_dump command")
    source = Path(url.database)
    _sqlite_backup(source, output)
    _say(
        f"wrote {output} ({output.stat().st_size} bytes), a consistent copy of the database {source}; "
        f"the master key is NOT in it: {keep}"
    )


def _pg_dump_command(url: URL, output: Path) -> str:
    """The pg_dump command for ``url``, the password left out."""
    host = url.host or url.query.get("host")
    words = ["pg_dump", "--format=custom", "--file", str(output)]
    named = (("--host", host), ("--port", url.port), ("--username", url.username), ("--dbname", url.database))
    for flag, value in named:
        if value:
            words += [flag, str(value)]
    return shlex.join(words)


def _sqlite_backup(source: Path, output: Path) -> None:
    """An online copy of ``source`` through SQLite's backup API, written to a 0600
    temporary file beside ``output`` and renamed over it."""
    import tempfile

    if not source.is_file():
        _common.fail(f"no database at {source}: name the data directory with --data or LICENTIA_DATA")
    if output.exists() and output.resolve() == source.resolve():
        _common.fail(f"{output} is the database itself: write the backup to another file")
    if not output.parent.is_dir():
        _common.fail(f"no directory {output.parent} to write the backup into")
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")  # mode 0600
    os.close(fd)
    try:
        _copy_database(source, Path(name))
        os.replace(name, output)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _copy_database(source: Path, target: Path) -> None:
    import sqlite3
    from contextlib import closing

    try:
        with (
            closing(sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        _common.fail(f"cannot back up the database {source}: {exc}")


def _serve(data: Path | None, host: str, port: int, demo: bool, workers: int, no_migrate: bool) -> None:
    from ..central import demo as demo_data
    from ..central.app import create_app
    from ..central.settings import Settings

    settings = Settings.from_env(data_dir=data)  # the edge: env is read here only
    if no_migrate:
        settings = settings.with_changes(migrate=False)
        if workers > 1:
            os.environ["LICENTIA_MIGRATE"] = "0"  # the workers build their apps from the environment
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
        _print_demo(demo_data.seed(ctx), keys.admin_source, f"http://{shown_host}:{port}")
    _common.serve_central_app(app, "licentia.central.asgi:app_from_env", host, port, workers, settings.data_dir)
    out.print("License Central stopped.", highlight=False)
