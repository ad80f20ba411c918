"""Installs of the app: the tokens the double issues and revokes, uninstalls, `auth.test` and
`auth.revoke`, and the signed `app_uninstalled` / `tokens_revoked` events Slack sends about them.

A token belongs to one team, or to a whole Enterprise Grid organisation for an org-wide install.
A rotating token (given a lifetime) expires and comes with a refresh token for `oauth.v2.access`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from bot.devkit.slack.teams import Token
from bot.devkit.slack.workspaces import Workspaces

__all__ = ["DEFAULT_SCOPE", "Installs", "SignedRequest"]

DEFAULT_SCOPE = "chat:write,commands,im:write,users:read,users:read.email"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An Events API request signed as Slack signs it (v0, HMAC-SHA256): POST it to the app."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


class Installs(Workspaces):
    """Issuing, revoking and uninstalling tokens, and the Web API methods about the token."""

    def issue_token(
        self,
        team_id: str | None = None,
        *,
        enterprise_id: str | None = None,
        scope: str = DEFAULT_SCOPE,
        lifetime: float | None = None,
    ) -> Token:
        """A bot token for a team (as an install would give), or for a whole organisation
        (`enterprise_id` without `team_id`). `lifetime` makes it a rotating token."""
        if team_id is None and enterprise_id is None:
            team_id = self.team_id
        team = self._team(team_id) if team_id is not None else None
        org = enterprise_id or (team.enterprise_id if team is not None else None)
        rotating = lifetime is not None
        secret = secrets.token_hex(12)
        where = team_id or org
        token = Token(
            value=f"xoxe.xoxb-1-{where}-{secret}" if rotating else f"xoxb-{where}-{secret}",
            team_id=team_id,
            enterprise_id=org,
            scope=scope,
            expires_at=self.now() + lifetime if lifetime is not None else None,
            lifetime=lifetime,
        )
        if rotating:
            token.refresh_token = f"xoxe-1-{where}-{secrets.token_hex(12)}"
            self._refresh[token.refresh_token] = token
        self.tokens[token.value] = token
        return token

    def revoke(self, token: str, error: str = "token_revoked") -> None:
        """The token (and its refresh token) stops working; later calls answer `error`."""
        found = self.tokens[token]
        found.revoked = error
        if found.refresh_token is not None:
            self._refresh.pop(found.refresh_token, None)

    def uninstall(self, team_id: str) -> list[str]:
        """The app is removed from a team (or, given an enterprise id, from the organisation):
        every bot token of it answers `account_inactive` from now on. The revoked tokens."""
        gone = [
            t.value
            for t in self.tokens.values()
            if t.kind == "bot"
            and t.revoked is None
            and (t.team_id == team_id or (t.team_id is None and t.enterprise_id == team_id))
        ]
        for value in gone:
            self.revoke(value, "account_inactive")
        return gone

    def event_request(
        self,
        team_id: str,
        event_type: str,
        signing_secret: str,
        *,
        timestamp: int | None = None,
        bot_token: bool = True,
        user_ids: tuple[str, ...] = (),
    ) -> SignedRequest:
        """A signed Events API request for `app_uninstalled` or `tokens_revoked` in a team (or
        an organisation, given an enterprise id), as Slack would POST it to the app."""
        org_wide = team_id not in self.teams
        team = None if org_wide else self.teams[team_id]
        enterprise_id = team_id if team is None else team.enterprise_id
        event: dict[str, Any] = {"type": event_type, "event_ts": f"{self.now():.6f}"}
        if event_type == "tokens_revoked":
            bots = [self._bot_identity(team, enterprise_id)[0]] if bot_token else []
            event["tokens"] = {"oauth": list(user_ids), "bot": bots}
        elif event_type != "app_uninstalled":
            raise ValueError(f"not an install event: {event_type!r}")
        payload = {
            "token": "legacy-verification-token",
            "team_id": None if team is None else team.id,
            "enterprise_id": enterprise_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._clock):010d}",
            "event_time": int(self.now()),
            "is_enterprise_install": org_wide,
            "authorizations": [
                {
                    "enterprise_id": enterprise_id,
                    "team_id": None if team is None else team.id,
                    "user_id": self._bot_identity(team, enterprise_id)[0],
                    "is_bot": True,
                    "is_enterprise_install": org_wide,
                }
            ],
        }
        body = json.dumps(payload).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        digest = hmac.new(
            signing_secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        return SignedRequest(body=body, headers=headers, payload=payload)

    # --- auth.* --------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        served = self._now_served()
        team = served.team
        org_wide = served.token is not None and served.token.is_enterprise_install
        enterprise_id = served.token.enterprise_id if served.token is not None else None
        bot_user_id, bot_id = self._bot_identity(None if org_wide else team, enterprise_id)
        answer: dict[str, Any] = {
            "url": f"https://{team.domain if team else 'org'}.slack.test/",
            "team": team.name if team else None,
            "user": "taskjuice",
            "team_id": team.id if team else None,
            "user_id": bot_user_id,
            "bot_id": bot_id,
            "is_enterprise_install": org_wide,
        }
        if enterprise_id is not None:
            answer["enterprise_id"] = enterprise_id
        if served.token is not None and served.token.expires_at is not None:
            answer["expires_in"] = max(0, round(served.token.expires_at - self.now()))
        return answer

    def _auth_revoke(self, args: dict[str, Any]) -> dict[str, Any]:
        served = self._now_served()
        test = str(args.get("test", "")).lower() in ("1", "true")
        if served.token is not None and not test:
            self.revoke(served.token.value)
        return {"revoked": not test}
