"""Managed inference servers: a model entry's `serve:` block (config.py) makes the toolkit start,
health-check, restart and stop the servers itself, and publish their endpoints
(llm/endpoints.py: `PublishedEndpoints`).

    config.py         ServeConfig, the `serve:` block
    launch.py         each kind's launch template, placeholders, health route, model path, ports
    process.py        one server subprocess: own process group, parent-death signal, log, stop
    watchdog.py       the script that ends a dead driver's servers' groups
    replicas.py       the replica interface; LocalReplica (a subprocess here), GPU slices
    ray_replicas.py   RayReplica (a subprocess of a Ray actor), the placement spec
    supervisor.py     Fleet / ServerGroup: keepers that start, publish, watch and restart replicas
    fleet.py          managed_servers (the run's `with` block), published_endpoints (any process)
"""
