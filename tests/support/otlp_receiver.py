"""A real OTLP/HTTP receiver: decodes ExportTraceServiceRequest and ExportMetricsServiceRequest bodies."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric as ProtoMetric
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.support.worker_process import wait_until


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    events: list[str]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    #: (trace id, span id) of each link, in order.
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ReceivedPoint:
    """One data point of a metric, as decoded from the wire."""

    metric: str
    unit: str
    description: str
    kind: str  # sum, gauge or histogram
    temporality: str  # AGGREGATION_TEMPORALITY_CUMULATIVE, _DELTA, or "" for a gauge
    monotonic: bool
    attributes: dict[str, Any]
    start_time_unix_nano: int
    time_unix_nano: int
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    has_min_max: bool = False
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @property
    def key(self) -> frozenset[tuple[str, Any]]:
        return frozenset(self.attributes.items())


def _points(metric: ProtoMetric, resource: dict[str, Any], scope: str) -> list[ReceivedPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        raise ValueError(f"metric {metric.name} has no data")  # a collector refuses it too
    data = getattr(metric, kind)
    temporality = (
        AggregationTemporality.Name(data.aggregation_temporality)
        if kind in ("sum", "histogram")
        else ""
    )
    common = {
        "metric": metric.name,
        "unit": metric.unit,
        "description": metric.description,
        "kind": kind,
        "temporality": temporality,
        "monotonic": bool(getattr(data, "is_monotonic", False)),
        "resource": resource,
        "scope": scope,
    }
    points = []
    for point in data.data_points:
        attributes = {a.key: _value(a.value) for a in point.attributes}
        times = {
            "start_time_unix_nano": point.start_time_unix_nano,
            "time_unix_nano": point.time_unix_nano,
        }
        if kind == "histogram":
            points.append(
                ReceivedPoint(
                    **common,
                    **times,
                    attributes=attributes,
                    count=point.count,
                    sum=point.sum,
                    bucket_counts=list(point.bucket_counts),
                    explicit_bounds=list(point.explicit_bounds),
                    has_min_max=point.HasField("min") or point.HasField("max"),
                )
            )
        else:
            value = getattr(point, point.WhichOneof("value"))
            points.append(ReceivedPoint(**common, **times, attributes=attributes, value=value))
    return points


class OtlpReceiver:
    def __init__(self, port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        self.requests = 0
        self.metric_requests = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def in_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def named(self, prefix: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.name.startswith(prefix)]

    def wait_for(
        self,
        name: str,
        *,
        message_id: str | None = None,
        parent_span_id: str | None = None,
        timeout: float = 20,
    ) -> ReceivedSpan:
        """The first span named ``name`` (a prefix) for that task id and/or parent, waiting up to ``timeout``."""

        def matches(span: ReceivedSpan) -> bool:
            return (
                message_id is None or span.attributes.get("messaging.message.id") == message_id
            ) and (parent_span_id is None or span.parent_span_id == parent_span_id)

        found: list[ReceivedSpan] = wait_until(
            lambda: [s for s in self.named(name) if matches(s)], timeout, message=f"span {name}"
        )
        return found[0]

    def metric_points(self, name: str) -> list[ReceivedPoint]:
        with self._lock:
            return [point for point in self.points if point.metric == name]

    def latest(self, name: str) -> dict[frozenset[tuple[str, Any]], ReceivedPoint]:
        """The newest point of each attribute set of metric ``name`` (for cumulative sums and
        histograms, and gauges: each is the whole value)."""
        newest: dict[frozenset[tuple[str, Any]], ReceivedPoint] = {}
        for point in sorted(self.metric_points(name), key=lambda p: p.time_unix_nano):
            newest[point.key] = point
        return newest

    def wait_for_metric(self, name: str, timeout: float = 20, **attributes: Any) -> ReceivedPoint:
        """The first point of metric ``name`` with a non-zero value and these attributes."""

        def found() -> list[ReceivedPoint]:
            return [
                p
                for p in self.metric_points(name)
                if (p.value or p.count) and attributes.items() <= p.attributes.items()
            ]

        points: list[ReceivedPoint] = wait_until(found, timeout, message=f"metric {name}")
        return points[0]

    def _store_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        points = []
        for resource_metrics in request.resource_metrics:
            resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points.extend(_points(metric, resource, scope_metrics.scope.name))
        with self._lock:
            self.metric_requests += 1
            self.points.extend(points)

    def _store(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                name=span.name,
                                kind=ProtoSpan.SpanKind.Name(span.kind),
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                status_code=span.status.code,
                                events=[event.name for event in span.events],
                                resource=resource,
                                scope=scope_spans.scope.name,
                                links=[
                                    (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                                ],
                            )
                        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._store(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    try:
                        receiver._store_metrics(body)
                    except ValueError as exc:
                        receiver.refused.append(str(exc))
                        self.send_response(400)
                        self.end_headers()
                        return
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        return Handler
