"""Provenance (layer 6): labels on what our models produce (the ``provenance`` capture
stage: visible disclosures, GB 45438 AIGC metadata, C2PA manifests on images), traceback
from a text or image to the record behind it (marks, a keyed exact hash, a keyed
MinHash/LSH fingerprint index) with a receipt, and detection of AI-generated text we
receive (``kansa.provenance.detect``: zero-shot scoring with small local models, the
optional extra ``kansa[detect]``). See docs/design/provenance.md and
docs/design/detection.md."""
