import pytest

from tests.factory import Firm


@pytest.fixture
def firm():
    return Firm()
