"""A device name a person recognises ("Chrome 156 on Linux", "Mobile Safari 17 on iPhone") from a
User-Agent string, by ua-parser (the rules of uap-core), for the sessions page."""

from __future__ import annotations

import functools

from ua_parser import parse

__all__ = ["device_name"]

UNKNOWN = "Unknown device"


@functools.lru_cache(maxsize=1024)
def device_name(user_agent: str) -> str:
    """The browser (or client) and its major version, and what it runs on when known; ``UNKNOWN`` for an
    empty or unrecognised string, never the raw string (a User-Agent is attacker-chosen text)."""
    found = parse(user_agent[:512]) if user_agent else None
    if found is None or found.user_agent is None or found.user_agent.family == "Other":
        return UNKNOWN
    browser = found.user_agent.family.removeprefix("Headless")
    if found.user_agent.major:
        browser = f"{browser} {found.user_agent.major}"
    device = found.device.family if found.device is not None and found.device.family != "Other" else None
    system = found.os.family if found.os is not None and found.os.family != "Other" else None
    where = device if device and device not in ("Mac", "Generic Smartphone") else system
    return f"{browser} on {where}" if where else browser
