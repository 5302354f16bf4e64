"""What counts as CI for the suite: there a missing system part fails instead of skipping."""

from __future__ import annotations

import pytest

from tests.conftest import in_ci, require_system


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "anything"])
def test_any_set_ci_value_is_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="the frobnicator is required in CI but missing"):
        require_system("the frobnicator", False)
    require_system("the frobnicator", True)  # present: nothing to say


@pytest.mark.parametrize("value", [None, "", "0", "false", "False", "no", "off"])
def test_an_unset_or_false_ci_value_skips(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="needs the frobnicator"):
        require_system("the frobnicator", False)


def test_the_permission_checks_are_never_skipped_by_a_marker():
    """They ask require_system for root, so that in CI an unprivileged run fails."""
    from tests.container import test_permissions

    assert not getattr(test_permissions, "pytestmark", [])
