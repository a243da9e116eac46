"""Record attribute names: constants in ``kansa.records.attributes``, documented in
docs/VOCABULARY.md, and never spelled as bare strings elsewhere in kansa.

(a) every constant's value is in a table of docs/VOCABULARY.md (its first column), and
    its name is the value upper-cased with dots as underscores;
(b) an AST walk over src/kansa finds every string (and quoted name in a bytes literal)
    that looks like an attribute, ``gen_ai.*`` or ``kansa.*``, outside attributes.py, and
    fails unless it is a known non-attribute: an entry kind, a kansa module or logger name,
    or one of ``NOT_ATTRIBUTES`` below (each with its reason). A new attribute written as
    a bare string fails here: add a constant, and a row to VOCABULARY.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from kansa.records import attributes
from kansa.records.model import KINDS

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "kansa"
VOCABULARY = ROOT / "docs" / "VOCABULARY.md"

LOOKS_LIKE_ATTRIBUTE = re.compile(r"^(gen_ai|kansa)\.[a-z0-9_.]+$")
QUOTED_IN_BYTES = re.compile(rb'"((?:gen_ai|kansa)\.[a-z0-9_.]+)"')

# Files still being rewritten elsewhere: skipped by (b) until they are converted to the
# constants. This set must shrink to empty (policy/judging.py and report/usage_scan.py
# came out of policy/engine.py and report/design.py).
PENDING: set[str] = set()

# Strings that look like attributes and are not, with why
NOT_ATTRIBUTES = {
    # OpenTelemetry input names the OTLP intake only parses (capture/otel.py)
    "gen_ai.prompt": "OpenLLMetry's prompt attribute (becomes content 'input')",
    "gen_ai.completion": "OpenLLMetry's completion attribute (becomes content 'output')",
    "gen_ai.prompt.": "prefix of OpenLLMetry's indexed prompt attributes",
    "gen_ai.completion.": "prefix of OpenLLMetry's indexed completion attributes",
    "gen_ai.content.prompt": "a legacy OTel span event carrying the prompt",
    "gen_ai.content.completion": "a legacy OTel span event carrying the completion",
    "gen_ai.system": "the older OTel name of gen_ai.provider.name",
    "gen_ai.usage.prompt_tokens": "the older OTel name of gen_ai.usage.input_tokens",
    "gen_ai.usage.completion_tokens": "the older OTel name of gen_ai.usage.output_tokens",
    "gen_ai.user": "OpenLLMetry's end-user id: recorded as the (pseudonymised) subject",
    "gen_ai.request.stream": "a streaming flag some instrumentations set: kansa.stream",
    "gen_ai.client.inference.operation.details": "the OTel GenAI details log event name",
    # prefixes of attribute families, not attributes
    "gen_ai.usage.": "prefix naming a token count field in a record error",
    "kansa.policy.": "prefix of attributes only kansa sets (gateway refuses them)",
    "kansa.gateway.": "prefix of attributes only kansa sets (gateway refuses them)",
    "kansa.content.": "prefix of attributes only kansa sets (gateway refuses them)",
    "kansa.usage.": "prefix of attributes only kansa sets (gateway refuses them)",
    "kansa.pipeline.": "prefix of attributes only kansa sets (gateway refuses them)",
    # names of other things
    "kansa.stages": "the entry-point group of third-party capture stages",
}


def constants() -> dict[str, str]:
    return {name: value for name, value in vars(attributes).items()
            if name.isupper() and isinstance(value, str)}


def documented() -> set[str]:
    """The names in the first column of every table of VOCABULARY.md."""
    names: set[str] = set()
    for line in VOCABULARY.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        first = re.split(r"(?<!\\)\|", line)[1]
        names.update(re.findall(r"`([^`]+)`", first))
    return names


def module_names() -> set[str]:
    names = set()
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


def logger_names(tree: ast.AST) -> set[int]:
    """ids of the string nodes passed to ``logging.getLogger``."""
    return {id(node.args[0]) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and node.args
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger"}


def attribute_like(tree: ast.AST) -> Iterator[tuple[int, str]]:
    loggers = logger_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in loggers:
            continue
        if isinstance(node.value, str) and LOOKS_LIKE_ATTRIBUTE.match(node.value):
            yield node.lineno, node.value
        elif isinstance(node.value, bytes):
            for m in QUOTED_IN_BYTES.finditer(node.value):
                yield node.lineno, m.group(1).decode()


def bare_attributes(files: list[Path]) -> list[str]:
    allowed = set(KINDS) | module_names() | set(NOT_ATTRIBUTES)
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, value in attribute_like(tree):
            if value not in allowed:
                found.append(f"{path.relative_to(PKG)}:{line}: {value!r}")
    return found


def source_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p != Path(attributes.__file__))


def test_every_constant_is_documented() -> None:
    missing = {n: v for n, v in constants().items() if v not in documented()}
    assert not missing, f"document these in docs/VOCABULARY.md (type, set by, meaning): {missing}"


def test_constants_are_named_after_their_attribute() -> None:
    values = constants()
    assert len(values) > 50
    for name, value in values.items():
        assert name == value.upper().replace(".", "_"), (name, value)
    assert len(set(values.values())) == len(values), "one constant per attribute"


def test_no_attribute_is_a_bare_string() -> None:
    files = [p for p in source_files() if str(p.relative_to(PKG)) not in PENDING]
    found = bare_attributes(files)
    assert not found, ("use the constants of kansa.records.attributes (and document new "
                       "names in docs/VOCABULARY.md):\n" + "\n".join(found))


def test_the_exceptions_are_current() -> None:
    missing = [f for f in PENDING if not (PKG / f).exists()]
    assert not missing, f"PENDING names files that no longer exist: {missing}"
    seen = {value for path in source_files()
            for _line, value in attribute_like(ast.parse(path.read_text(encoding="utf-8")))}
    stale = set(NOT_ATTRIBUTES) - seen
    assert not stale, f"NOT_ATTRIBUTES lists strings no module has: {stale}"
    assert not set(NOT_ATTRIBUTES) & set(constants().values())


def test_the_walk_finds_what_it_must() -> None:
    """The checker itself: strings, f-string parts, bytes patterns; loggers let through."""
    tree = ast.parse('import logging\n'
                     'x = {"kansa.new_thing": 1}\n'
                     'y = f"{e.get(\'gen_ai.usage.input_tokens\', 0)}"\n'
                     'z = b\'"kansa.incident"\'\n'
                     'log = logging.getLogger("kansa.something")\n'
                     'k = "gen_ai.call"\n')
    assert sorted(attribute_like(tree)) == [
        (2, "kansa.new_thing"), (3, "gen_ai.usage.input_tokens"), (4, "kansa.incident"),
        (6, "gen_ai.call")]
    assert "gen_ai.call" in KINDS
    assert {"kansa.incident", "gen_ai.request.model", "kansa.policy.decision"} <= documented()
    assert "supplied" not in documented()  # only the first column counts
