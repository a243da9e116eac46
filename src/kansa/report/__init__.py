"""Evidence reports, security design documents, the OECD HAIP draft and incident drafts
(OSCAL output is in :mod:`kansa.policy.oscal`).

Builders turn records, findings and configuration into a :class:`kansa.report.doc.Document`
(sections of paragraphs, tables, charts); renderers turn a Document into HTML or PDF.
"""
