"""The double's workspaces: adding teams, people and channels, and who sees what.

A call is served for one team (or, with an org-wide token, the teams of an Enterprise Grid
organisation): it sees that team's people and channels, its DMs, and the channels shared with it
through Slack Connect and the people met in them.
"""

from __future__ import annotations

from bot.devkit.slack.state import DoubleState
from bot.devkit.slack.teams import Served, SlackUser, Team

__all__ = ["Workspaces"]


class Workspaces(DoubleState):
    """Teams, their people and channels, and what the call being served can see."""

    @property
    def default_team(self) -> Team:
        return self.teams[self.team_id]

    def add_team(
        self,
        team_id: str,
        name: str,
        domain: str | None = None,
        *,
        enterprise_id: str | None = None,
        rate_limits: bool | None = None,
    ) -> Team:
        """A further workspace. Its published rate limits are on unless `rate_limits=False`
        (or the double was made with `rate_limits=False`)."""
        suffix = team_id[1:]
        team = Team(
            id=team_id,
            name=name,
            domain=domain or name.lower().replace(" ", "-"),
            enterprise_id=enterprise_id,
            bot_user_id=f"U0BOT{suffix}",
            bot_id=f"B0BOT{suffix}",
            rate_limits=rate_limits,
        )
        self.teams[team_id] = team
        return team

    def _team(self, team_id: str | None) -> Team:
        team = self.teams.get(team_id or self.team_id)
        if team is None:
            raise KeyError(f"no team {team_id!r} in the double")
        return team

    def add_user(
        self,
        user_id: str,
        name: str,
        email: str | None = None,
        *,
        team_id: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        tz: str = "Europe/Berlin",
        tz_offset: int = 3600,
    ) -> SlackUser:
        team = self._team(team_id)
        user = SlackUser(
            id=user_id,
            name=name,
            email=email,
            tz=tz,
            tz_offset=tz_offset,
            team_id=team.id,
            is_admin=is_admin or is_owner,
            is_owner=is_owner,
        )
        team.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, team_id: str | None = None) -> None:
        self._team(team_id).channels[channel_id] = name

    def share_channel(self, channel_id: str, team_id: str) -> None:
        """Slack Connect: the channel (of another team) is also a channel of `team_id`; its
        members from either side can see each other, and keep their own team_id."""
        self._team(team_id)
        if self._channel_owner(channel_id) is None:
            raise KeyError(f"no channel {channel_id!r} in the double")
        self.shared[channel_id].add(team_id)

    def user(self, user_id: str) -> SlackUser | None:
        """A user of any team."""
        for team in self.teams.values():
            if user_id in team.users:
                return team.users[user_id]
        return None

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def _bot_identity(self, team: Team | None, enterprise_id: str | None) -> tuple[str, str]:
        """The app's bot user and bot ids in a team, or in an organisation (org-wide install)."""
        if team is not None:
            return team.bot_user_id, team.bot_id
        org = enterprise_id or "-"
        return self._org_bots.setdefault(org, (f"U0BOT{org[1:]}", f"B0BOT{org[1:]}"))

    # --- who sees what -------------------------------------------------------------------

    def _now_served(self) -> Served:
        if self._served is not None:
            return self._served
        team = self.default_team
        return Served(self.tokens.get(self.token), team, [team])

    def _channel_owner(self, channel: str) -> Team | None:
        for team in self.teams.values():
            if channel in team.channels:
                return team
        if channel.startswith("D"):
            user = self.user("U" + channel[1:])
            if user is not None:
                return self.teams[user.team_id]
        return None

    def _sees_channel(self, served: Served, channel: str) -> bool:
        owner = self._channel_owner(channel)
        if owner is None:
            return False
        if channel.startswith("D"):
            return owner in served.teams
        guests = self.shared.get(channel, set())
        return owner in served.teams or any(t.id in guests for t in served.teams)

    def _foreign_channel(self, channel: str) -> bool:
        """A channel the double knows, but in a team the call cannot see."""
        served = self._now_served()
        return self._channel_owner(channel) is not None and not self._sees_channel(served, channel)

    def _visible_user(self, user_id: str, *, connect: bool = True) -> SlackUser | None:
        """A member of the served team(s) or, with `connect`, a Slack Connect user met in a
        channel shared with them."""
        served = self._now_served()
        user = self.user(user_id)
        if user is None:
            return None
        if any(user_id in t.users for t in served.teams):
            return user
        if not connect:
            return None
        mine = {t.id for t in served.teams}
        for channel, guests in self.shared.items():
            owner = self._channel_owner(channel)
            sides = guests | ({owner.id} if owner is not None else set())
            if user.team_id in sides and mine & sides:
                return user
        return None
