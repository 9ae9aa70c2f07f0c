"""The bundled fake ad platform: /work/shared/PLATFORM_API.md, every failure on a knob.

Pure Python + aiohttp (no Django). ``FakePlatform(cfg).start()`` serves it from
a daemon thread with its own event loop; ``serve_forever`` runs it in the
foreground (``manage.py run_fake_platform``). Knobs: ``FakePlatformConfig`` in
``config.py``, all faults off by default; the data set in ``data.py``; what
both dialects share in ``gate.py`` (counting, outages, the budget window, the
fault draws), ``tokens.py``, ``catalog.py`` (listing, rows, list answers, slow
syncs), ``statuses.py`` and ``controls.py`` (/health, /_fake/*); the reference dialect's
endpoints in ``handlers.py``, the metered dialect's in ``metered.py`` (shapes
in ``metered_rows.py``); state and lifecycle in ``server.py``.

Dialects
--------
``dialect="reference"`` (default) serves the contract's first part;
``dialect="metered"`` its last part: ``POST /oauth/token``, ``GET
/v2/campaigns?limit=L&after=CURSOR``, ``POST /v2/campaigns/{id}/sync``. One
server speaks one dialect (the other's paths answer 404) and cannot change it
while running. Both serve the same campaigns, windows, faults, stats and token
store; every knob means the same in both unless said below.

The metered dialect's decisions:

* Token: Basic ``email:password`` (the knobs) and form
  ``grant_type=client_credentials``; bad credentials 400 ``invalid_client``
  (checked first), another grant type 400 ``unsupported_grant_type``.
* Rows: the reference rows reshaped field by field (``metered_rows.py``). Id
  ``str(23847000000000 + (seed % 1000) * 10**9 + i)``; ``effective_status``
  active/paused/completed -> ACTIVE/PAUSED/ARCHIVED, and DELETED for the
  campaigns ``not_found_rate`` deletes (sync 404); ``daily_budget`` the budget
  times 100 as a string; ``insights`` strings, absent for the share
  ``no_insights_rate`` (fixed by the seed); ``created_time`` like
  ``2024-12-11T10:30:00+0000``. Bad rows and bad fields stay as bad (a wrong
  kind of value is passed through; a huge integer is a 5,000-digit string).
* Pages: ``limit`` (default ``default_page_size``) capped at 200 and at
  ``max_page_size``; the cursor is base64 of a listing offset (and a page
  number for the page-counting knobs), so ``duplicate_across_pages``,
  ``delete_between_pages`` and ``overlap_pages`` act as on offset pages.
  ``paging.next`` is absent on the last page; no total, so ``has_more_lies``
  and ``total_drift`` do not apply. A bad limit or cursor: 400, code 100.
* Budget: the ``rate_limit`` window is the platform's real budget (change it
  with ``update`` or /_fake/config; the windows keep their calls). Every /v2
  answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` (after this
  call), ``X-RateLimit-Reset`` (whole seconds, rounded up, until the oldest
  call leaves the window: a client that waits it is never early) and
  ``X-App-Usage: {"call_count": P}`` (percent of the budget in the window,
  over 100 when the budget drops). Without a rate limit no usage headers. Over
  the budget: HTTP 200 ``{"code": 40100, "message": "Too many requests"}``, not
  counted in the window, counted in ``rate_limited`` and ``throttled``.
* Order on /v2/*: down -> budget -> bearer token (401, code 190,
  ``is_transient`` false, for missing, unknown, expired, revoked or refused
  tokens) -> faults (reset, hang, 500 code 1, HTML, 503 code 2; 5xx are
  transient) -> handler (404 code 100 for an unknown or deleted id; sync takes
  no body). ``synced_ids``, ``deleted_ids()`` and ``campaign_ids()`` use the
  metered ids.

Decisions the contract leaves open
----------------------------------
* Rate limit: sliding window of N calls per W seconds per ``X-Client-ID``
  (absent or empty: "default"). Every ``/api/*`` request that arrives counts,
  before auth (a 401 costs budget, like real platforms). A request answered
  429 does NOT count. A call at time t counts while ``now - W < t``.
  ``retry_after`` = seconds until the oldest call leaves the window, rounded
  up, at least 1 (or ``retry_after_override``), sent per ``retry_after_mode``.
* Order on ``/api/*``: down -> rate limit -> auth -> faults (reset, hang, 500,
  HTML, 503) -> handler. ``down`` also covers /auth/token and /health, never
  /_fake/*; ``down_mode`` says how: connection resets (TCP RSTs, SO_LINGER 0,
  no response bytes), 503 answers, or calls that never answer.
* Tokens: ``token_revoke_every`` K revokes the token the K-th authenticated
  call used, ``revoke_all_every`` K every live token (both after answering
  that call); ``revoke_on_issue`` ends older tokens of the same login when a
  new one is issued; ``refuse_tokens`` issues tokens that no call accepts.
* Sync: body must be a JSON object whose ``campaign_id`` equals the path id
  (else 400, before the 404 check). Unknown and deleted ids answer 404 at
  once; 503 faults are fast too; only a good sync waits ``sync_latency``
  (+/- uniform ``sync_latency_jitter``, never below 0). ``synced_ids`` counts
  only syncs that ran the whole latency and answered 200.
* Statuses: the seed draws each campaign's (active, paused, completed);
  ``statuses="active:100,paused:400"`` sets them in id order, and
  ``status_changes="7=paused"`` changes single campaigns on top, also while
  running (``statuses.py``). Only the listing says a campaign's status.
* Deleted campaigns (``not_found_rate``): campaign i is deleted when
  ``Random(f"{seed}:deleted:{i}").random() < not_found_rate``: same ids every
  run and every call; still listed, sync gives 404. See ``deleted_ids()``.
* Listing: pages slice one sequence: every campaign in id order, each maybe
  followed by a bad row (``bad_row_rate``). ``total`` is that sequence's length
  (N + bad rows), so a page never holds more than ``limit`` rows, nothing real
  lies past ``total``, and counting rows or computing ``page * limit`` agree.
* ``has_more_lies``: has_more is always true; positions past ``total`` are
  filled with phantom rows ``campaign_{N+k}`` (sync: 404), forever.
* ``total_drift``: added to ``pagination.total`` on pages >= 2 (has_more stays
  truthful about the real data unless it lies too).
* ``duplicate_across_pages``: once page 1 is first served, a new campaign
  (``campaign_{N+1}``, real: it syncs) is inserted at the front, so later
  pages shift back one row (page 2 starts with the last row of page 1) and
  ``total`` grows by one: a client that follows total/has_more and counts
  distinct ids finds the newcomer when it lists again. Changing the knob
  takes it out again.
* ``overlap_pages``: each page after the first starts with the previous
  page's last row and ``total`` stays put, so the pages up to
  ``page * limit >= total`` hold fewer distinct campaigns than ``total``.
* ``delete_between_pages`` K: once page K is first served, the first live
  campaign is deleted (no longer listed, sync 404, ``total`` one less): every
  later page shifts forward one row, so one campaign is skipped. Changing the
  knob brings the deleted campaign back.
* ``oversized_list_mb``: a ``padding`` field of that many MB on list answers;
  with ``oversized_chunked`` they are streamed in 64 kB chunks without a
  Content-Length, and ``oversized_bytes_sent`` counts the bytes written before
  the client closed the connection (it cannot write more than the client reads
  plus the sockets' buffers).

Bad rows (a client rejects rows without a usable id), bad fields (stored
empty with a warning) and hostile values (stored as they are): see ``data.py``.

Stats (``platform.stats``; JSON at GET /_fake/stats) keys: requests
{token,list,sync,health,other}, responses {status: n}, rate_limited,
rate_limited_by_client (every over-budget answer: a 429 or a metered
throttle), throttled, throttled_by_client (metered throttles), calls_while_down, api_calls_by_client,
max_calls_in_any_window {client: n} (over window_seconds: the rate-limit W, or
60 s without a limit), first_call_by_client {client: its first admitted call, on
the fake's monotonic clock}, and with a limit of N calls first_window_by_client
{client: seconds from its first call to its Nth} and reuse_gap_by_client
{client: the median seconds from a call to the Nth after it, or None},
window_seconds, synced_ids {id: n}, synced_total, hung,
resets, server_errors, bad_rows_served, bad_fields_served, sync_in_flight, concurrent_max,
tokens_issued, tokens_revoked, deleted_ids, oversized_bytes_sent.
Control: GET /_fake/stats, GET|POST /_fake/config (JSON knobs; extra key
"down_for": seconds), POST /_fake/reset (optional JSON {"rate_limits": bool,
"tokens": bool}). Not rate limited, no auth, work while down.
"""

from syncer.fake_platform.config import (
    DIALECTS,
    DOWN_MODES,
    KNOB_HELP,
    MALFORMED_LIST_MODES,
    PRESETS,
    RETRY_AFTER_MODES,
    FakePlatformConfig,
    parse_rate_limit,
)
from syncer.fake_platform.data import BAD_FIELD_KINDS, BAD_ROW_KINDS, HOSTILE_KINDS, UNUSABLE_ID_KINDS
from syncer.fake_platform.gate import FAKE_SECRET
from syncer.fake_platform.server import FakePlatform

__all__ = [
    "BAD_FIELD_KINDS",
    "BAD_ROW_KINDS",
    "DIALECTS",
    "DOWN_MODES",
    "FAKE_SECRET",
    "HOSTILE_KINDS",
    "KNOB_HELP",
    "MALFORMED_LIST_MODES",
    "PRESETS",
    "RETRY_AFTER_MODES",
    "UNUSABLE_ID_KINDS",
    "FakePlatform",
    "FakePlatformConfig",
    "parse_rate_limit",
]
