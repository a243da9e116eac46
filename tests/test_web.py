"""kansa web over HTTP (Starlette's test client, real stores): keyset pages and filters,
bad input, login, roles, CSRF, the access records, exports, approvals, languages and
security headers. The browser tests are in test_web_browser.py."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.cli_harness import run as run_cli

import kansa
from kansa._time import to_us
from kansa.policy.approvals import Approvals
from kansa.records.model import parse_ts
from kansa.web.app import create_app
from kansa.web.auth import (
    Access,
    AuthError,
    add_token,
    load_token_digests,
    load_token_file,
    parse_role_map,
    token_digest,
)

NOW = 1764892800.0  # 2025-12-05T00:00:00Z: the app's clock (sessions, the chart's days)
TOKENS = {r: r[0] * 24 for r in ("viewer", "auditor", "officer", "admin")}
SECRET_TEXT = "秘密の内容 secret-content-7"


def _records(n: int) -> Iterator[dict[str, object]]:
    for i in range(n):
        yield {"ts": f"2025-11-{1 + i % 28:02d}T09:{i % 60:02d}:00Z",
               "system": "support-bot" if i % 2 else "hr-bot", "subject": f"user-{i % 5}",
               "gen_ai.request.model": "gpt-4o-mini" if i % 3 else "claude-x",
               "gen_ai.provider.name": "openai", "outcome": "error" if i % 7 == 0 else "ok",
               "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
               "attributes": {"note": "=cmd|' /C calc'!A0"} if i == 3 else {},
               "input": SECRET_TEXT, "output": "answer"}


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> Iterator[kansa.Ledger]:
    led = kansa.Ledger.init(tmp_path / "home", url=store_url)
    led.append_many(_records(130))
    led.checkpoint()
    yield led
    led.close()


def _access(**kw: object) -> Access:
    tokens = {token_digest(tok): (f"{role}-person", role) for role, tok in TOKENS.items()}
    return Access(tokens=tokens, **kw)  # type: ignore[arg-type]


def _client(led: kansa.Ledger, role: str | None = None, **kw: object) -> TestClient:
    c = TestClient(create_app(led, _access(**kw), clock=lambda: NOW))
    if role is not None:
        csrf = _csrf(c.get("/login").text)
        r = c.post("/login", data={"csrf": csrf, "token": TOKENS[role], "next": "/"},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
    return c


def _csrf(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def _events(led: kansa.Ledger) -> list[dict[str, object]]:
    return [r.entry["attributes"] for r in led.browse(limit=1000).records
            if r.entry["kind"] == "kansa.event"]


# -- keyset pages ---------------------------------------------------------------------


def test_browse_pages_match_find_and_never_overlap(ledger: kansa.Ledger) -> None:
    for flt in ({}, {"system": "hr-bot"}, {"model": "claude-x"}, {"outcome": "error"},
                {"subject": "user-2"}, {"system": "support-bot", "outcome": "ok"}):
        seen: list[int] = []
        before = None
        while True:
            page = ledger.browse(before=before, limit=7, **flt)  # type: ignore[arg-type]
            assert len(page.records) <= 7
            seen += [r.index for r in page.records]
            if page.next_before is None:
                break
            before = page.next_before
        f = {k: v for k, v in flt.items() if k != "outcome"}
        expected = [r.index for r in ledger.find(**f)  # type: ignore[arg-type]
                    if r.entry["outcome"] == flt.get("outcome", r.entry["outcome"])]
        assert seen == sorted(expected, reverse=True), flt


def test_a_page_reads_a_bounded_window_and_says_so(ledger: kansa.Ledger) -> None:
    page = ledger.browse(limit=50, scan=20, outcome="error")
    # 130 entries, errors every 7th: the top 20 (110..129) hold 112, 119 and 126
    assert [r.index for r in page.records] == [126, 119, 112]
    assert page.next_before == 110 and page.scanned == 20
    nxt = ledger.browse(before=page.next_before, limit=50, scan=20, outcome="error")
    assert [r.index for r in nxt.records] == [105, 98, 91]


def test_a_time_window_starts_and_stops_at_its_entries(ledger: kansa.Ledger) -> None:
    # day 27 holds entries 26, 54, 82 and 110; a 20-entry scan window from the top (130)
    # would find none of them: the time index moves the window to them, out of order too
    late = ledger.append({"system": "late", "ts": "2025-11-27T23:00:00Z"})  # appended last
    since, until = (to_us(parse_ts(x)) for x in ("2025-11-27T00:00:00Z",
                                                 "2025-11-28T00:00:00Z"))
    seen, before = [], None
    while True:
        page = ledger.browse(before=before, limit=2, scan=20, since_us=since, until_us=until)
        seen += [r.index for r in page.records]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [late.index, 110, 82, 54, 26]
    assert ledger.browse(since_us=since, until_us=since + 1).records == []


def test_records_page_filter_and_next_page(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "viewer")
    r = c.get("/records?system=hr-bot")
    assert r.status_code == 200
    first = [int(x.split("<")[0]) for x in r.text.split('class="num"><a href="/records/')[1:]
             for x in [x.split(">", 1)[1]]]
    assert first == list(range(128, 28, -2))  # 50 hr-bot records, newest first
    nxt = r.text.split('id="older" rel="next" href="')[0]
    assert 'before=30' in r.text
    r2 = c.get("/records?system=hr-bot&before=30")
    rows = [int(x.split(">", 1)[1].split("<")[0])
            for x in r2.text.split('class="num"><a href="/records/')[1:]]
    assert rows == list(range(28, -1, -2))
    assert nxt  # the link exists


@pytest.mark.parametrize("query,says", [
    ("since=yesterday", "'since': 'yesterday' is not a date"),
    ("until=2025-13-01", "'until': '2025-13-01' is not a date"),
    ("before=-5", "cursor 'before': '-5' is not an entry index"),
    ("before=1e9", "cursor 'before': '1e9' is not an entry index"),
    ("outcome=fine", "'outcome': 'fine' is not one of ok, error"),
    ("system=" + "x" * 300, "filter 'system' is longer than 256 characters"),
])
def test_bad_filters_and_cursors_are_400_with_the_reason(ledger: kansa.Ledger, query: str,
                                                         says: str) -> None:
    r = _client(ledger, "viewer").get("/records?" + query)
    assert r.status_code == 400
    assert says.replace("'", "&#39;") in r.text


def test_time_filter_and_unknown_subject(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "viewer")
    r = c.get("/records?since=2025-11-27&until=2025-11-28")
    idx = [int(x.split(">", 1)[1].split("<")[0])
           for x in r.text.split('class="num"><a href="/records/')[1:]]
    assert idx == [110, 82, 54, 26]  # day 27 is i % 28 == 26
    r = c.get("/records?subject=nobody")
    assert r.status_code == 200 and 'id="empty"' in r.text


# -- login, sessions, CSRF -------------------------------------------------------------


def test_login_required_bad_token_and_forged_csrf(ledger: kansa.Ledger) -> None:
    c = _client(ledger)
    r = c.get("/records?system=x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    csrf = _csrf(c.get("/login").text)
    r = c.post("/login", data={"csrf": csrf, "token": "not-a-token"})
    assert r.status_code == 401 and 'id="login-bad"' in r.text
    r = c.post("/login", data={"csrf": "forged", "token": TOKENS["admin"]},
               follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    # an open redirect is refused: next= stays on this site
    r = c.post("/login", data={"csrf": csrf, "token": TOKENS["viewer"],
                               "next": "//evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_a_tampered_or_expired_session_is_no_login(ledger: kansa.Ledger) -> None:
    access = _access()
    from kansa.web.auth import Principal

    cookie = access.session_cookie(Principal("eve", "viewer", "token"), NOW)
    assert access.from_session(cookie, NOW) is not None
    body, mac = cookie.rsplit(".", 1)
    import base64
    forged = base64.urlsafe_b64encode(json.loads(base64.urlsafe_b64decode(body)).__repr__()
                                      .replace("viewer", "admin").encode()).decode()
    assert access.from_session(forged + "." + mac, NOW) is None
    assert access.from_session(cookie, NOW + 9 * 3600) is None


def test_trusted_header_maps_users_to_roles(ledger: kansa.Ledger) -> None:
    c = _client(ledger, trusted_header="X-Forwarded-User",
                role_map=parse_role_map("alice=officer"))
    r = c.get("/approvals", headers={"X-Forwarded-User": "alice"})
    assert r.status_code == 200 and "alice (officer)" in r.text
    r = c.get("/", headers={"X-Forwarded-User": "mallory"}, follow_redirects=False)
    assert r.status_code == 303  # not in the map, no '*': no access
    with pytest.raises(AuthError, match="unknown role 'boss'"):
        parse_role_map("bob=boss")


# -- roles and content -----------------------------------------------------------------


def test_viewer_never_gets_content_not_even_by_url_or_export(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "viewer")
    rid = ledger.browse(limit=1).records[0].id
    page = c.get(f"/records/{rid}")
    assert page.status_code == 200 and 'id="content-denied"' in page.text
    assert "show-content" not in page.text and SECRET_TEXT not in page.text
    csrf = _csrf(page.text)
    r = c.post(f"/records/{rid}/content", data={"csrf": csrf})
    assert r.status_code == 403 and SECRET_TEXT not in r.text
    for url in ("/records/export.jsonl", "/records/export.csv", f"/records/{rid}/receipt",
                "/approvals"):
        r = c.get(url)
        assert r.status_code == 403, url
        assert SECRET_TEXT not in r.text
    assert _events(ledger) == []  # refused: nothing shown, nothing recorded


def test_officer_content_view_is_a_ledger_record_first(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "officer")
    rec = ledger.browse(limit=1).records[0]
    page = c.get(f"/records/{rec.id}")
    assert SECRET_TEXT not in page.text and 'id="show-content"' in page.text
    r = c.post(f"/records/{rec.id}/content", data={"csrf": "forged"})
    assert r.status_code == 403 and SECRET_TEXT not in r.text
    r = c.post(f"/records/{rec.id}/content", data={"csrf": _csrf(page.text)})
    assert r.status_code == 200 and SECRET_TEXT in r.text
    events = _events(ledger)
    assert events == [{"kansa.event": "web.access", "kansa.access.action": "view_content",
                       "kansa.access.actor": "officer-person", "kansa.access.role": "officer",
                       "kansa.access.via": "token", "kansa.access.record": rec.id}]
    audit_id = r.text.split('id="content-recorded">')[1].split("</p>")[0]
    assert ledger.browse(limit=1).records[0].id in audit_id


# -- exports ---------------------------------------------------------------------------


def test_exports_stream_the_filtered_list_and_are_recorded(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "auditor")
    expected = [r.index for r in ledger.browse(limit=1000, outcome="error").records]
    r = c.get("/records/export.jsonl?outcome=error")
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["index"] for x in lines] == expected
    assert all(x["entry"]["outcome"] == "error" for x in lines)
    assert SECRET_TEXT not in r.text  # exports are metadata
    r = c.get("/records/export.csv?system=hr-bot")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["index", "id", "ts"] and len(rows) == 1 + 65
    assert {x[4] for x in rows[1:]} == {"hr-bot"}
    events = _events(ledger)
    assert [(e["kansa.access.action"], e["kansa.access.format"], e["kansa.access.filter"])
            for e in events] == [("export", "csv", "system=hr-bot"),
                                 ("export", "jsonl", "outcome=error")]


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    from kansa.web.app import _cell

    assert _cell("=1+2") == "'=1+2" and _cell("@SUM(A1)") == "'@SUM(A1)"
    assert _cell("plain") == "plain" and _cell(None) == "" and _cell(["a"]) == '["a"]'


# -- approvals -------------------------------------------------------------------------


def _approval(led: kansa.Ledger, record_id: str = "rec-held-1") -> str:
    return Approvals(led.log.store).request(
        digest="sha256:00", record_id=record_id, snapshot="snap", system="support-bot",
        app=None, model="gpt-4o-mini", obligations=["jp@1#human_oversight"],
        ttl_hours=24).id


def test_approve_and_reject_with_a_reason_recorded(ledger: kansa.Ledger) -> None:
    a1, a2 = _approval(ledger, "held-a"), _approval(ledger, "held-b")
    c = _client(ledger, "officer")
    page = c.get("/approvals")
    assert a1 in page.text and a2 in page.text and "jp@1#human_oversight" in page.text
    csrf = _csrf(page.text)
    r = c.post(f"/approvals/{a1}", data={"csrf": csrf, "decision": "approve", "reason": " "})
    assert r.status_code == 400 and "needs a reason" in r.text
    r = c.post(f"/approvals/{a1}", data={"csrf": "x", "decision": "approve", "reason": "ok"})
    assert r.status_code == 403
    r = c.post(f"/approvals/{a1}", data={"csrf": csrf, "decision": "approve",
                                         "reason": "checked the ticket"})
    # the notice names the decision; the approval left the queue, the other waits
    assert r.status_code == 200 and f"{a1} approved" in r.text
    assert f'id="{a1}"' not in r.text and f'id="{a2}"' in r.text
    r = c.post(f"/approvals/{a2}", data={"csrf": csrf, "decision": "reject",
                                         "reason": "not allowed"})
    assert r.status_code == 200
    got = Approvals(ledger.log.store)
    one, two = got.get(a1), got.get(a2)
    assert one is not None and two is not None
    assert (one.status, one.decided_by, one.note) == ("approved", "officer-person",
                                                      "checked the ticket")
    assert (two.status, two.note) == ("rejected", "not allowed")
    r = c.post(f"/approvals/{a1}", data={"csrf": csrf, "decision": "reject", "reason": "x"})
    assert r.status_code == 409 and "not pending" in r.text
    # each decision is a ledger record of the approvals module, named by the approval
    decisions = [(e["kansa.event"], e["kansa.approval.id"], e["kansa.approval.held_record"],
                  e["kansa.approval.by"], e["kansa.approval.reason"])
                 for e in _events(ledger)]
    assert decisions == [
        ("approval.rejected", a2, "held-b", "officer-person", "not allowed"),
        ("approval.approved", a1, "held-a", "officer-person", "checked the ticket")]
    assert one.decision_record == ledger.browse(limit=2).records[1].id
    assert _client(ledger, "auditor").post(
        f"/approvals/{a2}", data={"csrf": csrf, "decision": "approve", "reason": "x"}
    ).status_code == 403


# -- overview, languages, headers ------------------------------------------------------


def test_overview_counts_follow_new_records(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "viewer")
    r = c.get("/", headers={"accept-language": "en"})
    assert '<p class="big">130</p>' in r.text and "hr-bot" in r.text
    assert "19 calls did not end ok" in r.text
    assert "<svg" in r.text and "2025-11-06: 5</title>" in r.text  # 30 days to the clock
    ledger.append({"system": "new-bot", "ts": "2025-12-04T10:00:00Z", "outcome": "timeout"})
    r = c.get("/")
    assert '<p class="big">131</p>' in r.text and "new-bot" in r.text
    assert "20 calls did not end ok" in r.text and "2025-12-04: 1</title>" in r.text


def test_language_follows_the_browser_and_the_switch(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "viewer")
    ja = c.get("/records", headers={"accept-language": "ja,en;q=0.5"})
    assert '<html lang="ja">' in ja.text and "適用" in ja.text
    en = c.get("/records", headers={"accept-language": "fr, en;q=0.8, ja;q=0.3"})
    assert '<html lang="en">' in en.text and "Apply" in en.text
    r = c.get("/lang/ja?next=/records", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/records"
    assert c.get("/records", headers={"accept-language": "en"}).text.count("適用") == 1
    assert c.get("/lang/xx").status_code == 404


def test_security_headers_and_no_inline_script_or_style(ledger: kansa.Ledger) -> None:
    c = _client(ledger, "officer")
    for url in ("/", "/records", f"/records/{ledger.browse(limit=1).records[0].id}",
                "/approvals", "/login"):
        r = c.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert " style=" not in r.text and "<style" not in r.text
        assert "<script>" not in r.text and " on" + "click=" not in r.text
    js = c.get("/static/htmx.min.js")
    assert js.status_code == 200 and b"htmx" in js.content[:2000]
    assert "cache-control" not in js.headers or js.headers["cache-control"] != "no-store"


# -- tokens ----------------------------------------------------------------------------


def test_token_add_keeps_only_a_digest_and_token_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "web_tokens.json"
    tok = add_token(f, role="auditor", name="ext-audit")
    assert tok not in f.read_text()
    assert load_token_digests(f) == {token_digest(tok): ("ext-audit", "auditor")}
    with pytest.raises(AuthError, match="unknown role 'root'"):
        add_token(f, role="root", name="x")
    tf = tmp_path / "tokens.txt"
    tf.write_text("# comment\nviewer vera " + "v" * 20 + "\nofficer olga short\n")
    with pytest.raises(AuthError, match=r"tokens.txt:3: a token has at least 16"):
        load_token_file(tf)
    tf.write_text("viewer vera\n")
    with pytest.raises(AuthError, match="expected 'ROLE NAME TOKEN'"):
        load_token_file(tf)


def test_cli_token_add_then_login(tmp_path: Path) -> None:
    home = tmp_path / "h"
    kansa.Ledger.init(home).close()
    code, out = run_cli("web", "token", "add", "--role", "officer", "--name", "olga",
                        home=home)
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert load_token_digests(home / "web_tokens.json")[token_digest(token)] == (
        "olga", "officer")
    code, out = run_cli("web", "token", "add", "--role", "god", "--name", "x", home=home)
    assert code == 1 and "unknown role 'god'" in out


def test_record_page_says_erased_without_opening_content(ledger: kansa.Ledger) -> None:
    rec = next(r for r in ledger.browse(limit=10).records if r.index % 5 == 2)  # user-2
    ledger.erase("user-2")
    c = _client(ledger, "officer")
    page = c.get(f"/records/{rec.id}")
    assert "Content: erased" in page.text and 'id="show-content"' not in page.text
    other = next(r for r in ledger.browse(limit=10).records if r.index % 5 == 3)
    assert "Content: present" in c.get(f"/records/{other.id}").text


def test_cli_web_refuses_to_start_when_nobody_could_log_in(tmp_path: Path) -> None:
    home = tmp_path / "h"
    kansa.Ledger.init(home).close()
    code, out = run_cli("web", home=home)
    assert code == 1 and "nobody could log in" in out
    code, out = run_cli("web", "--trusted-header", "X-Forwarded-User", home=home)
    assert code == 1 and "--trusted-header needs --role-map" in out
    bad = tmp_path / "tokens.txt"
    bad.write_text("superuser root " + "r" * 20 + "\n")
    code, out = run_cli("web", "--token-file", str(bad), home=home)
    assert code == 1 and "unknown role 'superuser'" in out


def test_overview_shows_the_checkpoint_and_its_cosignatures(ledger: kansa.Ledger) -> None:
    cp = ledger.checkpoint()
    line = "— witness.example/w1 AAAAAQ=="
    ledger.log.store.add_cosignature(cp.checkpoint.size, "witness.example/w1", line)
    r = _client(ledger, "viewer").get("/", headers={"accept-language": "ja"})
    assert "最新の署名付きチェックポイント" in r.text and "証人の連署" in r.text
    assert f"<b>{cp.checkpoint.size}</b>" in r.text and cp.checkpoint.origin in r.text
    assert line in r.text and "連署した証人はいません" not in r.text


def test_overview_shows_partial_figures_while_the_backlog_is_counted(
        ledger: kansa.Ledger) -> None:
    from kansa.web.rollup import Rollup

    rollup = Rollup(ledger.log.store)
    rollup.refresh(40)  # as the background reader would be after its first steps
    rollup.warming = True
    c = _client(ledger, "viewer")
    app: Any = c.app
    app.app.state.rollup = rollup  # (the wrapped Starlette app)
    r = c.get("/", headers={"accept-language": "en"})
    assert "Still counting: 40 of 130 entries read" in r.text
    assert '<p class="big">40</p>' in r.text
    rollup.warming = False
    r = c.get("/")
    assert 'id="counting"' not in r.text and '<p class="big">130</p>' in r.text
    # the real background reader gets there on its own
    warm = Rollup(ledger.log.store)
    warm.warm(step=16).join(10)
    assert not warm.warming and warm.figures.records == 130
