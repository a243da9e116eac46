"""Evidence reports, OSCAL output, security design documents and incident drafts.

Builders turn records, findings and configuration into a :class:`kansa.report.doc.Document`
(sections of paragraphs, tables, charts); renderers turn a Document into HTML or PDF.
"""
