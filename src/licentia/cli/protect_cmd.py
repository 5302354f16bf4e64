"""``licentia protect`` and ``licentia protect-data``: the vendor's build step.

The product key comes from License Central (``--central URL`` with the vendor API key
in LICENTIA_API_KEY) or from a key file Central issued (``--product-key-file``, with
``--firm-key`` naming the firm public key that signed it and that the package pins).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._common import console, fail, run_guarded

FirmCodeOpt = Annotated[int, typer.Option("--firm-code", help="The vendor's firm code.")]
ProductCodeOpt = Annotated[int, typer.Option("--product-code", help="The product whose key encrypts the code.")]
FeatureOpt = Annotated[
    int, typer.Option("--feature-code", help="Feature bits the license must hold (0: any license of the product).")
]
VersionOpt = Annotated[
    int, typer.Option("--key-version", help="Product-key version: a license opens the versions it carries.")
]
CentralOpt = Annotated[
    str | None,
    typer.Option("--central", help="License Central URL: fetch the product key (API key in LICENTIA_API_KEY)."),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--product-key-file", help="A product-key file issued by Central ('licentia vendor product-key export')."
    ),
]
FirmKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--firm-key", help="PEM file of the firm's public key(s): verifies the key file; pinned in the package."
    ),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="LICENTIA_API_KEY", help="Vendor API key for --central.")
]


def _firm_pem(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        pem = path.read_text()
    except OSError as exc:
        fail(f"--firm-key {path}: {exc.strerror or exc}")
    from ..core import keyfile

    try:
        keyfile.keys_from_pem(pem)
    except ValueError as exc:
        fail(f"--firm-key {path}: {exc}: give the firm's public key PEM ('licentia vendor firm public-key')")
    return pem


def product_key(
    *,
    firm: int,
    product: int,
    version: int,
    central: str | None,
    key_file: Path | None,
    firm_key: Path | None,
    api_key: str | None,
) -> tuple[bytes, str]:
    """(product key, firm PEM to pin) from Central or from a verified key file."""
    from ..core import keyfile
    from ..core.documents import DocumentInvalid

    if central and key_file:
        fail("give --central or --product-key-file, not both")
    if not central and not key_file:
        fail("the product key comes from --central URL or --product-key-file FILE")
    pem = _firm_pem(firm_key)
    if key_file is not None:
        if pem is None:
            fail(
                "--product-key-file needs --firm-key PEM: the firm's public key that signed it, which the protected "
                f"package pins (get it with 'licentia vendor firm public-key {firm} -o firm.pem')"
            )
        try:
            doc = keyfile.load(key_file)
            found = keyfile.verify(
                doc, keyfile.keys_from_pem(pem), firm_code=firm, product_code=product, version=version
            )
        except OSError as exc:
            fail(f"--product-key-file {key_file}: {exc.strerror or exc}")
        except DocumentInvalid as exc:
            fail(f"--product-key-file {key_file}: {exc.reason}")
        return found.key, pem
    from ..client import CentralError
    from ..protect.central import fetch_product_key

    try:
        found, pem, _ = fetch_product_key(central or "", api_key, firm, product, version, firm_pem=pem)
    except CentralError as exc:
        fail(str(exc))
    return found.key, pem


def protect(
    src: Annotated[Path, typer.Argument(help="A package directory or a single .py script.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Directory to write the protected package (or script) into.")
    ],
    firm_code: FirmCodeOpt,
    product_code: ProductCodeOpt,
    feature_code: FeatureOpt = 0,
    key_version: VersionOpt = 1,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="license: opens only with a license; ip: opens anywhere (stops casual reading only)."
        ),
    ] = "license",
    grace: Annotated[
        str, typer.Option("--grace", help="Keep running this long when the license cannot be found (e.g. 3d, 12h).")
    ] = "0",
    firm_key: FirmKeyOpt = None,
    central: CentralOpt = None,
    product_key_file: KeyFileOpt = None,
    api_key: ApiKeyOpt = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of .py files to copy in clear (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
) -> None:
    """Encrypt a Python package or script so that it runs only with a license."""

    def go() -> None:
        from ..protect import build
        from ..protect import fileformat as _format

        try:
            grace_s = _format.parse_duration(grace)
        except ValueError as exc:
            fail(f"--grace: {exc}")
        if mode not in _format.MODES:
            fail(f"--mode is one of {', '.join(_format.MODES)}")
        key = pem = None
        if mode == "license":
            key, pem = product_key(
                firm=firm_code,
                product=product_code,
                version=key_version,
                central=central,
                key_file=product_key_file,
                firm_key=firm_key,
                api_key=api_key,
            )
        elif grace_s:
            fail("--grace applies to license mode only (IP mode needs no license)")
        try:
            result = build.protect(
                src,
                output,
                firm=firm_code,
                product=product_code,
                feature=feature_code,
                key_version=key_version,
                mode=mode,
                grace=grace_s,
                key=key,
                firm_pem=pem,
                force=force,
                exclude=exclude or (),
            )
        except build.BuildError as exc:
            fail(str(exc))
        major_minor = result.python.replace(".", "")
        console.print(
            f"Protected {result.kind} written to [bold]{result.output}[/] ({result.modules} module(s) encrypted, "
            f"{result.data_files} data file(s) copied; {result.mode} mode, key version {key_version}, "
            f"Python {result.python} only)."
        )
        if result.kind == "package":
            console.print(
                f"Ship it as package data ('*.lpy') in a wheel tagged cp{major_minor} (setup.cfg: [bdist_wheel] "
                f"python_tag = cp{major_minor}), never py3-none-any; the wheel needs 'licentia' installed.",
                highlight=False,
                markup=False,
            )

    run_guarded(go)


def protect_data(
    files: Annotated[list[Path], typer.Argument(help="Data files (or directories) to encrypt.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write the protected files into.")],
    firm_code: FirmCodeOpt,
    product_code: Annotated[int, typer.Option("--product-code", help="The product whose key encrypts the files.")],
    feature_code: FeatureOpt = 0,
    key_version: VersionOpt = 1,
    firm_key: Annotated[
        Path | None, typer.Option("--firm-key", help="PEM file of the firm's public key(s): verifies the key file.")
    ] = None,
    central: CentralOpt = None,
    product_key_file: KeyFileOpt = None,
    api_key: ApiKeyOpt = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Plaintext bytes per authenticated chunk.", hidden=True)
    ] = 1 << 20,
) -> None:
    """Encrypt data files in authenticated chunks; the app reads them with licentia.open_protected()."""

    def go() -> None:
        from ..core import codes
        from ..protect import data

        codes.check_firm_code(firm_code)
        codes.check_product_code(product_code)
        codes.check_feature(feature_code)
        key, _ = product_key(
            firm=firm_code,
            product=product_code,
            version=key_version,
            central=central,
            key_file=product_key_file,
            firm_key=firm_key,
            api_key=api_key,
        )
        try:
            done = data.protect_files(
                files,
                output,
                key,
                firm=firm_code,
                product=product_code,
                feature=feature_code,
                key_version=key_version,
                chunk=chunk_size,
            )
        except (OSError, ValueError) as exc:
            fail(str(exc))
        for src, dst, size in done:
            console.print(f"{src} -> {os.path.relpath(dst)} ({size} bytes)", highlight=False)
        console.print(
            f"{len(done)} file(s) protected for firm {firm_code}, product {product_code}, key version {key_version}."
        )

    run_guarded(go)


def register(app: typer.Typer) -> None:
    """Add ``protect`` and ``protect-data`` to the ``licentia`` command."""
    app.command("protect")(protect)
    app.command("protect-data")(protect_data)
