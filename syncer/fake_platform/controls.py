"""Endpoints every dialect serves alike: /health, and the fake's own controls under /_fake/ (no auth, no budget)."""

from __future__ import annotations

import time

from syncer.fake_platform.data import iso_now
from syncer.fake_platform.gate import json_response


def _bad_config(message):
    return json_response(400, {"error": "Bad config", "message": message})


class Controls:
    async def _health(self, request):
        uptime = round(time.monotonic() - self._started, 3)
        return json_response(200, {"status": "ok", "timestamp": iso_now(), "uptime": uptime})

    async def _fake_stats(self, request):
        return json_response(200, self.stats)

    async def _fake_config(self, request):
        if request.method == "GET":
            return json_response(200, self._cfg.as_dict())
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("body must be a JSON object of knobs")
            down_for = knobs.pop("down_for", None)
            self.update(**knobs)
            if down_for is not None:
                self.down_for(float(down_for))
        except (ValueError, TypeError) as exc:
            return _bad_config(str(exc))
        return json_response(200, self._cfg.as_dict())

    async def _fake_reset(self, request):
        try:
            opts = await request.json() if request.can_read_body else {}
        except ValueError:
            opts = {}
        opts = opts if isinstance(opts, dict) else {}
        self.reset_stats(rate_limits=bool(opts.get("rate_limits")), tokens=bool(opts.get("tokens")))
        return json_response(200, {"ok": True})
