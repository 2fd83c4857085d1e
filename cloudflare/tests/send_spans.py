"""Sends spans full of planted personal data with the OpenTelemetry Python SDK's own
OTLP/HTTP exporter (PyPI opentelemetry-exporter-otlp-proto-http), the way any instrumented
program would, to the endpoint on the command line.

usage: send_spans.py ENDPOINT TOKEN none|gzip
Prints {"result": "SUCCESS"|"FAILURE", "needles": [...]} on stdout: the needles are what
must not arrive at the backend.
"""

import json
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

endpoint, token, compression = sys.argv[1], sys.argv[2], sys.argv[3]

PLANTED = {
    "email": "alice.smith@example.com",
    "phone": "+44 20 7946 0958",
    "ipv4": "203.0.113.77",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "bearer": "Bearer abcDEF123456ghiJKL",
    "openai_key": "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3",
    "github_token": "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "slack_token": "xoxb-1234567890-abcdefghijkl",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "card": "4111 1111 1111 1111",
    "home": "/home/alicesmith/secret-plans.md",
    "prompt": "please email my landlord about the rent",
}

# What must not reach the backend: each planted value, or the part of it that is personal
# (a bearer header keeps its scheme, a home path its shape).
NEEDLES = [
    "alice.smith", "7946", "203.0.113.77", "8a2e:370:7334", "abcDEF123456ghiJKL",
    "A1b2C3d4E5f6G7h8I9j0K1l2M3", "0123456789abcdefghijABCDEFGHIJ012345", "1234567890-abcdefghijkl",
    "AKIAIOSFODNN7EXAMPLE", "eyJzdWIiOiJhbGljZSJ9", "4111", "alicesmith", "landlord",
]

memory = InMemorySpanExporter()
provider = TracerProvider(
    resource=Resource.create(
        {"service.name": "pryx-test", "host.user.email": PLANTED["email"], "host.ip": PLANTED["ipv4"]}
    )
)
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("planted")

with tracer.start_as_current_span(f"GET /users/{PLANTED['email']}") as parent:
    parent.set_attribute("http.request.header.authorization", PLANTED["bearer"])
    parent.set_attribute("client.address", PLANTED["ipv6"])
    parent.set_attribute("gen_ai.prompt", PLANTED["prompt"])
    parent.set_attribute("gen_ai.tool.call.arguments", json.dumps({"card": PLANTED["card"]}))
    parent.set_attribute("keys", [PLANTED["openai_key"], PLANTED["github_token"], "harmless"])
    parent.add_event("login", {"session": PLANTED["jwt"], "phone": PLANTED["phone"]})
    parent.set_status(Status(StatusCode.ERROR, f"denied for {PLANTED['aws_key']}"))
    context = parent.get_span_context()
with tracer.start_as_current_span(
    "child", links=[Link(context, {"slack": PLANTED["slack_token"]})]
) as child:
    child.set_attribute("code.filepath", PLANTED["home"])
    child.set_attribute("gen_ai.request.model", "gpt-4o-mini")
    child.set_attribute("pryx.version", "1.2.3.4")

exporter = OTLPSpanExporter(
    endpoint=endpoint,
    headers={"authorization": f"Bearer {token}"},
    compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
    timeout=10,
)
result = exporter.export(memory.get_finished_spans())
print(json.dumps({"result": "SUCCESS" if result == SpanExportResult.SUCCESS else "FAILURE",
                  "needles": NEEDLES}))
