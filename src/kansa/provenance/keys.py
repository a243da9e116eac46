"""The organisation's provenance keys, in ``$KANSA_HOME/provenance/``.

    secret.key   32 random bytes (base64), mode 0600: the label key (ReservedCode1 and
                 the text wrapper's HMAC) and the fingerprint key are derived from it
                 with HMAC under distinct labels, so one file backs both
    c2pa.key     the C2PA signing key (PKCS#8 PEM, ES256 or Ed25519), mode 0600
    c2pa.pem     its self-signed certificate (safe to publish: verifiers add it as a
                 trust anchor)

Made by ``kansa provenance keygen``. The certificate carries what c2pa-rs asks of a
signing certificate (measured: without them it answers "the certificate is invalid"):
KeyUsage digitalSignature, an extended key usage (emailProtection), subject and
authority key identifiers; it is not a CA.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kansa.errors import KansaError

DIR = "provenance"
ALGORITHMS = ("es256", "ed25519")


@dataclass(frozen=True)
class ProvenanceKeys:
    secret: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    alg: str | None = None
    label_key: bytes = field(init=False, repr=False)
    fingerprint_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # derived once: labelling reads the label key on every answer
        object.__setattr__(self, "label_key", hmac.new(
            self.secret, b"kansa/provenance/label/v1", "sha256").digest())
        object.__setattr__(self, "fingerprint_key", hmac.new(
            self.secret, b"kansa/provenance/fingerprint/v1", "sha256").digest())

    @classmethod
    def load(cls, home: Path) -> ProvenanceKeys:
        d = home / DIR
        try:
            secret = base64.b64decode((d / "secret.key").read_text().strip(), validate=True)
        except FileNotFoundError:
            raise KansaError(f"no provenance keys in {d}: run 'kansa provenance keygen'"
                             ) from None
        except ValueError:
            raise KansaError(f"{d / 'secret.key'} is not base64") from None
        if len(secret) != 32:
            raise KansaError(f"{d / 'secret.key'} must hold 32 bytes")
        cert = d / "c2pa.pem"
        key = d / "c2pa.key"
        if cert.exists() and key.exists():
            c, k = cert.read_bytes(), key.read_bytes()
            return cls(secret, c, k, _alg_of(k))
        return cls(secret)


def _alg_of(key_pem: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    k = load_pem_private_key(key_pem, None)
    if isinstance(k, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1":
        return "es256"
    raise KansaError("the C2PA key must be an Ed25519 or P-256 (ES256) key")


def make_certificate(org: str, alg: str, *, now: datetime.datetime,
                     days: int = 3650) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a self-signed C2PA signing certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if alg not in ALGORITHMS:
        raise KansaError(f"algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if alg == "es256"
        else ed25519.Ed25519PrivateKey.generate())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{org} content credentials")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256() if alg == "es256" else None))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(home: Path, org: str, *, alg: str = "es256", now: datetime.datetime,
           force: bool = False) -> Path:
    """Create the provenance keys in ``home`` (see the module's description). An
    existing secret is kept unless ``force`` (a new one orphans every label and
    fingerprint made with the old one)."""
    d = home / DIR
    d.mkdir(parents=True, exist_ok=True)
    secret_path = d / "secret.key"
    if force:
        for n in ("secret.key", "c2pa.key", "c2pa.pem"):
            (d / n).unlink(missing_ok=True)
    elif (d / "c2pa.key").exists():
        raise KansaError(f"provenance keys already exist in {d} (--force replaces them, "
                         "orphaning every label and fingerprint made with them)")
    if not secret_path.exists():
        _write_secret(secret_path, base64.b64encode(secrets.token_bytes(32)) + b"\n")
    cert, key = make_certificate(org, alg, now=now)
    _write_secret(d / "c2pa.key", key)
    (d / "c2pa.pem").write_bytes(cert)
    return d
