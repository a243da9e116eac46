"""The OpenAPI 3.1 description of ``kansa gateway``'s routes (served at ``/openapi.json``).

Request schemas describe what the gateway itself checks (a JSON object, usually with a
``model``); everything else passes through to the upstream unchanged, so the schemas stay
open (``additionalProperties``). Every API route may answer with the gateway's own errors
(400, 401, 404, 413, 502, 503, 504) or pass the upstream's status through.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "description": "OpenAI-style error (Anthropic-style on /v1/messages)",
    "properties": {"error": {"type": "object"}, "type": {"type": "string"}},
}

_MESSAGES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "developer"]},
            "content": {"type": "string"},
        },
        "required": ["role", "content"],
    },
}


_HEADERS = [
    {"name": "x-kansa-subject", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": "the person the content is about (stored "
     "only as a pseudonym; erasable with `kansa erase`)"},
    {"name": "x-kansa-ai-disclosure", "in": "header", "required": False,
     "schema": {"type": "string", "enum": ["true", "false"]},
     "description": "whether the person was told they are interacting with AI "
     "(record attribute kansa.ai_disclosure, read by rule-pack checks)"},
    {"name": "x-kansa-approval", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": "a granted approval id (single use)"},
]


def _post(summary: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": _HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": props, "required": required,
                    "additionalProperties": True,
                }}},
            },
            "responses": _responses(),
        }
    }


def _responses() -> dict[str, Any]:
    # the gateway's own errors are JSON; the same statuses passed through from an upstream
    # carry whatever content type the upstream chose
    err = {"content": {"application/json": {"schema": _ERROR}, "*/*": {"schema": {}}}}
    ok = {
        "description": "the upstream's answer, passed through (a stream is text/event-stream)",
        "headers": {"x-kansa-record": {"schema": {"type": "string"},
                                       "description": "the id of this request's record"}},
        "content": {"application/json": {"schema": {"type": "object"}},
                    "text/event-stream": {"schema": {"type": "string"}}},
    }
    return {
        "200": ok,
        "400": {"description": "malformed JSON or not a JSON object (invalid_json, "
                "invalid_body), or a lone UTF-16 surrogate in the body or an x-kansa-attr-* "
                "header (invalid_unicode; never sent upstream); recorded", **err},
        "401": {"description": "missing or invalid gateway key (recorded)", **err},
        "403": {"description": "refused by an obligation in block mode (policy_blocked), or "
                "an approval that is unknown, used or for another request "
                "(approval_invalid); recorded with outcome blocked", **err},
        "404": {"description": "no upstream serves this model (recorded)", **err},
        "413": {"description": "request body over the size limit (recorded)", **err},
        "428": {"description": "an obligation in require_approval mode failed: the body and "
                "x-kansa-approval-id name an approval to grant with `kansa approvals "
                "approve ID` (approval_required), or it is not granted yet "
                "(approval_pending); retry with x-kansa-approval: ID", **err},
        "502": {"description": "upstream unreachable or reset (upstream_unreachable), or its "
                "answer over max_response_bytes once decompressed "
                "(upstream_response_too_large); recorded", **err},
        "503": {"description": "the ledger store is unavailable: failing closed", **err},
        "504": {"description": "upstream timed out (recorded)", **err},
        "default": {"description": "the upstream's status and body, passed through",
                    "content": {"*/*": {"schema": {}}}},
    }


def openapi_document() -> dict[str, Any]:
    stream = {"type": "boolean"}
    model = {"type": "string", "minLength": 1}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kansa gateway",
            "version": "1",
            "description": "OpenAI-compatible proxy (and Anthropic Messages passthrough) that "
                           "records every request in a kansa ledger. Each response carries "
                           "x-kansa-record naming its record.",
        },
        "components": {"securitySchemes": {
            "gatewayKey": {"type": "http", "scheme": "bearer",
                           "description": "a gateway key (ksk_...), when the gateway requires one"},
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "the admin token (--admin-token-env)"},
        }},
        "security": [{}, {"gatewayKey": []}],
        "paths": {
            "/v1/chat/completions": _post(
                "Chat completion (OpenAI)",
                {"model": model, "messages": _MESSAGES, "stream": stream,
                 "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                 "max_tokens": {"type": "integer", "minimum": 1},
                 "user": {"type": "string"}},
                ["model", "messages"]),
            "/v1/completions": _post(
                "Text completion (OpenAI, legacy)",
                {"model": model, "prompt": {"type": "string"}, "stream": stream,
                 "max_tokens": {"type": "integer", "minimum": 1}},
                ["model", "prompt"]),
            "/v1/embeddings": _post(
                "Embeddings (OpenAI)",
                {"model": model, "input": {"oneOf": [
                    {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
                ["model", "input"]),
            "/v1/responses": _post(
                "Responses API (OpenAI)",
                {"model": model, "input": {"type": "string"}, "instructions": {"type": "string"},
                 "stream": stream},
                ["model", "input"]),
            "/v1/messages": _post(
                "Messages (Anthropic), passed through",
                {"model": model, "messages": _MESSAGES, "max_tokens": {"type": "integer",
                                                                       "minimum": 1},
                 "system": {"type": "string"}, "stream": stream},
                ["model", "messages", "max_tokens"]),
            "/-/kansa/policy": {"get": {
                "summary": "The policy snapshot in force (admin token required)",
                "security": [{"adminToken": []}],
                "responses": {"200": {"description": "snapshot hash, packs, modes, reloads",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}},
                              "401": {"description": "no or wrong admin token"},
                              "403": {"description": "admin endpoints disabled"},
                              "404": {"description": "no policy enforced"}}}},
            "/-/kansa/policy/reload": {"post": {
                "summary": "Reload the policy file atomically (admin token required)",
                "security": [{"adminToken": []}],
                "responses": {"200": {"description": "the new snapshot is in force",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}},
                              "401": {"description": "no or wrong admin token"},
                              "403": {"description": "admin endpoints disabled"},
                              "404": {"description": "no policy enforced"},
                              "422": {"description": "the file is broken (file:line); the "
                                      "old snapshot stays in force",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
            "/v1/models": {"get": {"summary": "List models (the default upstream's)",
                                   "responses": _responses()}},
            "/v1/models/{model}": {"get": {
                "summary": "Retrieve a model (routed by its name)",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1,
                                           "pattern": "^[A-Za-z0-9._:-]+$"}}],
                "responses": _responses(),
            }},
        },
    }
