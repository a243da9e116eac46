"""Provenance (layer 6): labels on what our models produce (the ``provenance`` capture
stage: visible disclosures, GB 45438 AIGC metadata, C2PA manifests on images) and
traceback from a text or image to the record behind it (marks, a keyed exact hash, a
keyed MinHash/LSH fingerprint index), with a receipt. See docs/design/provenance.md."""
