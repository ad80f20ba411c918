"""Slack's OAuth v2 as the double plays it: the authorize page with its consent form, and
`oauth.v2.access` exchanging a code (once, within ten minutes) or a refresh token for a token.

Tests consent through `approve`, or through the page's form as a browser would; the page
redirects back to the app with `code` and `state`, or with `error=access_denied`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from bot.devkit.slack.calls import Call, ratelimited, take_fault
from bot.devkit.slack.installs import DEFAULT_SCOPE, Installs
from bot.devkit.slack.rate_limiting import RateLimiting
from bot.devkit.slack.teams import Grant, Served, Team, Token

__all__ = ["OAuth"]

_CODE_LIFETIME = 600.0  # seconds an OAuth code may wait to be exchanged


class OAuth(Installs, RateLimiting):
    """Consent (by page or by `approve`) and the `oauth.v2.access` exchange."""

    def approve(
        self,
        team_id: str,
        user_id: str,
        channel_id: str | None = None,
        *,
        scope: str = DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        enterprise_install: bool = False,
    ) -> str:
        """Consent as `user_id` of `team_id` (picking `channel_id` for an incoming webhook)
        and return the code the app exchanges with `oauth.v2.access`."""
        team = self._team(team_id)
        if user_id not in team.users:
            raise KeyError(f"{user_id!r} is not a member of {team_id!r}")
        if channel_id is not None and channel_id not in team.channels:
            raise KeyError(f"{channel_id!r} is not a channel of {team_id!r}")
        if enterprise_install and team.enterprise_id is None:
            raise ValueError(f"{team_id!r} is not in an Enterprise Grid organisation")
        code = f"{next(self._clock)}.{secrets.token_hex(8)}"
        self.grants[code] = Grant(
            code=code,
            team_id=team_id,
            user_id=user_id,
            scope=scope,
            redirect_uri=redirect_uri,
            channel_id=channel_id,
            enterprise_install=enterprise_install,
            issued_at=self.now(),
        )
        return code

    async def _authorize_page(self, request: web.Request) -> web.Response:
        query = request.query
        problem = self._authorize_problem(query)
        if problem is not None:
            return web.Response(status=400, text=problem)
        scope = query.get("scope", "")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in ("client_id", "scope", "user_scope", "state", "redirect_uri")
        )
        teams = "".join(
            f'<option value="{t.id}">{html.escape(t.name)} ({t.id})</option>'
            for t in self.teams.values()
        )
        people = "".join(
            f'<option value="{u.id}">{html.escape(u.name)} — {html.escape(t.name)}'
            f"{' (admin)' if u.is_admin else ''}</option>"
            for t in self.teams.values()
            for u in t.users.values()
        )
        channels = "".join(
            f'<option value="{cid}">#{html.escape(name)} — {html.escape(t.name)}</option>'
            for t in self.teams.values()
            for cid, name in t.channels.items()
        )
        picker = (
            f'<label>Post to <select name="channel">{channels}</select></label>'
            if "incoming-webhook" in scope.split(",")
            else ""
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Install the app (Slack double)</title></head>
<body><h1>The app is asking for access to a Slack workspace</h1>
<p>Scopes: <code>{html.escape(scope)}</code></p>
<form method="post">{hidden}
<p><label>Workspace <select name="team">{teams}</select></label></p>
<p><label>Installing as <select name="user">{people}</select></label></p>
<p>{picker}</p>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Cancel</button>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    def _authorize_problem(self, query: Any) -> str | None:
        if query.get("client_id") != self.client_id:
            return "invalid_client_id: this app is not known here"
        redirect = query.get("redirect_uri", "")
        if urlsplit(redirect).scheme not in ("http", "https"):
            return "bad_redirect_uri: give redirect_uri, an http(s) URL"
        return None

    async def _authorize_decide(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        problem = self._authorize_problem(fields)
        if problem is not None:
            return web.Response(status=400, text=problem)
        redirect, state = fields["redirect_uri"], fields.get("state", "")
        if fields.get("decision") == "deny":
            raise web.HTTPFound(_with_query(redirect, error="access_denied", state=state))
        if fields.get("decision") != "allow":
            return web.Response(status=400, text="decision must be allow or deny")
        try:
            code = self.approve(
                fields.get("team", ""),
                fields.get("user", ""),
                fields.get("channel") or None,
                scope=fields.get("scope", ""),
                redirect_uri=redirect,
            )
        except (KeyError, ValueError) as problem_:
            return web.Response(status=400, text=f"cannot install: {problem_}")
        raise web.HTTPFound(_with_query(redirect, code=code, state=state))

    def _client(self, args: dict[str, Any], auth: str) -> tuple[str, str]:
        if auth.startswith("Basic "):
            try:
                pair = base64.b64decode(auth.removeprefix("Basic ")).decode()
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            client_id, _, secret = pair.partition(":")
            return client_id, secret
        return str(args.get("client_id", "")), str(args.get("client_secret", ""))

    def _oauth_access(self, args: dict[str, Any], auth: str) -> web.Response:
        call = Call(method="oauth.v2.access", args=args, token=None)
        self.calls.append(call)
        _, failed = take_fault(self.faults, "oauth.v2.access", None, call)
        if failed is not None:
            return failed
        answer = self._exchange(args, auth, call)
        if isinstance(answer, int):
            return ratelimited(answer)
        if not answer.get("ok", True):
            call.answer = answer["error"]
        self.changed.set()
        return web.json_response({"ok": True} | answer)

    def _exchange(self, args: dict[str, Any], auth: str, call: Call) -> dict[str, Any] | int:
        client_id, secret = self._client(args, auth)
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if not hmac.compare_digest(secret, self.client_secret):
            return {"ok": False, "error": "bad_client_secret"}
        if args.get("grant_type") == "refresh_token":
            old = self._refresh.get(str(args.get("refresh_token")))
            if old is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            team = self.teams.get(old.team_id) if old.team_id else None
            served = Served(old, team, [team] if team else [])
            call.team = served.key
            wait = self._retry_after("oauth.v2.access", args, served)
            if wait is not None:
                self._refused[(served.key, "oauth.v2.access")] += 1
                call.answer = "ratelimited"
                return wait
            del self._refresh[str(args["refresh_token"])]
            lifetime = self.token_lifetime if self.token_lifetime is not None else old.lifetime
            new = self.issue_token(
                old.team_id, enterprise_id=old.enterprise_id, scope=old.scope, lifetime=lifetime
            )
            return self._token_answer(new, team, None, None)
        grant = self.grants.get(str(args.get("code")))
        if grant is None or self.now() - grant.issued_at > _CODE_LIFETIME:
            return {"ok": False, "error": "invalid_code"}
        redirect = args.get("redirect_uri")
        if grant.redirect_uri is not None and redirect and redirect != grant.redirect_uri:
            return {"ok": False, "error": "bad_redirect_uri"}
        team = self.teams[grant.team_id]
        served = Served(None, team, [team])
        call.team = served.key
        wait = self._retry_after("oauth.v2.access", args, served)
        if wait is not None:
            self._refused[(served.key, "oauth.v2.access")] += 1
            call.answer = "ratelimited"
            return wait
        del self.grants[grant.code]
        org_wide = grant.enterprise_install
        token = self.issue_token(
            None if org_wide else team.id,
            enterprise_id=team.enterprise_id,
            scope=grant.scope,
            lifetime=self.token_lifetime,
        )
        return self._token_answer(token, None if org_wide else team, grant, team)

    def _token_answer(
        self, token: Token, team: Team | None, grant: Grant | None, chosen: Team | None
    ) -> dict[str, Any]:
        bot_user_id, _ = self._bot_identity(team, token.enterprise_id)
        answer: dict[str, Any] = {
            "access_token": token.value,
            "token_type": "bot",
            "scope": token.scope,
            "bot_user_id": bot_user_id,
            "app_id": self.app_id,
            "team": None if team is None else {"id": team.id, "name": team.name},
            "enterprise": None
            if token.enterprise_id is None
            else {"id": token.enterprise_id, "name": f"Org {token.enterprise_id}"},
            "is_enterprise_install": token.is_enterprise_install,
        }
        if grant is not None:
            answer["authed_user"] = {"id": grant.user_id}
        if token.expires_at is not None:
            answer["refresh_token"] = token.refresh_token
            answer["expires_in"] = max(0, round(token.expires_at - self.now()))
        webhook = grant is not None and "incoming-webhook" in grant.scope.split(",")
        if webhook and grant is not None and chosen is not None and grant.channel_id is not None:
            name = chosen.channels[grant.channel_id]
            hook = secrets.token_hex(6)
            answer["incoming_webhook"] = {
                "channel": f"#{name}",
                "channel_id": grant.channel_id,
                "configuration_url": f"https://{chosen.domain}.slack.test/services/B{hook}",
                "url": f"https://hooks.slack.test/services/{chosen.id}/B{hook}/{hook}",
            }
        return answer


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))
