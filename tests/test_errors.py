"""One exception tree: every error kansa defines derives from KansaError and is drawn in
the docstring of kansa.errors; the same bad input raises the same class everywhere."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import kansa
from kansa import errors


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_every_error_is_in_the_tree_of_the_docstring() -> None:
    for info in pkgutil.walk_packages(kansa.__path__, "kansa."):
        if info.name not in ("kansa.__main__",):
            importlib.import_module(info.name)
    doc = errors.__doc__ or ""
    missing = sorted(f"{c.__module__}.{c.__qualname__}"
                     for c in _all_subclasses(errors.KansaError)
                     if c.__module__.startswith("kansa") and c.__name__ not in doc)
    assert not missing, f"add these to the tree in kansa/errors.py's docstring: {missing}"


def test_policy_and_report_errors_live_in_errors() -> None:
    assert issubclass(errors.PolicyBlocked, errors.PolicyError)
    assert issubclass(errors.PolicyError, errors.KansaError)
    assert issubclass(errors.ReportLanguageError, errors.ReportError)
    assert kansa.PolicyBlocked is errors.PolicyBlocked
    assert kansa.ReportError is errors.ReportError
    from kansa.report.drafting import ReportDraftError
    from kansa.report.evidence import NoReplayError
    from kansa.report.evidence_supply import EvidenceError
    from kansa.report.render_pdf import ReportFontError
    for cls in (ReportDraftError, NoReplayError, EvidenceError, ReportFontError):
        assert issubclass(cls, errors.ReportError), cls


def test_a_bad_report_language_is_one_error_everywhere() -> None:
    from kansa.report import design, haip, i18n, incidents

    for module in (design, haip, incidents, i18n):
        with pytest.raises(errors.ReportLanguageError, match="'fr'"):
            module.check_lang("fr")  # type: ignore[attr-defined]


def test_every_report_string_table_is_one_mechanism_with_every_language() -> None:
    """design, HAIP and incident drafts look their text up like i18n.t: a bad language is
    the same error, and a table missing a translation cannot even be made."""
    import pytest

    from kansa.errors import ReportLanguageError
    from kansa.report import design_strings, haip, incidents
    from kansa.report.i18n import Strings, t

    for lookup in (design_strings.STRINGS, haip._t, incidents._t):
        assert isinstance(lookup, Strings)
        with pytest.raises(ReportLanguageError):
            lookup("fr", "anything")
    with pytest.raises(ReportLanguageError):
        t("fr", "anything")
    with pytest.raises(ValueError, match="keys not in every language: only.en"):
        Strings({"en": {"a": "A", "only.en": "x"}, "ja": {"a": "あ"}}, "test")
    with pytest.raises(ValueError, match="string tables for"):
        Strings({"en": {"a": "A"}}, "test")
    assert Strings({"en": {"a": "{n} A"}, "ja": {"a": "{n} あ"}}, "t")("ja", "a", n=2) == "2 あ"
