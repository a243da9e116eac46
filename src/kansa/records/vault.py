"""Moved to :mod:`kansa.vault`: the vault stores keys and content, so it sits beside
:mod:`kansa.api`, above the ledger's storage, while ``records/`` stays the pure record
model. This old import path re-exports it."""

from kansa.vault import ANONYMOUS as ANONYMOUS
from kansa.vault import EraseResult as EraseResult
from kansa.vault import SubjectKey as SubjectKey
from kansa.vault import Vault as Vault
from kansa.vault import commitment as commitment
