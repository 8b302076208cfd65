"""The KubeRay manifest agrees with the code: the Ray resources it gives its node groups
are the ones `actors.placement` asks for (and each kind of work fits somewhere), its
ports are the settings', its environment names are `Settings` fields, its secrets come
from a Secret by reference, and what it runs exists (the Serve import path, the CLI
commands its instructions name, the Ray version)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from actors import placement
from actors.enhancer_pool import enhancer_options
from cluster.cli import main as cli
from lumalive.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "cluster" / "kuberay" / "rayservice.yaml"
SECRET_NAMES = {"DATABASE_URL", "LUMALIVE_APP_DATABASE_URL", "LUMALIVE_JWT_SECRET"}


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def service() -> dict[str, Any]:
    (rs,) = [d for d in documents() if d["kind"] == "RayService"]
    return rs


def groups() -> dict[str, dict[str, Any]]:
    """Head and worker groups by name ("head" for the head)."""
    cluster = service()["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"]} | {
        g["groupName"]: g for g in cluster["workerGroupSpecs"]
    }


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return list(group["template"]["spec"]["containers"])


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def plain_env() -> dict[str, str]:
    """The head's environment variables that have values (no secrets)."""
    (head,) = containers(groups()["head"])
    return {k: str(e["value"]) for k, e in env(head).items() if "value" in e}


def settings() -> Settings:
    """The settings the pods run with (secrets aside)."""
    fields = {k: v for k, v in plain_env().items() if k.startswith("LUMALIVE_")}
    return Settings(**{k.removeprefix("LUMALIVE_").lower(): v for k, v in fields.items()})


def node_resources(group: dict[str, Any]) -> dict[str, float]:
    """What a node of the group advertises to Ray (rayStartParams)."""
    params = group["rayStartParams"]
    have = {"CPU": float(params.get("num-cpus", 0)), "GPU": float(params.get("num-gpus", 0))}
    if "resources" in params:
        custom = json.loads(json.loads(params["resources"]))  # KubeRay's doubly quoted JSON
        have.update({k: float(v) for k, v in custom.items()})
    return have


def test_secrets_are_referenced_never_inlined():
    assert not [d for d in documents() if d["kind"] == "Secret"]
    for name, group in groups().items():
        for container in containers(group):
            variables = env(container)
            assert set(variables) >= SECRET_NAMES, name
            for secret in SECRET_NAMES:
                ref = variables[secret]["valueFrom"]["secretKeyRef"]
                assert (ref["name"], ref["key"]) == ("lumalive", secret)
                assert "value" not in variables[secret]
            assert not container.get("envFrom")  # only what is named here


def test_every_environment_name_is_a_setting_and_its_value_is_valid():
    known = {f"LUMALIVE_{n.upper()}" for n in Settings.model_fields}
    known |= {"DATABASE_URL", "RAY_ADDRESS"}
    for group in groups().values():
        for container in containers(group):
            assert set(env(container)) <= known
    s = settings()  # validates every value
    assert s.edge_resource and s.media_encode_resource


def test_ports_match_the_settings():
    s, defaults = settings(), Settings()
    (head,) = containers(groups()["head"])
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["serve"] == s.api_port == defaults.api_port
    assert ports["rtmp"] == s.rtmp_port == defaults.rtmp_port
    assert ports["dashboard"] == defaults.dashboard_port
    assert s.api_host == s.rtmp_host == "0.0.0.0"  # reachable from the Service
    (rtmp,) = [d for d in documents() if d["kind"] == "Service"]
    assert [(p["port"], p["targetPort"]) for p in rtmp["spec"]["ports"]] == [
        (s.rtmp_port, s.rtmp_port)
    ]


def test_resource_names_are_placements_and_each_kind_of_work_has_a_group():
    s = settings()
    advertised = {name: node_resources(g) for name, g in groups().items()}  # group -> resources
    custom = {r for res in advertised.values() for r in res} - {"CPU", "GPU"}
    assert custom == placement.resource_names(s)
    # The API and the ingest: pinned to the head, which takes no other work.
    edge = placement.api_options(s)["resources"]
    assert placement.ingest_options(s)["resources"] == edge
    assert all(advertised["head"].get(r, 0) >= n for r, n in edge.items())
    assert advertised["head"]["CPU"] == 0
    # Media workers fit on the CPU encode nodes, on a cluster with GPUs too.
    worker = placement.worker_options(s, {"GPU": 1.0, "CPU": 64.0})
    nodes = [{"Alive": True, "Resources": advertised["cpu-encode"]}]
    assert placement.pool_capacity(worker, nodes) == advertised["cpu-encode"]["CPU"]
    assert placement.pool_capacity(worker, [{"Alive": True, "Resources": advertised["head"]}]) == 0
    # NVENC workers (encoder_hardware=require) fit only on the NVENC group.
    nvenc = placement.worker_options(s.model_copy(update={"encoder_hardware": "require"}), {})
    fits = {
        g
        for g, res in advertised.items()
        if placement.pool_capacity(nvenc, [{"Alive": True, "Resources": res}])
    }
    assert fits == {"nvenc"}
    # Enhancer actors: a GPU share, on the GPU group.
    share = enhancer_options(s, 1.0)["num_gpus"]
    assert advertised["gpu-enhance"]["GPU"] >= share > 0


def test_groups_autoscale_within_bounds():
    spec = service()["spec"]["rayClusterConfig"]
    assert spec["enableInTreeAutoscaling"] is True
    for name, group in groups().items():
        if name == "head":
            continue
        low, high = group["minReplicas"], group["maxReplicas"]
        assert 0 <= low <= group["replicas"] <= high and low < high, name
        requests = containers(group)[0]["resources"]["requests"]
        # The pod has at least what its node advertises to Ray.
        res = node_resources(group)
        assert float(requests["cpu"]) >= res["CPU"], name
        assert float(requests.get("nvidia.com/gpu", 0)) >= res["GPU"], name


def test_what_the_manifest_runs_exists(monkeypatch: pytest.MonkeyPatch):
    spec = service()["spec"]
    assert spec["rayClusterConfig"]["rayVersion"] == ray.__version__
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-" in dockerfile
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    assert serve_config["proxy_location"] == placement.proxy_location(settings())
    (application,) = serve_config["applications"]
    module, _, attr = application["import_path"].partition(":")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/lumalive")
    monkeypatch.setenv("LUMALIVE_JWT_SECRET", "x" * 40)
    for name, value in plain_env().items():  # the head's environment, where Serve builds it
        monkeypatch.setenv(name, value)
    # Reloaded: built from this environment even if another test imported it before.
    app = getattr(importlib.reload(importlib.import_module(module)), attr)
    deployment = app._bound_deployment  # noqa: SLF001 - the name Serve deploys it under
    assert [d["name"] for d in application["deployments"]] == [deployment.name]
    # Its replicas are pinned to the edge (head) by the code, not by the manifest.
    assert (
        deployment.ray_actor_options["resources"] == placement.api_options(settings())["resources"]
    )
    assert not any("ray_actor_options" in d for d in application["deployments"])
    # Every `lumalive ...` command the instructions name is one the image's CLI has.
    commands = set(re.findall(r"-- lumalive ([a-z -]+?)\s*$", MANIFEST.read_text(), re.M))
    assert commands >= {"migrate", "ingest", "webhook dispatch"}
    for command in commands:
        with pytest.raises(SystemExit) as done:
            cli([*command.split(), "--help"])
        assert done.value.code == 0, command
