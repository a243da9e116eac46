"""``kansa web``: the dashboard, a Starlette app rendered on the server (Jinja2), htmx
served from the package, charts as inline SVG.

Everything is read through the public :class:`kansa.Ledger` (``browse``, ``get``,
``prove``), the follower (the overview's :class:`~kansa.web.rollup.Rollup`) and the
owners' query methods (``FindingStore.findings``, ``Approvals.list``/``decide``); this
module holds no SQL. Every content view, export and approval decision is appended to the
ledger as a ``kansa.event`` record (``kansa.access.*``) *before* the content or the
export leaves, so who saw what is as tamper-evident as the records themselves.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kansa._time import to_us
from kansa.api import Ledger, StoredRecord
from kansa.errors import KansaError
from kansa.policy.approvals import PENDING, ApprovalError, Approvals
from kansa.policy.findings_store import FindingStore
from kansa.records import attributes as A
from kansa.records.model import OUTCOMES, UsageRecord, parse_ts
from kansa.web.auth import ROLES, Access, Principal
from kansa.web.charts import bar_chart
from kansa.web.log_api import log_routes
from kansa.web.rollup import Rollup
from kansa.web.strings import LANGS, pick_lang, t

HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_FILTER = 256  # longest filter value accepted
MAX_FORM = 16_384
CHART_DAYS = 30
CHILD_WINDOW = 1024  # entries after a step searched for its children
CONTENT_ROLE = "officer"  # who may open content (on an explicit, recorded click)
EXPORT_ROLE = "auditor"
APPROVE_ROLE = "officer"
SESSION_COOKIE, SEED_COOKIE, LANG_COOKIE = "kansa_session", "kansa_seed", "kansa_lang"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


PAGE_THREADS = 8  # pages run in the thread pool; each thread holds a store connection


class SecurityHeaders:
    """Adds the CSP and the other security headers to every answer; pages that show
    records are never cached (static files are). Also bounds the thread pool pages run
    in (anyio's default is 40 threads, each with its own PostgreSQL connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._bounded = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._bounded:  # the limiter belongs to the running loop: set it here
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = PAGE_THREADS
            self._bounded = True
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def wrapped(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                # pages that show records are never cached; static files and the log's
                # immutable tiles say so themselves
                if not static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


class WebError(KansaError):
    """A request the dashboard refuses: ``status`` and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Filters:
    """The records list's filters, parsed and bounded; bad values are a 400 that says
    which value and why."""

    KEYS = ("since", "until", "system", "model", "subject", "outcome")

    def __init__(self, q: MutableMapping[str, str] | Any) -> None:
        self.raw: dict[str, str] = {}
        for k in self.KEYS:
            v = (q.get(k) or "").strip()
            if len(v) > MAX_FILTER:
                raise WebError(400, f"filter {k!r} is longer than {MAX_FILTER} characters")
            if v:
                self.raw[k] = v
        self.since_us = self._time("since")
        self.until_us = self._time("until")
        if self.raw.get("outcome") and self.raw["outcome"] not in OUTCOMES:
            raise WebError(400, f"filter 'outcome': {self.raw['outcome']!r} is not one of "
                                f"{', '.join(OUTCOMES)}")
        before = q.get("before")
        self.before: int | None = None
        if before not in (None, ""):
            if not str(before).isdigit() or len(str(before)) > 19:
                raise WebError(400, f"cursor 'before': {before!r} is not an entry index "
                                    "(a whole number from a 'next page' link)")
            self.before = int(str(before))

    def _time(self, key: str) -> int | None:
        v = self.raw.get(key)
        if not v:
            return None
        # a date alone (the browser's date input) is midnight UTC
        text = v + "T00:00:00Z" if len(v) == 10 else v
        try:
            return to_us(parse_ts(text, field_name=key))
        except KansaError:
            raise WebError(400, f"filter {key!r}: {v!r} is not a date (YYYY-MM-DD) or an "
                                "RFC 3339 time (2026-11-22T09:30:00Z)") from None

    def query(self, **extra: object) -> str:
        d: dict[str, object] = {**self.raw, **{k: v for k, v in extra.items() if v is not None}}
        return urlencode(d)

    def browse_args(self) -> dict[str, Any]:
        return {"since_us": self.since_us, "until_us": self.until_us,
                "system": self.raw.get("system"), "model": self.raw.get("model"),
                "subject": self.raw.get("subject"), "outcome": self.raw.get("outcome")}


# what an access record may say besides who and what (audit(..., record=...))
_ACCESS = {"record": A.KANSA_ACCESS_RECORD, "format": A.KANSA_ACCESS_FORMAT,
           "filter": A.KANSA_ACCESS_FILTER}

EXPORT_COLUMNS = ("index", "id", "ts", "kind", "system", "outcome", A.GEN_AI_PROVIDER_NAME,
                  A.GEN_AI_REQUEST_MODEL, A.GEN_AI_RESPONSE_MODEL,
                  A.GEN_AI_USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS, "actor", "app",
                  "subject", "error.type", "latency_ms")


def _fmt_us(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def create_app(ledger: Ledger, access: Access, *,
               clock: Callable[[], float] = time.time, public_log: bool = False,
               warm: bool = False) -> ASGIApp:
    """The dashboard over ``ledger``. ``clock`` (seconds since the epoch) dates sessions
    and the overview's chart, so tests pass their own. ``public_log``: also serve the
    log's read API (``log_api``: checkpoint, tiles, receipts) to anyone. ``warm``: count
    the overview's figures in a background thread from the start (``kansa web`` does);
    until it is done the overview shows what was counted so far, and says so."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True))
    env.globals.update(t=t, ROLES=ROLES, fmt_us=_fmt_us)
    store = ledger.log.store
    rollup = Rollup(store)
    if warm:
        rollup.warm()
    # decisions go through the ledger: each is its own kansa.event record (approvals.py)
    approvals = Approvals.for_ledger(ledger, clock=lambda: datetime.fromtimestamp(clock(), UTC))

    # -- who, which language, CSRF -------------------------------------------------------

    def who(request: Request) -> Principal | None:
        if access.trusted_header:
            p = access.by_header(request.headers.get(access.trusted_header))
            if p is not None:
                return p
        return access.from_session(request.cookies.get(SESSION_COOKIE), clock())

    def need(request: Request, role: str = "viewer") -> Principal:
        p = who(request)
        if p is None:
            raise WebError(401, "login required")
        if not p.can(role):
            raise WebError(403, t(lang_of(request), "forbidden", role=p.role))
        return p

    def lang_of(request: Request) -> str:
        return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))

    async def read_form(request: Request) -> dict[str, str]:
        # the dashboard's forms are small and urlencoded: parsed here, bounded, so no
        # multipart parser is needed
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            raise WebError(415, "forms are sent as application/x-www-form-urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise WebError(413, f"a form is at most {MAX_FORM} bytes")
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise WebError(400, "a form is UTF-8") from None
        return dict(pairs)

    async def check_csrf(request: Request) -> dict[str, str]:
        form = await read_form(request)
        if not access.csrf_ok(request.cookies.get(SEED_COOKIE), form.get("csrf")):
            raise WebError(403, "CSRF check failed: reload the page and submit again")
        return form

    def render(request: Request, template: str, code: int = 200, **ctx: Any) -> Response:
        lang = lang_of(request)
        seed = request.cookies.get(SEED_COOKIE)
        new_seed = None
        if not seed:
            seed = new_seed = secrets.token_urlsafe(24)
        ctx.setdefault("me", who(request))
        here = request.url.path + (("?" + request.url.query) if request.url.query else "")
        html = env.get_template(template).render(
            lang=lang, other_langs=[x for x in LANGS if x != lang], here=here,
            csrf=access.csrf_token(seed), can_export=bool(ctx["me"] and ctx["me"].can(
                EXPORT_ROLE)), can_approve=bool(ctx["me"] and ctx["me"].can(APPROVE_ROLE)),
            **ctx)
        resp = HTMLResponse(html, code)
        if new_seed:
            resp.set_cookie(SEED_COOKIE, new_seed, httponly=True, samesite="strict")
        if request.query_params.get("lang") in LANGS:
            resp.set_cookie(LANG_COOKIE, request.query_params["lang"], samesite="lax",
                            max_age=365 * 86400)
        return resp

    def audit(p: Principal, action: str, **attrs: str) -> str:
        """Append the access record and wait until it is durable: only then does the
        content or export leave."""
        a = {A.KANSA_EVENT: "web.access", A.KANSA_ACCESS_ACTOR: p.name,
             A.KANSA_ACCESS_ROLE: p.role, A.KANSA_ACCESS_VIA: p.via,
             A.KANSA_ACCESS_ACTION: action}
        a.update({_ACCESS[k]: v[:1000] for k, v in attrs.items()})
        return ledger.append(UsageRecord(system="kansa", kind="kansa.event",
                                         operation="web.access", actor=p.name,
                                         attributes=a)).id

    def guarded(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return fn(request)
            except WebError as e:
                if e.status == 401:
                    if request.method == "GET":
                        return RedirectResponse("/login?" + urlencode({"next": str(
                            request.url.path + ("?" + request.url.query
                                                if request.url.query else ""))}), 303)
                    return PlainTextResponse("login required", 401)
                return render(request, "error.html", e.status, message=e.message,
                              status=e.status)
        return run

    def aguarded(fn: Callable[[Request], Awaitable[Response]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except WebError as e:
                if e.status == 401:
                    return PlainTextResponse("login required", 401)
                return render(request, "error.html", e.status, message=e.message,
                              status=e.status)
        return run

    def record_ref(ref: str, *, content: bool = False) -> StoredRecord:
        try:
            return ledger.get(ref, with_content=content)
        except KansaError as e:
            raise WebError(404, str(e)) from None

    # -- login ---------------------------------------------------------------------------

    def safe_next(value: str | None) -> str:
        # only a path of this site: never an open redirect
        if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value
        return "/"

    @guarded
    def login_page(request: Request) -> Response:
        return render(request, "login.html", next=safe_next(request.query_params.get("next")),
                      bad=False, me=None)

    @aguarded
    async def login(request: Request) -> Response:
        form = await check_csrf(request)
        token = form.get("token")
        p = access.by_token(token.strip()) if isinstance(token, str) else None
        nxt = safe_next(str(form.get("next") or "/"))
        if p is None:
            return render(request, "login.html", 401, next=nxt, bad=True, me=None)
        resp = RedirectResponse(nxt, 303)
        resp.set_cookie(SESSION_COOKIE, access.session_cookie(p, clock()), httponly=True,
                        samesite="strict", max_age=8 * 3600)
        return resp

    @aguarded
    async def logout(request: Request) -> Response:
        await check_csrf(request)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    # -- overview ------------------------------------------------------------------------

    @guarded
    def overview(request: Request) -> Response:
        me = need(request)
        lang = lang_of(request)
        # while the backlog is read in the background, the figures so far (and how far)
        r: Rollup = request.app.state.rollup
        partial = (r.position, store.size()) if r.warming else None
        f = r.snapshot() if partial else r.refresh()
        today = datetime.fromtimestamp(clock(), UTC).date()
        days = [today - timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]
        chart = bar_chart([(d.isoformat(), f.calls_on(d)) for d in days],
                          label=t(lang, "calls_per_day", days=CHART_DAYS))
        cp = store.latest_checkpoint()
        cosigs = store.cosignatures(cp.size) if cp else []
        return render(request, "overview.html", me=me, f=f, chart=chart, cp=cp,
                      cosigs=cosigs, days=CHART_DAYS, partial=partial)

    # -- records -------------------------------------------------------------------------

    @guarded
    def records(request: Request) -> Response:
        me = need(request)
        flt = Filters(request.query_params)
        page = ledger.browse(before=flt.before, limit=PAGE_SIZE, **flt.browse_args())
        short = len(page.records) < PAGE_SIZE and page.next_before is not None
        return render(request, "records.html", me=me, flt=flt, page=page, short=short,
                      outcomes=OUTCOMES)

    def relatives(rec: StoredRecord) -> tuple[StoredRecord | None, list[StoredRecord]]:
        attrs = rec.entry.get("attributes") or {}
        parent = None
        pid = attrs.get(A.KANSA_PARENT_ID)
        if isinstance(pid, str):
            try:
                parent = ledger.get(pid, with_content=False)
            except KansaError:
                parent = None
        # children follow their parent in the log: a bounded window after it, so the page
        # costs the same at any size (a child appended later is not listed)
        kids = ledger.log.store.entries_before(
            rec.index + 1 + CHILD_WINDOW, 50, floor=rec.index + 1,
            match=[[json.dumps({A.KANSA_PARENT_ID: rec.id}, separators=(",", ":"))
                    .encode()[1:-1]]])
        children = []
        for row in reversed(kids):
            e = json.loads(row.data)
            if (e.get("attributes") or {}).get(A.KANSA_PARENT_ID) == rec.id:
                children.append(StoredRecord(row.index, e, row.data, None, ""))
        return parent, children

    def record_page(request: Request, rec: StoredRecord, me: Principal,
                    content: Any = None, audit_id: str | None = None) -> Response:
        findings = FindingStore(store).findings(index=rec.index, limit=200)
        parent, children = relatives(rec)
        top = {k: v for k, v in rec.entry.items() if k not in ("attributes", "content")}
        return render(request, "record.html", me=me, rec=rec, top=top,
                      attrs=rec.entry.get("attributes") or {}, findings=findings,
                      parent=parent, children=children, content=content,
                      audit_id=audit_id, can_content=me.can(CONTENT_ROLE),
                      can_receipt=me.can(EXPORT_ROLE))

    @guarded
    def record(request: Request) -> Response:
        me = need(request)
        rid = request.path_params["rid"]
        # the page itself never carries content: it is not even decrypted; whether it
        # could be shown (erased? missing?) is asked without opening it
        rec = record_ref(rid)
        gone = ledger.missing_content([rec.index]).get(rec.index)
        if gone is not None:
            rec = StoredRecord(rec.index, rec.entry, rec.entry_bytes, None, gone)
        return record_page(request, rec, me)

    @aguarded
    async def record_content(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        await check_csrf(request)
        me = need(request, CONTENT_ROLE)
        rid = request.path_params["rid"]

        def show() -> Response:
            rec = record_ref(rid)  # metadata: recorded before any content is opened
            audit_id = audit(me, "view_content", record=rec.id)
            rec = record_ref(rid, content=True)
            text = json.dumps(rec.content, ensure_ascii=False, indent=2) \
                if rec.content is not None else None
            return record_page(request, rec, me, content=text, audit_id=audit_id)

        return await run_in_threadpool(show)

    @guarded
    def receipt(request: Request) -> Response:
        need(request, EXPORT_ROLE)
        rec = record_ref(request.path_params["rid"])
        data = ledger.prove(rec.id)
        return Response(data, media_type="text/plain; charset=utf-8", headers={
            "content-disposition": f'attachment; filename="{rec.id}.tlog-proof"'})

    # -- exports -------------------------------------------------------------------------

    def export_rows(flt: Filters) -> Iterator[StoredRecord]:
        before = flt.before
        while True:
            page = ledger.browse(before=before, limit=2000, scan=100_000,
                                 **flt.browse_args())
            yield from page.records
            if page.next_before is None:
                return
            before = page.next_before

    def export(request: Request, fmt: str) -> Response:
        me = need(request, EXPORT_ROLE)
        flt = Filters(request.query_params)
        audit(me, "export", format=fmt, filter=flt.query(before=flt.before) or "(none)")

        def jsonl() -> Iterator[bytes]:
            # a chunk per 500 records: one per record costs more than the record
            chunk: list[bytes] = []
            for r in export_rows(flt):
                chunk.append(b'{"index":%d,"entry":%s}\n' % (r.index, r.entry_bytes))
                if len(chunk) == 500:
                    yield b"".join(chunk)
                    chunk.clear()
            yield b"".join(chunk)

        def rows_csv() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(EXPORT_COLUMNS)
            for n, r in enumerate(export_rows(flt), 1):
                e = r.entry
                w.writerow([r.index] + [_cell(e.get(c)) for c in EXPORT_COLUMNS[1:]])
                if n % 500 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        name = "kansa-records." + fmt
        headers = {"content-disposition": f'attachment; filename="{name}"'}
        if fmt == "jsonl":
            return StreamingResponse(jsonl(), media_type="application/jsonl", headers=headers)
        return StreamingResponse(rows_csv(), media_type="text/csv; charset=utf-8",
                                 headers=headers)

    @guarded
    def export_jsonl(request: Request) -> Response:
        return export(request, "jsonl")

    @guarded
    def export_csv(request: Request) -> Response:
        return export(request, "csv")

    # -- approvals -----------------------------------------------------------------------

    @guarded
    def approvals_page(request: Request) -> Response:
        me = need(request, APPROVE_ROLE)
        pending = approvals.list(PENDING)
        now = int(clock() * 1e6)
        return render(request, "approvals.html", me=me, pending=pending, now=now,
                      done=request.query_params.get("done"))

    @aguarded
    async def decide(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await check_csrf(request)
        me = need(request, APPROVE_ROLE)
        aid = request.path_params["aid"]
        decision = form.get("decision")
        reason = form.get("reason")
        if decision not in ("approve", "reject"):
            raise WebError(400, "decision must be 'approve' or 'reject'")
        if not isinstance(reason, str) or not reason.strip():
            raise WebError(400, "a decision needs a reason")
        if len(reason) > 1000:
            raise WebError(400, "a reason is at most 1000 characters")

        def run() -> Response:
            decide = approvals.approve if decision == "approve" else approvals.reject
            try:
                a = decide(aid, by=me.name, reason=reason.strip())
            except ApprovalError as e:
                raise WebError(409, str(e)) from None
            # the approvals module recorded the decision (kind kansa.event, approval.*)
            return RedirectResponse("/approvals?" + urlencode(
                {"done": f"{a.id}:{a.status}:{a.decision_record or ''}"}), 303)

        return await run_in_threadpool(run)

    @guarded
    def lang_switch(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in LANGS:
            raise WebError(404, f"no language {lang!r}: {', '.join(LANGS)}")
        resp = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        resp.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
        return resp

    routes = [
        Route("/", overview),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{lang}", lang_switch),
        Route("/records", records),
        Route("/records/export.jsonl", export_jsonl),
        Route("/records/export.csv", export_csv),
        Route("/records/{rid}", record),
        Route("/records/{rid}/content", record_content, methods=["POST"]),
        Route("/records/{rid}/receipt", receipt),
        Route("/approvals", approvals_page),
        Route("/approvals/{aid}", decide, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if public_log:
        routes += log_routes(ledger)
    app = Starlette(routes=routes)
    app.state.rollup = rollup
    return SecurityHeaders(app)


def create_log_app(ledger: Ledger) -> ASGIApp:
    """The log's public read API alone (``kansa serve-log``)."""
    return SecurityHeaders(Starlette(routes=log_routes(ledger)))


def _cell(v: object) -> str:
    if v is None:
        return ""
    s = json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v)
    # a cell a spreadsheet would run as a formula is quoted (CSV injection)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s
