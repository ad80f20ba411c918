"""The Web API methods the app calls: `chat.*`, `users.*`, `conversations.*` and `views.*`.

Each method takes the call's arguments and returns the answer's fields (`{"ok": False, "error":
...}` for an error). It is served for the team the token belongs to and sees only what that team
sees (`Workspaces`); a method named `a.b` is the method `_a_b`.
"""

from __future__ import annotations

from typing import Any

from bot.devkit.slack.limits import HISTORY_LIMITED_MESSAGES
from bot.devkit.slack.teams import SlackUser
from bot.devkit.slack.workspaces import Workspaces

__all__ = ["WebMethods"]


class WebMethods(Workspaces):
    """The messages, ephemeral messages, views and home tabs the app posts, and the people and
    DMs it looks up."""

    def _user_json(self, user: SlackUser) -> dict[str, Any]:
        team = self.teams.get(user.team_id)
        answer: dict[str, Any] = {
            "id": user.id,
            "team_id": user.team_id,
            "name": user.name,
            "real_name": user.name,
            "is_admin": user.is_admin,
            "is_owner": user.is_owner,
            "is_bot": False,
            "deleted": False,
            "tz": user.tz,
            "tz_offset": user.tz_offset,
            "profile": {"email": user.email, "real_name": user.name, "display_name": user.name},
        }
        if team is not None and team.enterprise_id is not None:
            answer["enterprise_user"] = {
                "id": user.id,
                "enterprise_id": team.enterprise_id,
                "teams": [user.team_id],
            }
        return answer

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = str(args.get("email", "")).lower()
        for team in self._now_served().teams:
            for user in team.users.values():
                if user.email and user.email.lower() == wanted:
                    return {"user": self._user_json(user)}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._visible_user(str(args.get("user")))
        return {"user": self._user_json(user)} if user else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users", "")).split(",")
        if len(users) != 1 or self._visible_user(users[0], connect=False) is None:
            return {"ok": False, "error": "user_not_found"}
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        served = self._now_served()
        if not self._sees_channel(served, channel):
            return {"ok": False, "error": "channel_not_found"}
        bot_user_id, _ = self._bot_identity(served.team, None)
        message = {
            "ts": self._ts(),
            "channel": channel,
            "team": served.key,
            "text": args.get("text"),
            "blocks": args.get("blocks") or [],
            "attachments": args.get("attachments") or [],
            "metadata": args.get("metadata"),
            "thread_ts": args.get("thread_ts"),
            "user": bot_user_id,
            "unfurl_links": args.get("unfurl_links"),
            "unfurl_media": args.get("unfurl_media"),
            "edited": 0,
        }
        self.messages[channel].append(message)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                message.update(
                    text=args.get("text"),
                    blocks=args.get("blocks") or [],
                    attachments=args.get("attachments") or [],
                    edited=message["edited"] + 1,
                )
                if args.get("metadata"):
                    message["metadata"] = args["metadata"]
                return {"channel": channel, "ts": ts}
        return {"ok": False, "error": "message_not_found"}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        if self.user(str(args.get("user"))) and not self._visible_user(str(args.get("user"))):
            return {"ok": False, "error": "user_not_in_channel"}
        self.ephemeral.append(
            {
                "channel": args.get("channel"),
                "user": args.get("user"),
                "text": args.get("text"),
                "blocks": args.get("blocks") or [],
                "team": self._now_served().key,
            }
        )
        return {"message_ts": self._ts()}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        found = list(reversed(self.messages.get(channel, [])))
        # Slack's window: after `oldest`, before `latest` (both ends too with `inclusive`).
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        found = [
            m
            for m in found
            if (
                oldest <= float(m["ts"]) <= latest
                if inclusive
                else oldest < float(m["ts"]) < latest
            )
        ]
        limit = int(args.get("limit", 100))
        if self.history_limited:
            limit = min(limit, HISTORY_LIMITED_MESSAGES)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            {k: v for k, v in m.items() if k != "metadata" or with_metadata} for m in found[:limit]
        ]
        return {"messages": shown, "has_more": len(found) > limit}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        # The trigger is kept so a console can tell whose screen the modal opened on.
        view = dict(args.get("view") or {}) | {
            "id": f"V{next(self._clock):08d}",
            "trigger_id": str(args["trigger_id"]),
        }
        self.views.append(view)
        return {"view": view}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user_id"))
        if self.user(user_id) is not None and self._visible_user(user_id) is None:
            return {"ok": False, "error": "user_not_found"}
        view = dict(args.get("view") or {})
        self.home[user_id] = view
        return {"view": view}
