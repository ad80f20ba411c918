"""The double's Slack world: teams (workspaces), their people and channels, tokens, grants.

Ids follow Slack's shapes: teams `T…`, enterprises (Enterprise Grid organisations) `E…`, users
`U…`, channels `C…`, DMs `D…`. Channel and user ids are unique across teams, as in Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Grant", "Served", "SlackUser", "Team", "Token"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackUser:
    """A member of one of the double's teams."""

    id: str
    name: str
    email: str | None = None
    tz: str = "Europe/Berlin"
    tz_offset: int = 3600
    team_id: str = ""
    is_admin: bool = False
    is_owner: bool = False


@dataclass(slots=True, kw_only=True)
class Team:
    """A Slack workspace: its members, its channels (id -> name) and its bot identity."""

    id: str
    name: str
    domain: str
    enterprise_id: str | None = None
    bot_user_id: str = ""
    bot_id: str = ""
    users: dict[str, SlackUser] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    # Published rate limits enforced for this team: None follows the double's default.
    rate_limits: bool | None = None


@dataclass(slots=True, kw_only=True)
class Token:
    """A token the double issued. `team_id` is None for an org-wide (enterprise) install."""

    value: str
    team_id: str | None
    enterprise_id: str | None = None
    kind: str = "bot"  # "bot" | "app"
    scope: str = ""
    expires_at: float | None = None  # the double's wall clock
    lifetime: float | None = None  # seconds; set for a rotating token
    refresh_token: str | None = None
    revoked: str | None = None  # the error every later call gets: token_revoked, ...

    @property
    def is_enterprise_install(self) -> bool:
        return self.team_id is None


@dataclass(slots=True, kw_only=True)
class Grant:
    """A consent given on the authorize page, waiting to be exchanged once for a token."""

    code: str
    team_id: str
    user_id: str
    scope: str
    redirect_uri: str | None
    channel_id: str | None = None
    enterprise_install: bool = False
    issued_at: float = 0.0


@dataclass(slots=True)
class Served:
    """Who a call is served for: the token, its team (None: org-wide), the teams it sees."""

    token: Token | None
    team: Team | None
    teams: list[Team]

    @property
    def key(self) -> str:
        """The team id the call is recorded and rate limited under (an enterprise id if
        org-wide)."""
        if self.team is not None:
            return self.team.id
        if self.token is not None and self.token.enterprise_id:
            return self.token.enterprise_id
        return "-"
