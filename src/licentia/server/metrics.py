"""Prometheus metrics of a license server (``GET /metrics``).

- ``licentia_seats_total{firm,product}`` / ``licentia_seats_used{firm,product}``: seats of
  the served licenses and seats in use (read at scrape time);
- ``licentia_sessions`` and ``licentia_borrowed``: live leases and borrowed seats;
- ``licentia_grace``: seats only a granted grace keeps counted (a client that went away
  without giving its grace back);
- ``licentia_config_version``: the live config's version counter;
- ``licentia_server_requests_total{endpoint,outcome}``, ``licentia_server_denials_total{type}``;
- ``licentia_server_request_seconds{endpoint}``: latency histogram.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from .core import LicenseServer

ENDPOINTS = ("access", "renew", "release", "borrow", "return", "licenses", "challenge", "admin")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Seats:
    def __init__(self, server: LicenseServer):
        self.server = server

    def collect(self) -> Iterator[Any]:
        server = self.server
        total = GaugeMetricFamily("licentia_seats_total", "Seats of the served licenses", labels=["firm", "product"])
        used = GaugeMetricFamily("licentia_seats_used", "Seats in use", labels=["firm", "product"])
        served, _ = server.served()
        in_use = server.engine.seats_in_use([s.key for s in served])
        totals: dict[tuple[str, str], int] = defaultdict(int)
        useds: dict[tuple[str, str], int] = defaultdict(int)
        for s in served:
            k = (str(s.entry.firm_code), str(s.entry.product_code))
            totals[k] += s.entry.options.quantity
            useds[k] += in_use.get(s.key, 0)
        for k in sorted(totals):
            total.add_metric(list(k), totals[k])
            used.add_metric(list(k), useds[k])
        yield total
        yield used
        sessions = server.engine.sessions()
        live = GaugeMetricFamily("licentia_sessions", "Live leases (running accesses)")
        live.add_metric([], sum(1 for x in sessions if x.mode != "borrow"))
        yield live
        now = server.clock()
        g = GaugeMetricFamily("licentia_grace", "Seats held for a granted grace only")
        g.add_metric([], sum(1 for x in sessions if x.on_grace(now)))
        yield g
        b = GaugeMetricFamily("licentia_borrowed", "Borrowed seats")
        b.add_metric([], sum(1 for x in sessions if x.mode == "borrow"))
        yield b
        v = GaugeMetricFamily("licentia_config_version", "Version counter of the live config")
        v.add_metric([], server.config_version)
        yield v


class Metrics:
    def __init__(self, server: LicenseServer):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "licentia_server_requests",
            "Requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.denials = Counter(
            "licentia_server_denials", "Refused accesses by error type", ["type"], registry=self.registry
        )
        self.latency = Histogram(
            "licentia_server_request_seconds", "Request latency", ["endpoint"], buckets=BUCKETS, registry=self.registry
        )
        self.registry.register(_Seats(server))
        self._ok = {e: self.requests.labels(e, "ok") for e in ENDPOINTS}
        self._err = {e: self.requests.labels(e, "error") for e in ENDPOINTS}
        self._lat = {e: self.latency.labels(e) for e in ENDPOINTS}

    def observe(self, endpoint: str, seconds: float, ok: bool, denial: str | None = None) -> None:
        (self._ok if ok else self._err)[endpoint].inc()
        self._lat[endpoint].observe(seconds)
        if denial:
            self.denials.labels(denial).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
