"""The public surface: what `import licentia` loads and exports, and the documented errors."""

import subprocess
import sys

import licentia
from licentia.core import errors as E
from tests.conftest import child_env


def test_import_licentia_loads_no_cli_or_network_package():
    code = (
        "import sys, licentia; "
        "heavy = ('typer', 'rich', 'httpx', 'fastapi', 'sqlalchemy', 'uvicorn'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_public_names():
    expected = {
        "access",
        "info",
        "trust",
        "Handle",
        "LicenseError",
        "LicenseNotFound",
        "LicenseInvalid",
        "LicenseExpired",
        "LicenseNotYetValid",
        "UnitsExhausted",
        "FeatureNotLicensed",
        "ClockTampered",
        "MaintenanceExpired",
        "SyncRequired",
        "ContainerLocked",
        "TrustNotConfigured",
        "ActivationError",
        "ServerUnreachable",
        "__version__",
        "ProtectedImportError",
        "open_protected",
        "SeatsExhausted",
        "AccessDenied",
        "LicentiaError",
        "ProtectedDataError",
        "ManipulationDetected",
    }
    assert set(licentia.__all__) == expected
    for name in expected:
        assert hasattr(licentia, name)
    codes = [cls.code for cls in E.ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert all(issubclass(cls, licentia.LicenseError) for cls in E.ALL_ERRORS)


def test_errors_are_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    for cls in E.ALL_ERRORS:
        assert f"| {cls.code} | `{cls.__name__}`" in doc
