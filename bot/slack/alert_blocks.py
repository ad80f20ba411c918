"""Block Kit for alerts in a workspace's channel: spend cap, reauthorization, breaker."""

from __future__ import annotations

import math
from typing import Any

from bot.slack.blocks import cut, mrkdwn, person, slack_date

__all__ = ["CAP_REACHED_TEXT", "RESUME_ACTION", "alert_message"]

RESUME_ACTION = "taskjuice_resume_workflow"
CAP_REACHED_TEXT = (
    "This workflow paused because the account spend cap was reached. Dispatch resumes after "
    "the cap is raised or the billing period rolls over."
)
_YELLOW, _RED, _GREEN, _GREY = "#ECB22E", "#E01E5A", "#2EB67D", "#868686"


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, 3000)}}


def _link(label: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "url": cut(url, 3000),
        "text": {"type": "plain_text", "text": label},
    }


def _money(value: Any, currency: str) -> str:
    return f"{_number(value, ',.2f')} {mrkdwn(currency, 3)}"


def _number(value: Any, spec: str = "g") -> str:
    """`value` formatted with `spec`; never raises, whatever an older row holds (an int too
    large for a float, one of more digits than Python prints, not a number at all)."""
    try:
        number = float(value)
        if math.isfinite(number):
            return format(number, spec)
    except (TypeError, ValueError, OverflowError):
        pass
    return "an unreadable figure"


def alert_message(alert: dict[str, Any], *, app_url: str) -> tuple[str, list[dict[str, Any]], str]:
    """(notification text, blocks, attachment colour) for one alert in its current state."""
    kind, state, data = alert["kind"], alert["state"], alert["data"]
    workspace = alert["workspace"]
    base = f"{app_url}/{workspace}"
    if kind == "spend.soft":
        return _soft(data, base)
    if kind == "spend.hard":
        return _hard(state, data, base)
    if kind == "connection":
        return _connection(state, data, base)
    if kind == "connection.summary":
        return _summary(state, data, base)
    if kind == "throughput":
        return _throughput(alert, base)
    raise ValueError(f"unknown alert kind {kind}")


def _soft(data: dict[str, Any], base: str) -> tuple[str, list[dict[str, Any]], str]:
    percent = data["percent"]
    text = f"Spend is at {_number(percent)}% of the cap"
    blocks = [
        _text(f"⚠️ *{text}* (threshold {_number(data['threshold'])}%)"),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Spend*\n{_money(data['spend'], data['currency'])}"},
                {"type": "mrkdwn", "text": f"*Cap*\n{_money(data['cap'], data['currency'])}"},
                {"type": "mrkdwn", "text": f"*Billing period*\n{mrkdwn(data['period'], 100)}"},
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Nothing has stopped: workflows keep running until the cap is reached.",
                }
            ],
        },
        {
            "type": "actions",
            "elements": [_link("Adjust cap", f"{base}/billing", "taskjuice_adjust_cap")],
        },
    ]
    return text, blocks, _YELLOW


def _hard(state: str, data: dict[str, Any], base: str) -> tuple[str, list[dict[str, Any]], str]:
    names = ", ".join(mrkdwn(w.get("name") or w["id"], 200) for w in data.get("workflows", [])[:20])
    figures = (
        f"{_money(data['spend'], data['currency'])} of {_money(data['cap'], data['currency'])}"
    )
    if state == "cleared":
        blocks = [
            _text("✅ *Spend cap cleared* — dispatch has resumed."),
            _text(f"~{CAP_REACHED_TEXT}~"),
        ]
        return "Spend cap cleared: dispatch has resumed", blocks, _GREEN
    blocks = [_text("🛑 *Spend cap reached*"), _text(CAP_REACHED_TEXT)]
    if names:
        blocks.append(_text(f"*Paused:* {names}"))
    blocks += [
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"{figures} · period {mrkdwn(data['period'], 100)}"}
            ],
        },
        {
            "type": "actions",
            "elements": [_link("Adjust cap", f"{base}/billing", "taskjuice_adjust_cap")],
        },
    ]
    return "Spend cap reached: workflows paused", blocks, _RED


def _connection(
    state: str, data: dict[str, Any], base: str
) -> tuple[str, list[dict[str, Any]], str]:
    conn = data["connection"]
    app = mrkdwn(conn["app"], 200)
    title = f"{cut(str(conn['app']), 200)} reauth required"  # plain_text header: never parsed
    if state == "active":
        blocks = [
            _text(f"✅ *{app} connection is active again*: {mrkdwn(conn['name'], 500)}"),
            _text("Runs paused while it was disconnected can be resumed from the runs list."),
            {
                "type": "actions",
                "elements": [
                    _link("Open runs list", f"{base}/monitoring/workflow-runs", "taskjuice_runs")
                ],
            },
        ]
        return f"{app} connection is active again", blocks, _GREEN
    paused = data.get("paused_runs")
    detail = f"Connection *{mrkdwn(conn['name'], 500)}* needs to be reauthorized."
    if paused:
        detail += f" {_number(paused, '.0f')} run{'s' if paused != 1 else ''} paused."
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title, 150)}},
        _text(detail),
        {
            "type": "actions",
            "elements": [
                _link("Reconnect", f"{base}/connections/{conn['id']}", "taskjuice_reconnect")
            ],
        },
    ]
    return f"{app} reauth required", blocks, _RED


def _summary(state: str, data: dict[str, Any], base: str) -> tuple[str, list[dict[str, Any]], str]:
    count = int(data.get("count", 0))
    if state == "resolved" or count == 0:
        return "All connections are active", [_text("✅ All connections are active again.")], _GREEN
    text = (
        "A connection needs to be reauthorized"
        if count == 1
        else f"{count} connections need to be reauthorized"
    )
    blocks = [
        _text(f"🔌 *{text}*"),
        {
            "type": "actions",
            "elements": [_link("Open connections", f"{base}/connections", "taskjuice_connections")],
        },
    ]
    return text, blocks, _YELLOW


def _throughput(alert: dict[str, Any], base: str) -> tuple[str, list[dict[str, Any]], str]:
    state, data = alert["state"], alert["data"]
    workflow = data["workflow"]
    name = mrkdwn(workflow["name"], 500)
    open_button = _link(
        "Open workflow", f"{base}/workflows/{workflow['id']}", "taskjuice_open_workflow"
    )
    if state == "cleared":
        return (
            f"{name} is back under the throughput cap",
            [
                _text(f"✅ *{name}* is back under the throughput cap."),
                {"type": "actions", "elements": [open_button]},
            ],
            _GREEN,
        )
    text = f"{name} tripped the throughput cap (likely a loop or polling misconfig)"
    blocks = [_text(f"🚦 *{text}*")]
    if data.get("rate") is not None and data.get("cap") is not None:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{_number(data['rate'])} runs/min against a cap of "
                        f"{_number(data['cap'])}",
                    }
                ],
            }
        )
    if state == "resume_requested":
        who = person(data.get("resume_requested_by"))
        when = slack_date(data["resume_requested_at"])
        blocks.append(_text(f"▶️ Resume requested by {who} · {when}"))
        blocks.append({"type": "actions", "elements": [open_button]})
    else:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    open_button,
                    {
                        "type": "button",
                        "action_id": RESUME_ACTION,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Resume workflow"},
                        "value": str(alert["id"]),
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Resume this workflow?"},
                            "text": {
                                "type": "mrkdwn",
                                "text": "It will trip the breaker again unless the loop or polling "
                                "misconfiguration is fixed.",
                            },
                            "confirm": {"type": "plain_text", "text": "Resume"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                        },
                    },
                ],
            }
        )
    return text, blocks, _RED if state == "tripped" else _GREY
