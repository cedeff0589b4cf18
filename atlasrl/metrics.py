"""Prometheus metrics: one registry per role process, exposed on /metrics.

    m = Metrics("envserver")
    steps = m.counter("env_steps_total", "Primitive env steps", ["env_id"])
    port = m.serve("127.0.0.1", 9101)      # GET http://127.0.0.1:9101/metrics

Names are ``atlasrl_<name>``; every role also gets the shared RPC metrics that
the server wrapper fills (``atlasrl_rpc_requests_total{service,method,code}``,
``atlasrl_rpc_latency_seconds``, ``atlasrl_rpc_received_bytes_total``). A registry
per instance (not the global one) lets tests run several roles in one process.
"""
from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, role: str):
        self.role = role
        self.registry = CollectorRegistry()
        self._http: WSGIServer | None = None
        self.rpc_requests = self.counter("rpc_requests_total", "RPCs finished, by status code", ["service", "method", "code"])
        self.rpc_latency = self.histogram("rpc_latency_seconds", "RPC handling time (whole stream for streaming RPCs)", ["service", "method"])
        self.rpc_received_bytes = self.counter("rpc_received_bytes_total", "Serialized request bytes received", ["service", "method"])
        self.rpc_messages = self.counter("rpc_received_messages_total", "Request messages received", ["service", "method"])
        # Not "role": that is the scrape's target label (docker-free-deploy/prometheus.yml targets).
        self.build_info = self.gauge("role_info", "Constant 1, labelled with the role", ["process_role"])
        self.build_info.labels(process_role=role).set(1)

    def counter(self, name: str, doc: str, labels: list[str] | tuple[str, ...] = ()) -> Counter:
        return Counter(_name(name, "_total"), doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: list[str] | tuple[str, ...] = ()) -> Gauge:
        return Gauge(_name(name), doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: list[str] | tuple[str, ...] = (), buckets=LATENCY_BUCKETS) -> Histogram:
        return Histogram(_name(name), doc, list(labels), registry=self.registry, buckets=buckets)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the /metrics HTTP endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


def _name(name: str, strip_suffix: str = "") -> str:
    # prometheus_client appends _total to counters itself.
    if strip_suffix and name.endswith(strip_suffix):
        name = name[: -len(strip_suffix)]
    return name if name.startswith("atlasrl_") else f"atlasrl_{name}"
