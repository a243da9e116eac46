"""The names of the record attributes and entry keys kansa writes or reads: one constant
each, named after the name (upper case, dots as underscores), each documented in
docs/VOCABULARY.md. ``tests/test_vocabulary.py`` checks both, and that no module spells one
as a bare string: use these.

Not here: the entry kinds (``records.model.KINDS``); the OpenTelemetry input names kansa
only parses (``gen_ai.prompt.N``, ``gen_ai.completion``, ``llm.*``: ``capture/otel.py``);
the entry's plain fields (``ts``, ``system``, ``outcome``...: ``records.model``); module,
logger and entry-point group names.
"""

from __future__ import annotations

# OTel GenAI names that are top-level keys of a ledger entry (UsageRecord fields)
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
ERROR_TYPE = "error.type"

# OTel GenAI content: sealed in the vault beside the log, never in the entry
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"

# OTel GenAI names kept among the entry's attributes (request settings, tool call ids)
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"

# set by the application (gateway headers, SDK metadata, JSON Lines), read by rule packs
KANSA_AI_DISCLOSURE = "kansa.ai_disclosure"
KANSA_OUTPUT_MODALITY = "kansa.output.modality"
KANSA_OUTPUT_LABEL_VISIBLE = "kansa.output.label.visible"
KANSA_OUTPUT_LABEL_MACHINE_READABLE = "kansa.output.label.machine_readable"
KANSA_OUTPUT_LABEL_PRODUCER = "kansa.output.label.producer"
KANSA_OUTPUT_LABEL_CONTENT_ID = "kansa.output.label.content_id"
KANSA_OUTPUT_LABEL_JURISDICTION = "kansa.output.label.jurisdiction"
KANSA_OUTPUT_LABEL_CARRIER = "kansa.output.label.carrier"
KANSA_OUTPUT_LABEL_ERROR = "kansa.output.label.error"
KANSA_OUTPUT_FILE = "kansa.output.file"
KANSA_OUTPUT_DEEPFAKE = "kansa.output.deepfake"
KANSA_OUTPUT_PUBLIC_INTEREST_TEXT = "kansa.output.public_interest_text"
KANSA_OUTPUT_HUMAN_REVIEW = "kansa.output.human_review"
KANSA_OUTPUT_UNLABELLED_ON_REQUEST = "kansa.output.unlabelled_on_request"
KANSA_DECISION_CONSEQUENTIAL = "kansa.decision.consequential"
KANSA_DECISION_NOTICE_GIVEN = "kansa.decision.notice_given"
KANSA_INCIDENT = "kansa.incident"

# inline policy decisions (policy/inline.py)
KANSA_POLICY_DECISION = "kansa.policy.decision"
KANSA_POLICY_FINDINGS = "kansa.policy.findings"
KANSA_POLICY_SNAPSHOT = "kansa.policy.snapshot"
KANSA_POLICY_APPROVAL = "kansa.policy.approval"
KANSA_POLICY_ERROR = "kansa.policy.error"

# the capture pipeline (capture/pipeline.py)
KANSA_PIPELINE_ERROR = "kansa.pipeline.error"
KANSA_PIPELINE_HELD = "kansa.pipeline.held"
KANSA_PIPELINE_REWRITTEN = "kansa.pipeline.rewritten"
KANSA_PIPELINE_REWRITE_NOT_APPLIED = "kansa.pipeline.rewrite_not_applied"
KANSA_PIPELINE_DELIVERED_SHA256 = "kansa.pipeline.delivered_sha256"

# the guard stage (guard/stage.py): prompt injection, jailbreaks, canaries
KANSA_GUARD_DECISION = "kansa.guard.decision"
KANSA_GUARD_OUTPUT_DECISION = "kansa.guard.output.decision"
KANSA_GUARD_FLAGGED = "kansa.guard.flagged"
KANSA_GUARD_OUTPUT_FLAGGED = "kansa.guard.output.flagged"
KANSA_GUARD_ACTION = "kansa.guard.action"
KANSA_GUARD_OUTPUT_ACTION = "kansa.guard.output.action"
KANSA_GUARD_FINDINGS = "kansa.guard.findings"
KANSA_GUARD_OUTPUT_FINDINGS = "kansa.guard.output.findings"
KANSA_GUARD_TECHNIQUES = "kansa.guard.techniques"
KANSA_GUARD_OUTPUT_TECHNIQUES = "kansa.guard.output.techniques"
KANSA_GUARD_CANARY_LEAK = "kansa.guard.canary_leak"
KANSA_GUARD_SCORE_USER = "kansa.guard.score.user"
KANSA_GUARD_SCORE_SYSTEM = "kansa.guard.score.system"
KANSA_GUARD_SCORE_TOOL = "kansa.guard.score.tool"
KANSA_GUARD_SCORE_DOCUMENT = "kansa.guard.score.document"
KANSA_GUARD_SCORE_OUTPUT = "kansa.guard.score.output"
KANSA_GUARD_THRESHOLD_USER = "kansa.guard.threshold.user"
KANSA_GUARD_THRESHOLD_SYSTEM = "kansa.guard.threshold.system"
KANSA_GUARD_THRESHOLD_TOOL = "kansa.guard.threshold.tool"
KANSA_GUARD_THRESHOLD_DOCUMENT = "kansa.guard.threshold.document"
KANSA_GUARD_THRESHOLD_OUTPUT = "kansa.guard.threshold.output"

# how a call was captured (gateway, SDK, OTLP intake)
KANSA_STREAM = "kansa.stream"
KANSA_GATEWAY_KEY = "kansa.gateway.key"
KANSA_GATEWAY_TEAM = "kansa.gateway.team"
KANSA_GATEWAY_UPSTREAM = "kansa.gateway.upstream"
KANSA_UPSTREAM_STATUS = "kansa.upstream.status"
KANSA_TTFB_MS = "kansa.ttfb_ms"
KANSA_USAGE_ESTIMATED = "kansa.usage.estimated"
KANSA_CONTENT_DROPPED = "kansa.content.dropped"
KANSA_CONTENT_ESCAPED = "kansa.content.escaped"
KANSA_PARENT_ID = "kansa.parent_id"
KANSA_STEP_NAME = "kansa.step.name"

# the OTLP intake (capture/otel.py); the status message is content, sealed
KANSA_OTEL_TRACE_ID = "kansa.otel.trace_id"
KANSA_OTEL_SPAN_ID = "kansa.otel.span_id"
KANSA_OTEL_PARENT_SPAN_ID = "kansa.otel.parent_span_id"
KANSA_OTEL_SPAN_NAME = "kansa.otel.span_name"
KANSA_OTEL_SCOPE = "kansa.otel.scope"
KANSA_OTEL_DIALECT = "kansa.otel.dialect"
KANSA_OTEL_EVENT_NAME = "kansa.otel.event_name"
KANSA_OTEL_SEVERITY = "kansa.otel.severity"
KANSA_OTEL_STATUS_MESSAGE = "kansa.otel.status_message"

# kansa's own records: events (kind kansa.event) and erasures (kind kansa.erasure)
KANSA_EVENT = "kansa.event"
KANSA_PACK_ID = "kansa.pack.id"
KANSA_PACK_VERSION = "kansa.pack.version"
KANSA_PACK_HASH = "kansa.pack.hash"
KANSA_PACK_SIGNER = "kansa.pack.signer"
KANSA_PACK_SIGNER_KEY = "kansa.pack.signer_key"
KANSA_EVIDENCE_PACK = "kansa.evidence.pack"
KANSA_EVIDENCE_OBLIGATION = "kansa.evidence.obligation"
KANSA_EVIDENCE_SHA256 = "kansa.evidence.sha256"
KANSA_EVIDENCE_TITLE = "kansa.evidence.title"
KANSA_EVIDENCE_FILENAME = "kansa.evidence.filename"
KANSA_EVIDENCE_BYTES = "kansa.evidence.bytes"
KANSA_ERASURE_SUBJECT = "kansa.erasure.subject"
KANSA_ERASURE_CONTENTS_DESTROYED = "kansa.erasure.contents_destroyed"
KANSA_ERASURE_LATE_CONTENTS = "kansa.erasure.late_contents"
KANSA_ERASURE_COMPLETED = "kansa.erasure.completed"
KANSA_ERASURE_REASON = "kansa.erasure.reason"
# kansa web's access records (kind kansa.event, kansa.event "web.access")
KANSA_ACCESS_ACTION = "kansa.access.action"
KANSA_ACCESS_ACTOR = "kansa.access.actor"
KANSA_ACCESS_ROLE = "kansa.access.role"
KANSA_ACCESS_VIA = "kansa.access.via"
KANSA_ACCESS_RECORD = "kansa.access.record"
KANSA_ACCESS_FORMAT = "kansa.access.format"
KANSA_ACCESS_FILTER = "kansa.access.filter"

# the agent guard (guard/agent.py): its decision on a call's tool calls
KANSA_AGENT_DECISION = "kansa.agent.decision"
KANSA_AGENT_RULES = "kansa.agent.rules"
KANSA_AGENT_TOOLS = "kansa.agent.tools"
KANSA_AGENT_ARGUMENTS_SHA256 = "kansa.agent.arguments_sha256"
KANSA_AGENT_TAINT_SOURCES = "kansa.agent.taint_sources"
KANSA_AGENT_TAINT_KINDS = "kansa.agent.taint_kinds"
KANSA_AGENT_EGRESS_DENIED = "kansa.agent.egress_denied"
KANSA_AGENT_HINTS = "kansa.agent.hints"
KANSA_AGENT_TECHNIQUE_IDS = "kansa.agent.technique_ids"
KANSA_AGENT_REASON = "kansa.agent.reason"
KANSA_AGENT_CONFIG = "kansa.agent.config"
KANSA_AGENT_APPROVALS = "kansa.agent.approvals"
KANSA_AGENT_UNTRUSTED = "kansa.agent.untrusted"

# a decision on a held call (policy/approvals.py): the attributes of its approval.* record
KANSA_APPROVAL_ID = "kansa.approval.id"
KANSA_APPROVAL_DECISION = "kansa.approval.decision"
KANSA_APPROVAL_BY = "kansa.approval.by"
KANSA_APPROVAL_REASON = "kansa.approval.reason"
KANSA_APPROVAL_DIGEST = "kansa.approval.digest"
KANSA_APPROVAL_ARGUMENTS_SHA256 = "kansa.approval.arguments_sha256"
KANSA_APPROVAL_EDITED_DIGEST = "kansa.approval.edited_digest"
KANSA_APPROVAL_HELD_RECORD = "kansa.approval.held_record"
KANSA_APPROVAL_OBLIGATIONS = "kansa.approval.obligations"

# the secrets and personal-data stage (guard/data_stage.py): per direction, out (the
# request) and in (the answer, before its tokens are restored); never a value
KANSA_GUARD_DATA_OUT_FINDINGS = "kansa.guard.data.out.findings"
KANSA_GUARD_DATA_OUT_KINDS = "kansa.guard.data.out.kinds"
KANSA_GUARD_DATA_OUT_ACTION = "kansa.guard.data.out.action"
KANSA_GUARD_DATA_OUT_HASHES = "kansa.guard.data.out.hashes"
KANSA_GUARD_DATA_OUT_TECHNIQUES = "kansa.guard.data.out.techniques"
KANSA_GUARD_DATA_IN_FINDINGS = "kansa.guard.data.in.findings"
KANSA_GUARD_DATA_IN_KINDS = "kansa.guard.data.in.kinds"
KANSA_GUARD_DATA_IN_ACTION = "kansa.guard.data.in.action"
KANSA_GUARD_DATA_IN_HASHES = "kansa.guard.data.in.hashes"
KANSA_GUARD_DATA_IN_TECHNIQUES = "kansa.guard.data.in.techniques"
KANSA_GUARD_DATA_PSEUDONYMISED = "kansa.guard.data.pseudonymised"
KANSA_GUARD_DATA_REDACTED = "kansa.guard.data.redacted"
KANSA_GUARD_DATA_RESTORED = "kansa.guard.data.restored"

# AI-text detection of a call's input (provenance/detect/stage.py): evidence, never a
# finding about a person
KANSA_DETECT_SCORE = "kansa.detect.score"
KANSA_DETECT_LANGUAGE = "kansa.detect.language"
KANSA_DETECT_VERDICT = "kansa.detect.verdict"
KANSA_DETECT_P_HUMAN = "kansa.detect.p_human"
KANSA_DETECT_ERROR = "kansa.detect.error"
