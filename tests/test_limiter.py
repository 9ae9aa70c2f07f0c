"""The rate budget belongs to the platform's client, has caps, and keeps to one shared clock."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import AdAccount
from syncer.budget import parse_budget
from syncer.fake_platform import FakePlatformConfig
from tests.conftest import FAKE_EMAIL
from tests.test_settings import manage_check

pytestmark = pytest.mark.django_db(transaction=True)

# --- caps ------------------------------------------------------------------------------------------------------

REFUSED = [("10001/60s", "at most 10,000 calls"), ("10/0.05s", "between 0.1 s and 86400 s"),
           ("10/86401s", "between 0.1 s and 86400 s"), ("1" * 5000 + "/60s", "at most 10,000 calls")]


@pytest.mark.parametrize(("budget", "reason"), REFUSED)
def test_a_budget_the_limiter_cannot_honour_is_refused_in_one_line_everywhere(budget, reason):
    with pytest.raises(ValueError, match=reason) as refused:
        parse_budget(budget)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
    with pytest.raises(ValidationError, match=reason):
        AdAccount(name="x", slug="x", base_url="http://p.test", email=FAKE_EMAIL, client_id="x",
                  rate_limit=budget).full_clean()
    with pytest.raises(ValueError, match=reason):
        FakePlatformConfig(rate_limit=budget).validate()


def test_the_edges_of_the_caps_are_honoured():
    assert [str(parse_budget(text)) for text in ("10000/60s", "10/0.1s", "10/86400s")] == \
        ["10000/60s", "10/0.1s", "10/86400s"]


def test_a_budget_over_the_caps_in_the_environment_stops_start_up_in_one_line(tmp_path):
    result = manage_check(tmp_path, AD_PLATFORM_RATE_LIMIT="20000/60s")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AD_PLATFORM_RATE_LIMIT" in lines[0] and "at most 10,000 calls" in lines[0], lines
