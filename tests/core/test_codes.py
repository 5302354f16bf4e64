import pytest
from hypothesis import given
from hypothesis import strategies as st

from licentia.core import codes


def test_ticket_ids_are_random_grouped_and_valid():
    ids = {codes.new_ticket_id() for _ in range(200)}
    assert len(ids) == 200
    for t in ids:
        assert [len(g) for g in t.split("-")] == [5, 5, 5, 5, 5]
        assert codes.normalize_ticket(t) == t
        assert codes.normalize_ticket(t.lower().replace("-", "")) == t


@given(st.integers(0, 24), st.integers(0, 31))
def test_single_character_typo_is_caught(pos, delta):
    t = codes.new_ticket_id().replace("-", "")
    if delta == 0:
        return
    wrong = codes.ALPHABET[(codes.ALPHABET.index(t[pos]) + delta) % 32]
    typo = t[:pos] + wrong + t[pos + 1 :]
    with pytest.raises(codes.InvalidCode):
        codes.normalize_ticket(typo)


@given(st.integers(0, 23))
def test_adjacent_swap_is_caught_unless_equal(pos):
    t = codes.new_ticket_id().replace("-", "")
    if t[pos] == t[pos + 1]:
        return
    swapped = t[:pos] + t[pos + 1] + t[pos] + t[pos + 2 :]
    with pytest.raises(codes.InvalidCode):
        codes.normalize_ticket(swapped)


@pytest.mark.parametrize("bad", ["", "ABC", "U" * 25, 12345])
def test_malformed_tickets(bad):
    with pytest.raises(codes.InvalidCode):
        codes.normalize_ticket(bad)


def test_serials():
    s = codes.new_serial()
    assert s.startswith("130-") and codes.check_serial(s) == s
    with pytest.raises(codes.InvalidCode):
        codes.check_serial("130-abc")
    assert codes.check_item_id("F-00002-145") == "F-00002-145"
    with pytest.raises(codes.InvalidCode):
        codes.check_item_id("F-2-145")
