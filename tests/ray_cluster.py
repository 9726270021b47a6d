"""A Ray cluster of several nodes on this machine, on 127.0.0.1 only: for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from indexer.ray_engine import import_ray

NODE_ARGS: dict[str, Any] = {"node_ip_address": "127.0.0.1", "include_dashboard": False}


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 2) -> Iterator[Any]:
    """A head and `nodes - 1` worker raylets (`ray start --head` turns on token auth: `Cluster` does not),
    with this process connected as the driver; everything stopped on exit."""
    ray = import_ray(loopback=True)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "num_cpus": cpus_per_node})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**NODE_ARGS, num_cpus=cpus_per_node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
