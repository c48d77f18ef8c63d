"""Run docker-compose.yml with podman, where ``docker compose`` and bridge networks are absent.

``python -m scripts.stack -f docker-compose.yml -f deploy/compose/local-infra.yml up`` reads
the Compose files themselves (:mod:`scripts.stack.compose`), starts one container per
service in dependency order, gates each start on its dependencies' conditions (healthy,
started, completed successfully) by running their health checks itself (podman 4.3 runs
them only under systemd), and fails with the container's log when one does not get there.
"""
