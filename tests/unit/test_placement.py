"""What work asks Ray for (actors/placement.py), without a cluster."""

from __future__ import annotations

from actors import placement
from lumalive.settings import Settings

CPU_ONLY = {"CPU": 8.0, "memory": 1e10}
WITH_GPU = {"CPU": 8.0, "GPU": 1.0}


def test_a_plain_deployment_asks_for_one_cpu_and_nothing_custom():
    options = placement.worker_options(Settings(), CPU_ONLY)
    assert options == {"num_cpus": 1}
    assert placement.api_options(Settings()) == {"num_cpus": 0}
    assert placement.ingest_options(Settings()) == {}


def test_tiers_above_1080p_get_more_cpus_and_as_many_encoder_threads():
    assert placement.worker_cpus(Settings(media_max_height=720)) == 1
    assert placement.worker_cpus(Settings(media_max_height=2160)) == placement.SEGMENT_CPUS["4K"]
    assert placement.worker_cpus(Settings(media_max_height=4320)) == placement.SEGMENT_CPUS["8K"]
    assert placement.worker_cpus(Settings(media_max_height=4320, media_worker_cpus=3)) == 3
    assert placement.SEGMENT_CPUS["8K"] > placement.SEGMENT_CPUS["4K"] > 1


def test_custom_resources_only_when_configured_and_nvenc_only_when_required():
    settings = Settings(media_encode_resource="media_encode", encoder_hardware="auto")
    # Dedicated (CPU) encode nodes: no GPU share, or the workers could not land there.
    assert placement.worker_options(settings, WITH_GPU) == {
        "num_cpus": 1,
        "resources": {"media_encode": 1},
    }
    assert placement.worker_options(Settings(), WITH_GPU)["num_gpus"] == Settings().media_gpu_share
    required = Settings(encoder_hardware="require")
    assert placement.worker_options(required, CPU_ONLY)["resources"] == {"nvenc": 1}
    assert "resources" not in placement.worker_options(Settings(encoder_hardware="off"), CPU_ONLY)


def test_edge_pinning_asks_for_a_sliver_of_the_edge_resource():
    settings = Settings(edge_resource="lumalive_edge")
    api = placement.api_options(settings)
    assert api["num_cpus"] == 0 and 0 < api["resources"]["lumalive_edge"] < 0.01
    assert placement.ingest_options(settings) == {"resources": api["resources"]}
    assert placement.control_options(settings) == {"resources": api["resources"]}
    assert placement.control_options(Settings()) == {}  # one machine: anywhere, as before
    assert placement.proxy_location(settings) == "HeadOnly"
    assert placement.proxy_location(Settings()) == "EveryNode"


def test_pool_capacity_counts_alive_nodes_that_have_every_resource():
    options = placement.worker_options(Settings(media_encode_resource="enc"), CPU_ONLY)
    nodes = [
        {"Alive": True, "Resources": {"CPU": 4.0}},  # no encode resource: the head
        {"Alive": True, "Resources": {"CPU": 1.0, "enc": 1.0}},
        {"Alive": True, "Resources": {"CPU": 2.0, "enc": 4.0}},
        {"Alive": False, "Resources": {"CPU": 8.0, "enc": 8.0}},  # dead: not counted
        {"Alive": True, "Resources": {"CPU": 0.5, "enc": 1.0}},  # too little CPU
    ]
    assert placement.pool_capacity(options, nodes) == 1 + 2
    assert placement.pool_capacity({"num_cpus": 2}, nodes) == 2 + 1
    assert placement.demand({"num_cpus": 2, "num_gpus": 0}) == {"CPU": 2.0}
