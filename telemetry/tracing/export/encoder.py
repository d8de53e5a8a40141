"""OTLP/HTTP export of run records without rebuilding SDK spans: the contained encoder.

    exporter = RecordExporter(timeout=1.0)           # an OTLPSpanExporter, in the export process
    span = RecordSpan(body, resource)                 # what the decoder makes of a run record
    exporter.export([span, sdk_span, ...])            # one request, as the SDK would have encoded it

Why: rebuilding an SDK span from a run record cost the export process about
80k instructions, and the SDK's OTLP encoding of it about 212k more (callgrind,
per span). A run record differs from the next of its task and queue only in
its ids, times, message id, retries and outcome, so its protobuf ``Span`` is a
copy of a template, made once per (resource, task, queue, system, parent or
none) by the SDK's own encoder, with those fields set: the serialized span is
the SDK's, field for field. Every other span is encoded by the SDK's
``encode_spans``, and a request groups its spans by resource and scope in
order of first appearance, as ``encode_spans`` does.
tests/telemetry/tracing/export/test_encoder.py holds the request bytes to
``encode_spans`` of the same spans.

What this leans on, and why it is contained here: :meth:`RecordExporter.export`
is ``OTLPSpanExporter.export`` of opentelemetry-exporter-otlp-proto-http 1.45
with the encoding swapped, so it reads that exporter's private members
(``_shutdown``, ``_metrics``, ``_max_request_size``, ``_client``) and helpers
(``_is_request_too_large``, ``RequestPayloadTooLargeError``). It is used only
with the release it was written for (:data:`CONTAINED_RELEASE`, checked by
:func:`contained`); with any other, run records are rebuilt into SDK spans and
the SDK encodes everything, as it does for gRPC and the console exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from telemetry.bounded_cache import remember
from telemetry.delivery.observers import OUTCOMES
from telemetry.tracing.export.run_records import FIXED, RecordSpan

logger = logging.getLogger("telemetry.tracing.export")

#: The exporter release whose ``export`` :class:`RecordExporter` follows.
CONTAINED_RELEASE = "1.45."
#: Templates kept; past it, the cache starts over.
MAX_TEMPLATES = 1024
#: The attributes a record sets, by their index in a run span's attributes.
MESSAGE_ID_AT, RETRIES_AT, OUTCOME_AT = 3, 5, 6


#: Where a record's strings start.
_STRINGS = 1 + FIXED.size


class Templates:
    """Protobuf spans made by the SDK's encoder, one per kind of run record, with the
    protobuf resource and scope they were encoded under."""

    def __init__(self, decode: Any) -> None:
        #: The row decoder's ``span(fields, resource)``, to build a template's SDK span.
        self.decode = decode
        self._templates: dict[tuple[Any, ...], tuple[PbSpan, Any, Any]] = {}

    def template(self, record: RecordSpan) -> tuple[PbSpan, Any, Any]:
        """The record's template span, and the protobuf resource and scope it was encoded under."""
        body, fields = record.body, record.fields
        kind_end = _STRINGS + fields[9] + fields[10] + fields[11]
        key = (record.resource, fields[9], fields[10], body[_STRINGS:kind_end], bool(fields[3]))
        found = self._templates.get(key)
        if found is None:
            request = encode_spans([record.readable(self.decode)])
            resource_spans = request.resource_spans[0]
            scope_spans = resource_spans.scope_spans[0]
            found = (scope_spans.spans[0], resource_spans.resource, scope_spans.scope)
            found = remember(self._templates, key, found, MAX_TEMPLATES)
        return found


def fill(span: PbSpan, template: PbSpan, record: RecordSpan) -> None:
    """``span``: the template's copy, with the record's ids, times, message id, retries
    and outcome."""
    body = record.body
    (high, low, span_id, parent_id, _, outcome, start, end, retries,
     system, queue, task, _) = record.fields  # fmt: skip
    span.CopyFrom(template)
    span.trace_id = (high << 64 | low).to_bytes(16, "big")
    span.span_id = span_id.to_bytes(8, "big")
    if parent_id:
        span.parent_span_id = parent_id.to_bytes(8, "big")
    span.start_time_unix_nano = start
    span.end_time_unix_nano = end
    attributes = span.attributes
    attributes[MESSAGE_ID_AT].value.string_value = body[_STRINGS + system + queue + task :].decode()
    attributes[RETRIES_AT].value.int_value = retries
    attributes[OUTCOME_AT].value.string_value = OUTCOMES[outcome]


class Batch:
    """One request, its spans grouped by resource, then scope, in order of first
    appearance, as ``encode_spans`` groups them; built in place, so each span is
    copied into it once."""

    def __init__(self) -> None:
        self.request = ExportTraceServiceRequest()
        self._resources: dict[Resource, tuple[Any, dict[Any, Any]]] = {}

    def spans(self, resource: Resource, scope: Any, envelope: tuple[Any, Any]) -> Any:
        """The repeated ``spans`` field of (resource, scope), made as the first of it comes."""
        found = self._resources.get(resource)
        if found is None:
            resource_spans = self.request.resource_spans.add()
            resource_spans.resource.CopyFrom(envelope[0])
            if resource.schema_url:
                resource_spans.schema_url = resource.schema_url
            found = self._resources[resource] = (resource_spans, {})
        resource_spans, scopes = found
        scope_spans = scopes.get(scope)
        if scope_spans is None:
            scope_spans = scopes[scope] = resource_spans.scope_spans.add()
            scope_spans.scope.CopyFrom(envelope[1])
            if scope is not None and scope.schema_url:
                scope_spans.schema_url = scope.schema_url
        return scope_spans.spans


class RecordEncoder:
    """Encodes a batch of SDK spans and run records as one OTLP request."""

    def __init__(self, decode: Any) -> None:
        self.templates = Templates(decode)

    def encode(self, spans: Sequence[Any]) -> ExportTraceServiceRequest:
        if not any(type(span) is RecordSpan for span in spans):
            return encode_spans(spans)
        batch = Batch()
        for span in spans:
            if type(span) is RecordSpan:
                template, resource, scope = self.templates.template(span)
                fill(
                    batch.spans(span.resource, span.scope, (resource, scope)).add(), template, span
                )
            else:
                request = encode_spans([span])
                resource_spans = request.resource_spans[0]
                scope_spans = resource_spans.scope_spans[0]
                envelope = (resource_spans.resource, scope_spans.scope)
                batch.spans(span.resource, span.instrumentation_scope or None, envelope).append(
                    scope_spans.spans[0]
                )
        return batch.request


def contained() -> bool:
    """Whether the installed OTLP/HTTP exporter is the release this encoder was written for."""
    return version("opentelemetry-exporter-otlp-proto-http").startswith(CONTAINED_RELEASE)


class RecordExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, encoding run records itself; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder: RecordEncoder | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """``OTLPSpanExporter.export`` of 1.45, with :class:`RecordEncoder`'s encoding."""
        if self.encoder is None:
            return super().export(spans)
        from opentelemetry.exporter.otlp.proto.http._common import (  # 1.45: see contained()
            RequestPayloadTooLargeError,
            _is_request_too_large,
        )

        if self._shutdown:
            logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized = self.encoder.encode(spans).SerializePartialToString()
            except Exception as error:
                logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(serialized, self._max_request_size):
                logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(serialized),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds "
                    f"max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            exported = self._client.export(serialized)
            if not exported.success:
                result.error = exported.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: exported.status_code}
                    if exported.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
