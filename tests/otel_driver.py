"""An application instrumented with a real OpenTelemetry GenAI instrumentation package,
run as its own process by tests/test_otel_interop.py (instrumentors patch the openai
package globally and read their settings from the environment once: one process each).

    python otel_driver.py {openai-v2|openinference|openllmetry} OTLP_URL UPSTREAM_URL

It makes one chat completion and one streamed chat completion with the real ``openai``
client against UPSTREAM_URL (the stand-in), exports spans (and, for openai-v2, logs)
with the real OTLP/HTTP exporters to OTLP_URL, and prints what the client received as
JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

MESSAGES: list[Any] = [{"role": "system", "content": "You are terse."},
                       {"role": "user", "content": "[INST] where is order A-1042 [/INST]"}]


def main(which: str, otlp: str, upstream: str) -> None:
    resource = Resource.create({"service.name": "support-bot"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=30)))
    logger_provider: Any = None
    if which == "openai-v2":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp}/v1/logs", timeout=30)))
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider,
                                        logger_provider=logger_provider)
    elif which == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIInstrumentor

        OIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif which == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TLInstrumentor

        TLInstrumentor().instrument(tracer_provider=tracer_provider)
    else:
        raise SystemExit(f"unknown instrumentation {which!r}")

    client = openai.OpenAI(base_url=f"{upstream}/v1", api_key="sk-test", max_retries=0)
    plain = client.chat.completions.create(model="alias-gpt-4o", messages=MESSAGES,
                                           user="end-user-42", temperature=0.2)
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, user="end-user-42", stream=True,
        stream_options={"include_usage": True}))
    tracer_provider.force_flush(30_000)
    tracer_provider.shutdown()
    if logger_provider is not None:
        logger_provider.force_flush(30_000)
        logger_provider.shutdown()
    assert plain.usage is not None and chunks[-1].usage is not None
    print(json.dumps({
        "plain": {"model": plain.model, "id": plain.id,
                  "input_tokens": plain.usage.prompt_tokens,
                  "output_tokens": plain.usage.completion_tokens,
                  "text": plain.choices[0].message.content},
        "stream": {"model": chunks[0].model,
                   "input_tokens": chunks[-1].usage.prompt_tokens,
                   "output_tokens": chunks[-1].usage.completion_tokens},
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
