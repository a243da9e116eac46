"""The data guard runs offline: nothing it loads fetches anything at run time (no suffix
list as tldextract would, no model download as spaCy would).

Proved twice, in a fresh interpreter: (1) in a new network namespace with no interfaces
but loopback (``unshare -rn``: an unprivileged user namespace), where any fetch fails;
the child first checks that it really cannot reach the outside; (2) with every
``socket.connect`` / ``getaddrinfo`` / ``create_connection`` made to raise and counted,
so even a library that would swallow the failure and fall back (tldextract does) is
caught: the count must be zero. (2) also runs where unshare is not permitted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(r"""
    import socket, sys, json, tempfile
    attempts = []
    def refuse(*a, **k):
        attempts.append(repr(a)[:80])
        raise OSError("network disabled by the offline test")
    if sys.argv[1] == "netns":
        s = socket.socket()
        s.settimeout(2)
        rc = s.connect_ex(("1.1.1.1", 443))
        assert rc != 0, "the namespace still reaches the network"
        try:
            socket.getaddrinfo("pypi.org", 443)
            raise AssertionError("DNS resolves inside the namespace")
        except OSError:
            pass
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse

    import kansa
    from kansa.guard.secrets import scan_secrets
    from kansa.guard.pii import scan_pii
    from kansa.guard.pseudonym import pseudonymise, restore, VaultKeyring, PseudonymStore
    from kansa.guard.data_stage import DataGuardStage, DataPolicy
    from kansa.ledger.note import Signer

    text = ("mail taro@example.co.jp, tel 090-1234-5678, マイナンバー 123456789018, "
            "〒100-0001 東京都千代田区丸の内1-2-3 山田太郎様 key sk-proj-" + "aB3" * 16)
    kinds = sorted({f.kind for f in scan_secrets(text) + scan_pii(text)})
    with tempfile.TemporaryDirectory() as d:
        led = kansa.Ledger.open(f"sqlite:///{d}/l.db", signer=Signer.generate("t/offline"),
                                master_key=b"m" * 32)
        kr = VaultKeyring(led.vault)
        body = {"messages": [{"role": "user", "content": text}]}
        out, m, _ = pseudonymise(body, kr, "alice")
        PseudonymStore(kr).save(m)
        back, n = restore(out, PseudonymStore(kr).load("alice"))
        assert back == body, "round trip"
        led.close()
    print(json.dumps({"kinds": kinds, "restored": n, "attempts": attempts,
                      "heavy": sorted(k for k in sys.modules if k.split(".")[0] in (
                          "tldextract", "spacy", "presidio_analyzer", "requests"))}))
""")


def _run(argv: list[str]) -> dict[str, object]:
    import json

    r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def _check(got: dict[str, object]) -> None:
    assert got["attempts"] == []
    assert got["heavy"] == []
    assert got["restored"] == 7  # one token per value found
    assert got["kinds"] == ["address_jp", "email", "my_number", "openai_key", "person",
                            "phone_jp", "postcode_jp"]


def test_offline_with_every_socket_call_refused_and_counted() -> None:
    _check(_run([sys.executable, "-c", CHILD, "patched"]))


def test_offline_in_a_network_namespace_without_interfaces() -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed for this proof"
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True)
    if probe.returncode != 0:  # user namespaces disabled here: the patched run stands
        assert b"Operation not permitted" in probe.stderr or probe.stderr, probe
        test_offline_with_every_socket_call_refused_and_counted()
        return
    _check(_run([unshare, "-rn", sys.executable, "-c", CHILD, "netns"]))
