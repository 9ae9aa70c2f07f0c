"""Which status each campaign is listed with: the seed's draw, a mix in id order, and changes made while running.

``statuses="active:100,paused:400"`` lists campaigns 1-100 active and
101-500 paused (the rest keep the seed's draw); ``status_changes="7=paused,
12=completed"`` changes campaign 7 and 12 on top of that, and may be changed
while the fake runs (``update`` or POST /_fake/config), as a person pausing a
campaign on the platform would. Statuses are the reference dialect's words
(active, paused, completed); the metered dialect shows them its own way.
"""
from functools import lru_cache

from syncer.fake_platform.data import STATUSES


def _status(word):
    word = word.strip().lower()
    if word not in STATUSES:
        raise ValueError(f"unknown status {word!r}: expected one of {', '.join(STATUSES)}")
    return word


@lru_cache(maxsize=64)
def parse_statuses(text):
    """ "active:100,paused:400" -> (("active", 100), ("paused", 400)); ValueError says what is wrong."""
    mix = []
    for part in filter(None, (item.strip() for item in (text or "").split(","))):
        status, _, count = part.partition(":")
        if not count.strip().isdigit():
            raise ValueError(f"statuses: {part!r} is not status:count, e.g. active:100")
        mix.append((_status(status), int(count)))
    return tuple(mix)


@lru_cache(maxsize=64)
def parse_status_changes(text):
    """ "7=paused,12=completed" -> {7: "paused", 12: "completed"}; ValueError says what is wrong."""
    changes = {}
    for part in filter(None, (item.strip() for item in (text or "").split(","))):
        number, _, status = part.partition("=")
        if not number.strip().isdigit():
            raise ValueError(f"status_changes: {part!r} is not number=status, e.g. 7=paused")
        changes[int(number)] = _status(status)
    return changes


def status_of(cfg, i, drawn):
    """The status campaign i is listed with, given the one the seed drew for it."""
    changed = parse_status_changes(cfg.status_changes).get(i)
    if changed is not None:
        return changed
    first = 1
    for status, count in parse_statuses(cfg.statuses):
        if first <= i < first + count:
            return status
        first += count
    return drawn
