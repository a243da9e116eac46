"""Record model calls made through the official SDKs, and agent steps and tool calls.

    import kansa, openai
    client = kansa.wrap(openai.OpenAI())            # or anthropic.Anthropic(), Async...
    with kansa.context(subject="user-7", conversation_id="c-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

    @kansa.tool("search")                           # kind "tool.call", arguments committed
    def search(query: str) -> list[str]: ...

    with kansa.step("plan", agent="support-agent"):  # kind "agent.step"
        ...

How a client is wrapped: ``wrap`` returns a copy of the client (``client.copy()``, same
class, same HTTP connection pool) on which four methods of the SDKs' shared base client
are overridden for that instance only: ``request`` (one call, retries included, so one
record per call), ``_build_request`` (the JSON body as finally sent),
``_process_response_data`` (the wire JSON of a response and of every streamed event,
before the SDK turns it into objects) and ``copy``/``with_options`` (so derived clients
stay wrapped). Nothing is patched globally; the SDKs are never imported by kansa, only
recognised by their base classes' names. Results, streams and exceptions are the SDK's
own objects, unchanged: a stream keeps its class and still iterates lazily, chunk by
chunk (its iterator and ``close`` pass through kansa to see how it ends).

Records are built by :func:`kansa.capture.shapes.to_record` from the request body as
sent and the response JSON as received, which is what the gateway sees on the wire,
so the SDK and the gateway write the same records for the same exchange.

Policy: ``wrap(client, policy="policy.yaml")`` (a file, a
:class:`kansa.policy.inline.PolicyHandle` or a snapshot) enforces rule packs as the
gateway does. Before a call, obligations in ``block`` / ``require_approval`` mode are
judged on the entry the call would make; a failure records the call (outcome
``blocked``) and raises :class:`kansa.PolicyBlocked` instead of calling the model (for
``require_approval`` it carries an approval id: once ``kansa approvals approve ID`` has
run, repeat the same call with ``extra_headers={"x-kansa-approval": ID}``; it passes
once). Every record carries the decision (``kansa.policy.decision``, ``.snapshot``,
``.findings``). A call reads the handle's current snapshot once, at its start; call
``handle.reload()`` to swap in a changed file.

Durability: with ``durable=True`` (the default) a call returns only once its record is
durable in the ledger (concurrent calls share one group commit); if the record cannot be
written the call raises the ledger's error instead of returning an unrecorded response.
With ``durable=False`` the calling thread only takes a snapshot of the call; a
background thread builds, seals and queues the record, and it becomes durable shortly
after (call :func:`flush` to wait for every such record, e.g. before closing the
ledger; the process also flushes at exit). Failures are then logged on the
``kansa.sdk`` logger, never raised.
"""

from __future__ import annotations

# The SDK surface is split by concept; this module is its public face (``kansa.wrap``,
# ``kansa.tool``... are imported from here) and names the parts:
#   sdk_scopes   kansa.context metadata, the enclosing step, last_record_id
#   sdk_writer   the default ledger, the sink, the background writer, flush
#   sdk_call     one model call in flight, how its failures are classified
#   sdk_streams  streamed answers and with_streaming_response bodies
#   sdk_patch    kansa.wrap: the overridden client methods, the pipeline around a call
#   sdk_refusal  PolicyBlocked for a refused or held call
#   sdk_tools    kansa.step and kansa.tool
# Re-exported with "as" (the internals too: bench/sdk.py installs a wrapper by hand).
from kansa.capture.sdk_call import _Call as _Call
from kansa.capture.sdk_patch import _Config as _Config
from kansa.capture.sdk_patch import _install as _install
from kansa.capture.sdk_patch import wrap as wrap
from kansa.capture.sdk_scopes import context as context
from kansa.capture.sdk_scopes import last_record_id as last_record_id
from kansa.capture.sdk_tools import step as step
from kansa.capture.sdk_tools import tool as tool
from kansa.capture.sdk_writer import _BACKGROUND as _BACKGROUND
from kansa.capture.sdk_writer import _Sink as _Sink
from kansa.capture.sdk_writer import flush as flush
from kansa.capture.sdk_writer import set_default_ledger as set_default_ledger

__all__ = [
    "context",
    "flush",
    "last_record_id",
    "set_default_ledger",
    "step",
    "tool",
    "wrap",
]
