"""The Starlette application: routes, pages and the security middleware.

Every route needs the session cookie (see :mod:`mailvault.web.security`); every state-changing
route (POST) also needs our own ``Origin`` and the session's CSRF token. Pages carry a strict
Content-Security-Policy (scripts and styles only from this server, nothing remote); a message body
is served as its own document for a sandboxed ``<iframe>`` with a CSP that allows no script at all.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mailvault.errors import MailvaultError, SnapshotNotFound
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import ManifestEntry, Snapshot, SnapshotFolder
from mailvault.web import mailview
from mailvault.web.actions import Actions, Selection
from mailvault.web.jobs import Jobs
from mailvault.web.security import COOKIE, Guard, Session

PAGE_SIZE = 50
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def body_csp(allow_remote: bool) -> str:
    img = "'self' data: http: https:" if allow_remote else "'self' data:"
    return (
        f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; font-src 'none'; "
        "script-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
    )


def _forbidden(why: str) -> Response:
    return PlainTextResponse(f"403 forbidden: {why}\n", status_code=403)


class WebUI:
    """The routes over one open vault."""

    def __init__(self, repo: Repository, guard: Guard, *, index: Any = None) -> None:
        self.repo = repo
        self.guard = guard
        self.jobs = Jobs()
        self.actions = Actions(repo, self.jobs)
        self.env = Environment(
            loader=PackageLoader("mailvault.web", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["human"] = _human
        self.env.filters["q"] = lambda s: quote(str(s), safe="")

    # -- plumbing -------------------------------------------------------------------------------
    def page(self, request: Request, template: str, **ctx: Any) -> HTMLResponse:
        session: Session = request.state.session
        html = self.env.get_template(template).render(csrf=session.csrf, request=request, **ctx)
        return HTMLResponse(html)

    async def guard_mw(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.headers.get("host")
        if not self.guard.host_ok(host):
            return _forbidden("unknown Host")
        token = request.query_params.get("token")
        if token is not None:
            session = self.guard.exchange(token)
            if session is None:
                return _forbidden("this link was already used or is wrong; restart mailvault serve")
            resp: Response = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path="/")
            return self._headers(resp)
        found = self.guard.session(request.cookies.get(COOKIE))
        if found is None:
            return _forbidden("open the URL that mailvault serve printed")
        if request.method not in ("GET", "HEAD") and not self.guard.origin_ok(
            request.headers.get("origin"), host
        ):
            return _forbidden("cross-site request")
        request.state.session = found
        try:
            response = await call_next(request)
        except MailvaultError as exc:
            response = PlainTextResponse(f"{exc.message}\n", status_code=404)
        return self._headers(response)

    @staticmethod
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on form posts.
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return resp

    async def _form(self, request: Request) -> Any:
        form = await request.form()
        if not self.guard.csrf_ok(request.state.session, str(form.get("csrf") or "")):
            return None
        return form

    # -- vault browsing -------------------------------------------------------------------------
    def _snap(self, sid: str) -> Snapshot:
        return self.repo.resolve_snapshot(sid)

    @staticmethod
    def _folder(snap: Snapshot, index: int) -> SnapshotFolder:
        if not 0 <= index < len(snap.folders):
            raise SnapshotNotFound(f"snapshot {snap.id[:12]} has no folder #{index}")
        return snap.folders[index]

    def accounts(self, request: Request) -> Response:
        by_account: dict[str, list[Snapshot]] = {}
        for s in self.repo.snapshots():
            by_account.setdefault(s.account, []).append(s)
        rows = [
            {"name": a, "snapshots": len(ss), "latest": ss[-1], "messages": ss[-1].messages}
            for a, ss in sorted(by_account.items())
        ]
        return self.page(request, "accounts.html", accounts=rows)

    def account(self, request: Request) -> Response:
        name = request.path_params["name"]
        snaps = list(reversed(self.repo.snapshots(name)))
        if not snaps:
            raise SnapshotNotFound(f"no snapshots of account {name!r}")
        return self.page(request, "account.html", account=name, snapshots=snaps)

    def snapshot(self, request: Request) -> Response:
        snap = self._snap(request.path_params["sid"])
        return self.page(request, "snapshot.html", snap=snap)

    def folder(self, request: Request) -> Response:
        snap = self._snap(request.path_params["sid"])
        fi = int(request.path_params["fi"])
        folder = self._folder(snap, fi)
        entries = self.repo.read_manifest(folder)
        entries.sort(key=lambda e: e.internaldate or "", reverse=True)
        page = max(1, int(request.query_params.get("page", "1") or 1))
        pages = max(1, -(-len(entries) // PAGE_SIZE))
        chunk = entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        rows = [self._row(snap, fi, e) for e in chunk]
        return self.page(
            request, "folder.html", snap=snap, folder=folder, fi=fi, rows=rows, page=page, pages=pages
        )

    def _row(self, snap: Snapshot, fi: int, e: ManifestEntry) -> dict[str, Any]:
        try:
            s = mailview.summary(self.repo.read_blob(bytes.fromhex(e.blob)))
        except MailvaultError as exc:
            s = {"from": "", "subject": f"(unreadable: {exc.message})", "date": ""}
        return {
            "key": f"{snap.id}:{fi}:{e.uid}",
            "blob": e.blob,
            "uid": e.uid,
            "flags": e.flags,
            "date": (e.internaldate or "")[:16].replace("T", " "),
            "size": e.size,
            "from": s["from"],
            "subject": s["subject"] or "(no subject)",
            "link": f"/message/{e.blob}?snapshot={snap.id}&folder={fi}&uid={quote(str(e.uid))}",
        }

    def _raw(self, request: Request) -> bytes:
        blob = request.path_params["blob"].lower()
        if len(blob) != 64 or any(c not in "0123456789abcdef" for c in blob):
            raise SnapshotNotFound("not a message id")
        return self.repo.read_blob(bytes.fromhex(blob))

    def message(self, request: Request) -> Response:
        raw = self._raw(request)
        blob = request.path_params["blob"].lower()
        v = mailview.view(raw)
        ctx: dict[str, Any] = {"blob": blob, "v": v, "size": len(raw)}
        sid = request.query_params.get("snapshot")
        if sid:
            snap = self._snap(sid)
            fi = int(request.query_params.get("folder", "0"))
            ctx.update(snap=snap, fi=fi, folder=self._folder(snap, fi), uid=request.query_params.get("uid"))
            ctx["key"] = f"{snap.id}:{fi}:{ctx['uid']}"
        ctx["remote"] = request.query_params.get("remote") == "1"
        return self.page(request, "message.html", **ctx)

    def body(self, request: Request) -> Response:
        raw = self._raw(request)
        allow_remote = request.query_params.get("remote") == "1"
        blob = request.path_params["blob"].lower()
        v = mailview.view(raw, cid_base=f"/message/{blob}/cid/", allow_remote=allow_remote)
        resp = HTMLResponse(mailview.body_document(v))
        resp.headers["Content-Security-Policy"] = body_csp(allow_remote)
        resp.headers["X-Frame-Options"] = "SAMEORIGIN"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    def attachment(self, request: Request) -> Response:
        found = mailview.attachment_bytes(self._raw(request), int(request.path_params["n"]))
        if found is None:
            return PlainTextResponse("no such attachment\n", status_code=404)
        att, data = found
        n = request.path_params["n"]
        name = att.name or f"part-{n}{mimetypes.guess_extension(att.mime) or '.bin'}"
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )

    def cid(self, request: Request) -> Response:
        found = mailview.by_content_id(self._raw(request), request.path_params["cid"])
        if found is None or not found[0].startswith("image/"):
            return PlainTextResponse("no such image\n", status_code=404)
        mime, data = found
        # Served as the image it claims to be, never as HTML or script.
        return Response(data, media_type=mime, headers={"Content-Security-Policy": "default-src 'none'"})

    def eml(self, request: Request) -> Response:
        raw = self._raw(request)
        blob = request.path_params["blob"].lower()
        return Response(
            raw,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="{blob[:16]}.eml"'},
        )

    # -- search and diff ------------------------------------------------------------------------
    def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        account = request.query_params.get("account") or None
        snapshot = request.query_params.get("snapshot") or "latest"
        page = max(1, int(request.query_params.get("page", "1") or 1))
        hits: list[dict[str, Any]] = []
        error = ""
        total = 0
        if q:
            try:
                total, hits = self.actions.search_page(q, account, snapshot, page, PAGE_SIZE)
            except MailvaultError as exc:
                error = exc.message
        pages = max(1, -(-total // PAGE_SIZE))
        return self.page(
            request, "search.html", q=q, account=account or "", snapshot=snapshot, hits=hits,
            total=total, page=page, pages=pages, error=error,
        )  # fmt: skip

    def diff(self, request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        result = self.actions.diff(a, b)
        return self.page(request, "diff.html", d=result, a=a, b=b)

    # -- actions ----------------------------------------------------------------------------------
    async def restore(self, request: Request) -> Response:
        form = await self._form(request)
        if form is None:
            return _forbidden("missing or wrong CSRF token")
        sel = Selection.from_form(form)
        job = self.actions.start_restore(
            sel,
            target=str(form.get("target") or ""),
            password=str(form.get("password") or ""),
            ca_file=str(form.get("ca_file") or "") or None,
            into=str(form.get("into") or "") or None,
        )
        return RedirectResponse(f"/job/{job.id}", status_code=303)

    async def export(self, request: Request) -> Response:
        form = await self._form(request)
        if form is None:
            return _forbidden("missing or wrong CSRF token")
        sel = Selection.from_form(form)
        job = self.actions.start_export(sel, dest=str(form.get("dest") or ""), fmt=str(form.get("format")))
        return RedirectResponse(f"/job/{job.id}", status_code=303)

    def job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["jid"])
        if job is None:
            return PlainTextResponse("no such job\n", status_code=404)
        return self.page(request, "job.html", job=job)

    def job_json(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["jid"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(job.to_json())

    def build(self) -> Starlette:
        static = Path(__file__).parent / "static"
        routes = [
            Route("/", self.accounts),
            Route("/account/{name:path}", self.account),
            Route("/snapshot/{sid}", self.snapshot),
            Route("/snapshot/{sid}/folder/{fi:int}", self.folder),
            Route("/message/{blob}", self.message),
            Route("/message/{blob}/body", self.body),
            Route("/message/{blob}/attachment/{n:int}", self.attachment),
            Route("/message/{blob}/cid/{cid:path}", self.cid),
            Route("/message/{blob}/eml", self.eml),
            Route("/search", self.search),
            Route("/diff", self.diff),
            Route("/restore", self.restore, methods=["POST"]),
            Route("/export", self.export, methods=["POST"]),
            Route("/job/{jid}.json", self.job_json),
            Route("/job/{jid}", self.job),
            Mount("/static", app=StaticFiles(directory=static), name="static"),
        ]
        return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=self.guard_mw)])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso
