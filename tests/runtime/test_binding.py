"""Binding: a container copied to another machine stays locked."""

import pytest

from licentia.core import errors as E
from tests.factory import other_machine
from tests.runtime.helpers import install, runtime


def test_copied_home_on_another_machine_is_locked(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock, traits=other_machine())
    with pytest.raises(E.ContainerLocked):
        rt.access(firm.code, 1, firm_key=firm.pem)


def test_locked_container_beats_not_found(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock, traits=other_machine())
    with pytest.raises(E.ContainerLocked) as info:
        rt.access(firm.code, 1, firm_key=firm.pem)
    assert "bound to another machine" in str(info.value)
