"""Provenance (layer 6): labels, traceback and detection of AI-generated content.

``kansa.provenance.detect``: zero-shot scoring of text we receive with small local
models (the optional extra ``kansa[detect]``). See docs/design/detection.md.
"""
