"""Protector benchmarks: protected vs plain code, with PyArmor alongside as a reference.

- steady state: recursive fib(25) in a protected module vs the same module plain (target <= 1.02x);
- import of a generated 200-module package, protected vs plain from .pyc, in a process
  where licentia is already imported (target <= 1.1x); `import licentia` separately;
- size of the protected package vs the plain .pyc files (target <= 1.5x);
- protected data: encrypting and streaming back a 512 MiB file (throughput, memory growth).

A real license in a real machine container (this machine's traits) opens the protected
builds. licentia itself runs from a byte-compiled copy of src/ (as an installed wheel
would). Figures are medians over several child processes, variants interleaved (fib: the
best of 9 calls per process, then the median over processes). The protected import
includes the first license check of the process (``licentia.access``: opening the
container, verifying the license, unsealing the product key); a second row shows the
import when the application has checked its license already.

Run: .venv/bin/python bench/bench_protect.py  (or `make bench`). Prints a markdown table, then JSON.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from licentia.container import MachineContainer, read_system_traits  # noqa: E402
from licentia.core import exchange  # noqa: E402
from licentia.core.license import Options  # noqa: E402
from licentia.protect import build  # noqa: E402
from tests.factory import Firm  # noqa: E402

N_MODULES = 200
FIB_N = 25
RUNS = int(os.environ.get("BENCH_RUNS", "9"))

FIB_SRC = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"

FIB_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import licentia
import fibbench.core as c
c.fib(18)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    c.fib(int(sys.argv[3]))
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""

IMPORT_CHILD = r"""
import importlib, sys, time
sys.path.insert(0, sys.argv[1])
import licentia
if len(sys.argv) > 3:  # the application checked its license already (licentia.access at start)
    licentia.access(int(sys.argv[3]), 1, firm_key=sys.argv[4]).release()
t = time.perf_counter()
import gen200
for i in range(int(sys.argv[2])):
    importlib.import_module(f"gen200.m{i:03d}")
print(time.perf_counter() - t)
"""

DATA_CHILD = r"""
import json, os, resource, sys, time
from licentia.protect import data
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = os.urandom(1 << 20)
with open(src, "wb") as fh:
    for _ in range(size >> 20):
        fh.write(block)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
key = bytes(32)
t0 = time.perf_counter()
data.protect_file(src, dst, key, firm=10101, product=1)
t1 = time.perf_counter()
n = 0
with data.ProtectedFile(dst, key) as f:
    while part := f.read(1 << 20):
        n += len(part)
t2 = time.perf_counter()
assert n == size
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"encrypt_s": t1 - t0, "read_s": t2 - t1, "rss_growth_kib": grown}))
"""

DATA_MIB = int(os.environ.get("BENCH_DATA_MIB", "512"))

LICENTIA_CHILD = "import time\nt = time.perf_counter()\nimport licentia\nprint(time.perf_counter() - t)\n"


def module_source(i: int) -> str:
    """A module of ordinary size: a few functions, a class, constants (about 4 KB of .pyc)."""
    funcs = "\n".join(
        f"def f{i}_{j}(values, scale={j}):\n"
        f'    """Function {j} of module {i}."""\n'
        f"    total = 0\n"
        f"    for k, v in enumerate(values):\n"
        f"        if k % {j + 2} == 0:\n"
        f"            total += v * scale\n"
        f"        else:\n"
        f"            total -= v // (scale + 1)\n"
        f"    return {{'module': {i}, 'function': {j}, 'total': total}}\n"
        for j in range(8)
    )
    return (
        f'"""Generated module {i}."""\n\nimport math\n\n'
        f"LIMIT = {i * 7}\nNAMES = {[f'n{i}_{k}' for k in range(6)]!r}\n\n"
        f"{funcs}\n\nclass Thing{i}:\n    def __init__(self, x):\n        self.x = x\n\n"
        f"    def area(self):\n        return math.pi * self.x ** 2\n\n"
        f"    def __repr__(self):\n        return f'Thing{i}({{self.x}})'\n"
    )


def make_sources(root: Path) -> tuple[Path, Path]:
    fib = root / "src" / "fibbench"
    fib.mkdir(parents=True)
    (fib / "__init__.py").write_text("")
    (fib / "core.py").write_text(FIB_SRC)
    gen = root / "src" / "gen200"
    gen.mkdir()
    (gen / "__init__.py").write_text('"""A generated package of 200 modules."""\n')
    for i in range(N_MODULES):
        (gen / f"m{i:03d}.py").write_text(module_source(i))
    return fib, gen


def pyc_size(pkg: Path) -> int:
    return sum(p.stat().st_size for p in pkg.rglob("*.pyc"))


def tree_size(pkg: Path, suffixes: tuple[str, ...] | None = None) -> int:
    return sum(
        p.stat().st_size
        for p in pkg.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and (suffixes is None or p.suffix in suffixes)
    )


def child(env: dict[str, str], code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed")
    return out.stdout.strip()


def try_pyarmor(src: Path, out: Path) -> str | None:
    """Obfuscate with PyArmor (default mode); None when it worked, else why not."""
    exe = shutil.which("pyarmor") or str(Path(sys.executable).with_name("pyarmor"))
    if not os.path.exists(exe):
        return "pyarmor not installed (pip install pyarmor)"
    r = subprocess.run(
        [exe, "gen", "-O", str(out), "-r", str(src)], capture_output=True, text=True, timeout=600, cwd=src.parent
    )
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return f"pyarmor failed: {lines[-1] if lines else r.returncode}"
    return None


def main() -> dict:
    now = int(time.time())
    results: dict = {"python": sys.version.split()[0], "runs": RUNS}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # licentia as installed: a byte-compiled copy of src/
        lib = tmp / "lib"
        shutil.copytree(ROOT / "src" / "licentia", lib / "licentia", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(lib, quiet=1)
        # a real license for product 1 in a machine container bound to this machine
        home = tmp / "home"
        firm = Firm()
        c = MachineContainer.create(home, "medium", read_system_traits(), now)
        req = c.make_request("activate", now, ticket="00000-00000-00000-00000-00000")
        c.apply_update(firm.grant(req, now=now, options=Options(expires=now + 365 * 86400)), now)
        key = exchange.derive_product_key(firm.secret, firm.code, 1, 1)

        fib_src, gen_src = make_sources(tmp)
        plain = tmp / "src"
        compileall.compile_dir(plain, quiet=1)
        prot = tmp / "protected"
        for src in (fib_src, gen_src):
            build.protect(src, prot, firm=firm.code, product=1, key=key, firm_pem=firm.pem)
        armor = tmp / "pyarmor"
        why = try_pyarmor(fib_src, armor)
        if why is None:
            why = try_pyarmor(gen_src, armor)
        if why is not None:
            notes.append(f"PyArmor not measured: {why}")
            armor_ok = False
        else:
            armor_ok = True
            compileall.compile_dir(armor, quiet=1)

        env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
        env.update(LICENTIA_HOME=str(home), PYTHONPATH=str(lib), PYTHONDONTWRITEBYTECODE="1")
        variants = {"plain": plain, "protected": prot, **({"pyarmor": armor} if armor_ok else {})}

        # first: the protected builds open (and a PyArmor failure becomes a note)
        for name, where in list(variants.items()):
            try:
                child(env, IMPORT_CHILD, str(where), "1")
            except RuntimeError as exc:
                if name != "pyarmor":
                    raise
                notes.append(f"PyArmor not measured: its build does not run here ({exc})")
                variants.pop(name)

        fib: dict[str, list[float]] = {n: [] for n in variants}
        imp: dict[str, list[float]] = {n: [] for n in variants}
        warm: list[float] = []
        lic: list[float] = []
        for _ in range(RUNS):
            for name, where in variants.items():
                fib[name].append(min(json.loads(child(env, FIB_CHILD, str(where), "9", str(FIB_N)))))
                imp[name].append(float(child(env, IMPORT_CHILD, str(where), str(N_MODULES))))
            warm.append(float(child(env, IMPORT_CHILD, str(prot), str(N_MODULES), str(firm.code), firm.pem)))
            lic.append(float(child(env, LICENTIA_CHILD)))

        stream = json.loads(child(env, DATA_CHILD, str(tmp / "data.bin"), str(tmp / "data.lpd"), str(DATA_MIB << 20)))
        med = {k: statistics.median(v) for k, v in fib.items()}
        imed = {k: statistics.median(v) for k, v in imp.items()}
        sizes = {
            "plain_pyc": pyc_size(plain / "gen200"),
            "plain_source": tree_size(plain / "gen200", (".py",)),
            "protected": tree_size(prot / "gen200"),
        }
        if "pyarmor" in variants:
            sizes["pyarmor"] = tree_size(armor / "gen200") + tree_size(armor / "pyarmor_runtime_000000")
        results.update(
            fib_seconds=med,
            fib_ratio={k: v / med["plain"] for k, v in med.items()},
            import_seconds=imed,
            import_ratio={k: v / imed["plain"] for k, v in imed.items()},
            import_after_access_seconds=statistics.median(warm),
            import_after_access_ratio=statistics.median(warm) / imed["plain"],
            import_licentia_seconds=statistics.median(lic),
            size_bytes=sizes,
            size_ratio={k: sizes[k] / sizes["plain_pyc"] for k in sizes if k not in ("plain_pyc", "plain_source")},
            data_mib=DATA_MIB,
            data_encrypt_mib_s=DATA_MIB / stream["encrypt_s"],
            data_read_mib_s=DATA_MIB / stream["read_s"],
            data_rss_growth_mib=stream["rss_growth_kib"] / 1024,
            notes=notes,
        )
    return results


def table(r: dict) -> str:
    ms = 1000.0
    rows = [
        "| measure | plain | licentia protect | PyArmor | target |",
        "|---|---|---|---|---|",
    ]

    def cell(d: dict, k: str, fmt: str) -> str:
        return format(d[k], fmt) if k in d else "n/a"

    fs, fr = r["fib_seconds"], r["fib_ratio"]
    rows.append(
        f"| fib({FIB_N}) steady state, ms (ratio) | {fs['plain'] * ms:.1f} | {fs['protected'] * ms:.1f} "
        f"({fr['protected']:.3f}x) | "
        + (f"{fs['pyarmor'] * ms:.1f} ({fr['pyarmor']:.2f}x)" if "pyarmor" in fs else "n/a")
        + " | <= 1.02x |"
    )
    is_, ir = r["import_seconds"], r["import_ratio"]
    rows.append(
        f"| import {N_MODULES} modules, ms (ratio) | {is_['plain'] * ms:.1f} (from .pyc) | {is_['protected'] * ms:.1f} "
        f"({ir['protected']:.3f}x) | "
        + (f"{is_['pyarmor'] * ms:.1f} ({ir['pyarmor']:.2f}x)" if "pyarmor" in is_ else "n/a")
        + " | <= 1.1x |"
    )
    rows.append(
        f"| same, license already checked in the process, ms (ratio) | {is_['plain'] * ms:.1f} | "
        f"{r['import_after_access_seconds'] * ms:.1f} ({r['import_after_access_ratio']:.3f}x) | | |"
    )
    s, sr = r["size_bytes"], r["size_ratio"]
    rows.append(
        f"| package size, KB (ratio to .pyc) | {s['plain_pyc'] / 1024:.0f} (.pyc) | {s['protected'] / 1024:.0f} "
        f"({sr['protected']:.2f}x) | "
        + (f"{s['pyarmor'] / 1024:.0f} ({sr['pyarmor']:.2f}x)" if "pyarmor" in s else "n/a")
        + " | <= 1.5x |"
    )
    rows.append(f"| `import licentia`, ms | {r['import_licentia_seconds'] * ms:.1f} | | | |")
    rows.append(
        f"| protect-data / open_protected on {r['data_mib']} MiB, MiB/s (memory growth) | | "
        f"{r['data_encrypt_mib_s']:.0f} / {r['data_read_mib_s']:.0f} ({r['data_rss_growth_mib']:.0f} MiB) | | |"
    )
    text = "\n".join(rows)
    if r["notes"]:
        text += "\n\n" + "\n".join(f"- {n}" for n in r["notes"])
    return text


if __name__ == "__main__":
    res = main()
    print(table(res))
    print()
    print(json.dumps(res, indent=2, sort_keys=True))
