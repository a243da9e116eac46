"""The guard layer (layer 6): detectors that read what goes into and comes out of a model
call, and the pipeline stages that act on what they find.

* :mod:`kansa.guard.findings`: :class:`Finding` (what every detector reports), the
  channels, the technique ids (MITRE ATLAS, OWASP LLM Top 10 2025), :class:`GuardError`.
* :mod:`kansa.guard.normalise`: Unicode normalisation, smuggling and encoded payloads.
* :mod:`kansa.guard.injection`: prompt-injection and jailbreak detection (rules + a small
  shipped model, thresholds per channel).
* :mod:`kansa.guard.canary`: canary tokens for system prompts.
* :mod:`kansa.guard.stage`: :class:`GuardStage`, the capture pipeline stage.

Importing this package loads nothing heavy: each detector loads its model on first use.
"""
