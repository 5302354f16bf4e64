"""Reading the deployment files as their tools do: the Dockerfile's instructions, the build
context that .dockerignore leaves, the compose file and the Kubernetes manifests, and every
`licentia` command and LICENTIA_* setting they use."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, require_system

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
DOCS = ROOT / "docs" / "deploy.md"

#: the image the compose file and the manifests run (the tag aside)
IMAGE = "licentia"
CENTRAL_PORT = 8480
SERVER_PORT = 22370


def tool(name: str, what: str) -> str:
    """A command-line tool the test extra installs beside this interpreter; skips (fails in CI)
    when it is not there."""
    path = Path(sys.executable).parent / name
    require_system(f"{name} ({what}, the test extra: make test installs it)", path.exists())
    return str(path)


# ---------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM's stage
    line: int
    keyword: str  # upper case
    rest: str  # the arguments, continuation lines joined

    def json_args(self) -> list[str] | None:
        """The arguments in exec (JSON) form, or None in shell form."""
        try:
            value = json.loads(self.rest)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, lines continued with a backslash joined."""
    out: list[Instruction] = []
    stage = -1
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        pending.append(line[:-1].strip() if line.endswith("\\") else line)
        if line.endswith("\\"):
            continue
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, rest = joined.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, start, keyword, rest.strip()))
    return out


def env_pairs(rest: str) -> dict[str, str]:
    """``ENV a=1 b=2`` (the key=value form)."""
    pairs = {}
    for word in shlex.split(rest):
        name, sep, value = word.partition("=")
        assert sep, f"ENV {rest!r}: use the key=value form"
        pairs[name] = value
    return pairs


def copy_sources(instruction: Instruction) -> tuple[list[str], str]:
    """A COPY's sources and destination (its --flags left out)."""
    words = instruction.json_args() or shlex.split(instruction.rest)
    words = [w for w in words if not w.startswith("--")]
    return words[:-1], words[-1]


# ---------------------------------------------------------------- .dockerignore


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line, as Docker reads .dockerignore: comments and blank lines
    dropped, each pattern cleaned of a leading and a trailing slash, ``**`` any number of
    directories, ``*`` and ``?`` within one name, ``!`` an exception."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += fnmatch.translate(pattern[i : end + 1]).removeprefix("(?s:").removesuffix(r")\Z")
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        out.append((excludes, re.compile(regex + r"\Z")))
    return out


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context: the
    last pattern that matches the path or one of its parent directories decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for excludes, pattern in patterns:
        if any(pattern.match(p) for p in prefixes):
            verdict = excludes
    return verdict


# ---------------------------------------------------------------- YAML


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def manifests() -> list[Path]:
    """Every Kubernetes manifest (the kustomization aside)."""
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != KUSTOMIZATION.name)


def kube_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    for _, doc in kube_documents():
        spec = doc.get("spec", {})
        template = spec.get("template", {}) if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet") else {}
        if template:
            yield f"{doc['kind']}/{doc['metadata']['name']}", template["spec"]


def uses_image(image: str) -> bool:
    name = image.rsplit("/", 1)[-1]
    return name.split(":")[0].split("@")[0] == IMAGE or image.startswith("${LICENTIA_IMAGE")


# ---------------------------------------------------------------- what the files run and set


def entrypoint() -> list[str]:
    found = [i.json_args() for i in instructions(DOCKERFILE.read_text()) if i.keyword == "ENTRYPOINT"]
    assert found and found[-1], "the Dockerfile has an ENTRYPOINT in exec form"
    return found[-1]


def invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after `licentia`) of every licentia command the image, the compose file,
    the manifests and docs/deploy.md run."""
    out: list[tuple[str, list[str]]] = []
    ep = entrypoint()
    assert ep[0] == "licentia"
    steps = instructions(DOCKERFILE.read_text())
    last_stage = max(i.stage for i in steps)
    for step in steps:
        if step.keyword == "CMD" and step.stage == last_stage:
            args = step.json_args()
            assert args is not None, "CMD in exec form"
            out.append((f"Dockerfile:{step.line}", ep[1:] + args))

    for name, service in load_yaml(COMPOSE)["services"].items():
        if not uses_image(service.get("image", "")):
            continue
        command = service.get("entrypoint") or ep
        args = service.get("command", [])
        assert isinstance(args, list), f"compose service {name}: command as a list"
        out.append((f"compose.yaml:{name}", command[1:] + args))

    for where, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not uses_image(container["image"]):
                continue
            command = container.get("command") or ep
            assert command[0] == "licentia", f"{where}: runs licentia"
            out.append((f"{where}:{container['name']}", command[1:] + container.get("args", [])))

    out.extend(documented_invocations())
    return out


def documented_invocations() -> list[tuple[str, list[str]]]:
    """`licentia ...` as docs/deploy.md's code blocks run it: at the start of a command, after
    `--` (kubectl exec) or after `exec SERVICE` / `run --rm SERVICE` (docker compose)."""
    out = []
    in_block = False
    for number, raw in enumerate(DOCS.read_text().splitlines(), 1):
        if raw.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        line = raw.split(" #", 1)[0].strip()
        for command in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(command)
            except ValueError:
                continue
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words.pop(0)  # VAR=value before the command
            for i, word in enumerate(words):
                if word != "licentia":
                    continue
                before = words[:i]
                if (
                    i == 0
                    or before[-1] == "--"
                    or (len(before) >= 2 and before[-2] == "exec")
                    or (len(before) >= 3 and before[-3:-1] == ["run", "--rm"])
                ):
                    out.append((f"docs/deploy.md:{number}", words[i + 1 :]))
                    break  # (`-n licentia` before it is a namespace)
    return out


def settings_used() -> list[tuple[str, str]]:
    """(where, name) of every LICENTIA_* variable the image, the compose file and the
    manifests set."""
    out = []
    for step in instructions(DOCKERFILE.read_text()):
        if step.keyword == "ENV":
            out += [(f"Dockerfile:{step.line}", n) for n in env_pairs(step.rest)]
    compose = load_yaml(COMPOSE)
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        names = env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        out += [(f"compose.yaml:{name}", n) for n in names]
    for path, doc in kube_documents():
        if doc["kind"] == "ConfigMap":
            out += [(f"{path.name}:{doc['metadata']['name']}", n) for n in doc.get("data", {})]
    for where, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            out += [(f"{where}:{container['name']}", e["name"]) for e in container.get("env", [])]
    return [(where, name) for where, name in out if name.startswith("LICENTIA_")]
