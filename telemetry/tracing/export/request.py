"""Span datagrams (``telemetry.tracing.export.rows``) gathered into one OTLP/HTTP request body.

    request = OtlpRequest()
    request.add(datagram)     # SpanDecodeError when malformed, and then nothing of it is kept
    body = request.take()     # a serialized ExportTraceServiceRequest; the request starts over

Why not only the SDK's encoder: rebuilding SDK spans from rows and encoding them
with ``encode_spans`` cost the export process about 90 us per span, and on a
host whose cores the tasks keep busy that time comes out of the tasks. Here:

* a span that a pool process already encoded (an encoded datagram, what every
  plain ``run`` span is) is checked by parsing it, then kept as it came;
* a plain span that came as a JSON row is joined from pieces
  (``telemetry.tracing.export.pieces``);
* any other span is rebuilt and encoded by the SDK's own ``encode_spans``, one
  span at a time, so that a span the SDK cannot encode is refused on arrival
  instead of failing a whole batch.

Spans are grouped under their resource and scope, and the body is framed from
bytes without parsing any span again. The tests hold all three paths to the
SDK's encoding of the same spans.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource

from telemetry.bounded_cache import remember
from telemetry.tracing.export.encoded import ENCODED, EncodedSpans
from telemetry.tracing.export.pieces import (
    SPAN,
    Envelope,
    SpanPieces,
    envelope_parts,
    framed,
    request_body,
)
from telemetry.tracing.export.rows import (
    MAX_CACHED,
    Row,
    SpanDecoder,
    checked_row,
    refused_as_decode_errors,
    split,
)

#: A JSON row's resource line, scope name and scope version.
Origin = tuple[bytes, str, str | None]


class OtlpRequest:
    """Spans on their way to one ExportTraceServiceRequest; see the module docstring."""

    def __init__(self) -> None:
        self._decoder = SpanDecoder()
        self._pieces = SpanPieces()
        self._envelopes: dict[Origin, Envelope] = {}
        self._encoded_spans = EncodedSpans()
        self._framed: dict[Envelope, list[bytes]] = {}
        self._encoded: list[bytes] = []
        #: Spans and datagram bytes added since the last take.
        self.spans = 0
        self.size = 0

    def add(self, datagram: bytes) -> None:
        if datagram[:1] == ENCODED:
            self._add_encoded(datagram)
            return
        plain: list[tuple[Envelope, bytes]] = []
        encoded: list[bytes] = []
        with refused_as_decode_errors():
            line, rows = split(datagram)
            resource = self._decoder.resource(line)
            for fields in map(checked_row, rows):
                span = self._pieces.plain(fields)
                if span is None:
                    encoded.append(self._sdk_span(fields, resource))
                else:
                    # a scope the SDK cannot encode is refused here
                    plain.append((self._envelope((line, str(fields[-2]), fields[-1])), span))
        for envelope, span in plain:
            self._framed.setdefault(envelope, []).append(framed(SPAN, span))
        self._encoded.extend(encoded)
        self.spans += len(rows)
        self.size += len(datagram)

    def take(self) -> bytes:
        """The body for everything added since the last take."""
        body = request_body(self._framed) + b"".join(self._encoded)
        self._framed, self._encoded, self.spans, self.size = {}, [], 0, 0
        return body

    def _add_encoded(self, datagram: bytes) -> None:
        envelope, span = self._encoded_spans.checked(datagram)
        self._framed.setdefault(envelope, []).append(framed(SPAN, span))
        self.spans += 1
        self.size += len(datagram)

    def _sdk_span(self, fields: Row, resource: Resource) -> bytes:
        request = encode_spans([self._decoder.span(fields, resource)])
        encoded: bytes = request.SerializePartialToString()
        return encoded

    def _envelope(self, origin: Origin) -> Envelope:
        """The envelope of a JSON row's resource line and scope."""
        found = self._envelopes.get(origin)
        if found is None:
            line, scope_name, scope_version = origin
            parts = envelope_parts(
                self._decoder.resource(line), self._decoder.scope(scope_name, scope_version)
            )
            found = remember(self._envelopes, origin, parts, MAX_CACHED)
        return found
