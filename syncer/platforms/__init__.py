"""The platform dialects the syncer speaks, by the name an account gives (AdAccount.platform).

Adding a platform: a module here with a class that implements
`base.Platform`, and one line in PLATFORMS (the README's "Adding a platform").
"""
from __future__ import annotations

from syncer.platforms.base import Platform
from syncer.platforms.metered import MeteredPlatform
from syncer.platforms.reference import ReferencePlatform

PLATFORMS: dict[str, Platform] = {platform.kind: platform for platform in (ReferencePlatform(), MeteredPlatform())}
DEFAULT_PLATFORM = ReferencePlatform.kind


def platform_named(kind: str) -> Platform:
    """The adapter of a dialect; ValueError naming the known ones for any other name."""
    try:
        return PLATFORMS[kind]
    except KeyError:
        raise ValueError(f"unknown platform {kind!r}: expected one of {', '.join(sorted(PLATFORMS))}") from None


def platform_choices() -> list[tuple[str, str]]:
    return [(kind, platform.label) for kind, platform in PLATFORMS.items()]
