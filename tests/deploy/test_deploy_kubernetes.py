"""deploy/kubernetes, checked without a cluster: every manifest through kubernetes-validate
(strict, at the stated Kubernetes versions; a kind it has no schema for fails), the
kustomization's list of files, and what the issue asks of each workload."""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

import pytest

from tests.conftest import require_system
from tests.deploy.deploy_helpers import (
    CENTRAL_PORT,
    DOCS,
    KUBERNETES,
    KUSTOMIZATION,
    SERVER_PORT,
    kube_documents,
    load_yaml,
    manifests,
    pod_specs,
)

#: the oldest Kubernetes the manifests are for, and the newest the validator knows here
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


@pytest.fixture(scope="module")
def kv():
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    require_system("kubernetes-validate (the test extra)", kubernetes_validate is not None)
    return kubernetes_validate


def _validate(kv, doc: dict[str, Any], version: str) -> str | None:
    """None when ``doc`` is valid; else why not. No schema for its kind is a failure too."""
    try:
        kv.validate(doc, version, strict=True)
    except kv.SchemaNotFoundError as exc:
        return f"no schema: {exc.message}"
    except kv.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


DOCS_BY_KIND: dict[str, list[dict[str, Any]]] = {}
for _path, _doc in kube_documents():
    DOCS_BY_KIND.setdefault(_doc["kind"], []).append(_doc)


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCS_BY_KIND.get(kind, []) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(kv, version):
    deployment = copy.deepcopy(_one("Deployment", "licentia-central"))
    deployment["spec"]["replica"] = 3  # a typo: strict validation refuses it
    assert _validate(kv, deployment, version)
    assert _validate(kv, {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}, version)

    checked = 0
    wrong = []
    for path, doc in kube_documents():
        problem = _validate(kv, doc, version)
        checked += 1
        if problem:
            wrong.append(f"{path.name}: {doc['kind']}/{doc['metadata'].get('name')}: {problem}")
    assert wrong == []
    assert checked >= 12


def test_the_kustomization_lists_every_manifest_and_only_plain_fields():
    kustomization = load_yaml(KUSTOMIZATION)
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "labels", "resources"}
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == [p.name for p in manifests()]
    assert all((KUBERNETES / name).exists() for name in listed)
    namespace = kustomization["namespace"]
    assert _one("Namespace", namespace)
    for path, doc in kube_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{path.name}: applies without kustomize too"


def _container(spec: dict[str, Any]) -> dict[str, Any]:
    assert len(spec["containers"]) == 1
    return spec["containers"][0]


def _pod(kind_name: str) -> dict[str, Any]:
    return dict(pod_specs())[kind_name]


def _locked_down(where: str, spec: dict[str, Any]) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
    assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
    container = _container(spec)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True, where
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"], where
    resources = container["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"} and set(resources["limits"]) >= {"cpu", "memory"}, where
    assert spec.get("automountServiceAccountToken") is False, where


def test_every_workload_runs_locked_down():
    workloads = list(pod_specs())
    assert len(workloads) == 3
    for where, spec in workloads:
        _locked_down(where, spec)


def _labels_select(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_central_replicas_probes_spread_service_budget_and_autoscaler():
    deployment = _one("Deployment", "licentia-central")
    assert deployment["spec"]["replicas"] >= 2
    spec = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _labels_select(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    container = _container(spec)
    assert container["args"][:2] == ["central", "serve"] and "--no-migrate" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}

    service = _one("Service", "licentia-central")
    assert _labels_select(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"][0]["port"] == CENTRAL_PORT
    budget = _one("PodDisruptionBudget", "licentia-central")
    assert _labels_select(budget["spec"]["selector"]["matchLabels"], pod_labels)
    autoscaler = _one("HorizontalPodAutoscaler", "licentia-central")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "licentia-central",
    }
    assert autoscaler["spec"]["minReplicas"] >= 2
    job = _one("Job", "licentia-migrate")
    assert _container(job["spec"]["template"]["spec"])["args"] == ["central", "migrate"]

    config = _one("ConfigMap", "licentia-central")["data"]
    assert container["envFrom"] == [{"configMapRef": {"name": "licentia-central"}}]
    for network in config["LICENTIA_FORWARDED_ALLOW_IPS"].split(","):
        ipaddress.ip_network(network.strip())  # the ingress's address range: addresses or networks
    # the key files are in the mounted Secret, readable by the pods' group, by no one else
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for setting in ("LICENTIA_MASTER_KEY_FILE", "LICENTIA_ADMIN_KEY_FILE"):
        directory, _, file = config[setting].rpartition("/")
        secret = volumes[mounts[directory]]["secret"]
        assert secret["defaultMode"] & 0o007 == 0 and secret["secretName"] == "licentia-central-keys", setting
        assert file in ("master.key", "admin.key")
    # the pool stays under PostgreSQL's default connection limit at the autoscaler's maximum
    assert autoscaler["spec"]["maxReplicas"] * 2 * int(config["LICENTIA_DB_POOL_SIZE"]) < 100


def test_the_license_server_is_one_proxy_bound_to_a_secret_key_on_a_volume():
    deployment = _one("Deployment", "licentia-server")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    container = _container(spec)
    assert container["args"][:2] == ["server", "start"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    directory = env["LICENTIA_SERVER_BINDING_KEY_FILE"].rpartition("/")[0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts[directory]]["secret"]["defaultMode"] & 0o007 == 0  # the server refuses a world-readable key
    data = volumes[mounts["/var/lib/licentia"]]
    claim = _one("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    service = _one("Service", "licentia-server")
    assert _labels_select(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["ports"][0]["port"] == SERVER_PORT
    assert "LICENTIA_HOST=licentia-server.licentia.svc" in DOCS.read_text()


def test_a_license_server_outside_the_cluster_has_a_name_inside():
    service = _one("Service", "licentia-server-host")
    assert "selector" not in service["spec"]
    slices = [
        s
        for s in DOCS_BY_KIND["EndpointSlice"]
        if s["metadata"]["labels"]["kubernetes.io/service-name"] == service["metadata"]["name"]
    ]
    assert len(slices) == 1 and slices[0]["apiVersion"] == "discovery.k8s.io/v1"
    assert {p["name"] for p in slices[0]["ports"]} == {p["name"] for p in service["spec"]["ports"]}
    for endpoint in slices[0]["endpoints"]:
        for address in endpoint["addresses"]:
            ipaddress.ip_address(address)


def test_secrets_are_referenced_never_stored_and_each_is_documented():
    assert "Secret" not in DOCS_BY_KIND
    referenced = set()
    for _, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
        for env in _container(spec).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.add(ref["name"])
    for ingress in DOCS_BY_KIND.get("Ingress", []):
        referenced |= {t["secretName"] for t in ingress["spec"].get("tls", [])}
    assert {"licentia-database", "licentia-central-keys", "licentia-server-binding"} <= referenced
    docs = DOCS.read_text()
    undocumented = [name for name in sorted(referenced) if not re.search(rf"`{name}`", docs)]
    assert undocumented == []
