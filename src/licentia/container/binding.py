"""Tolerant binding of a container's secret to machine traits.

The container secret is wrapped once per *minimal qualifying combination* of the
traits present when the container was made: a set of traits whose weights reach the
level's threshold (tight: all traits; medium: the total less the heaviest trait, so
any one trait may change; loose: the total less the two heaviest; never below a floor
share of the total), that holds at least one high-entropy trait, and
from which no trait can be dropped without falling below the threshold. Each wrap:

    key  = HKDF-SHA256(ikm = concat(canonical(name, value) for name in sorted combo),
                       salt = per-container salt, info = "licentia binding v1")
    blob = AES-256-GCM(key, secret, aad = serial | level | ",".join(sorted combo))

Opening tries the wraps with the traits read now; any wrap that opens gives the
secret. No per-trait hash is stored: a single trait cannot be tested alone. There is
no secret sharing over traits; the combinations are enumerated explicitly.
"""

from __future__ import annotations

from itertools import combinations

from ..core import hazmat
from ..core.encoding import b64d, b64e
from ..core.errors import BindingMismatch as BindingMismatch  # re-exported
from ..core.errors import NoUsableTraits as NoUsableTraits
from .traits import TRAITS, canonical

#: per level: (how many of the heaviest traits may change, floor as a share of the total)
#: tight: nothing may change; medium: any one trait; loose: any two traits.
LEVEL_RULES = {"loose": (2, 0.35), "medium": (1, 0.5), "tight": (0, 1.0)}
_INFO = b"licentia binding v1"


def _weight(names: tuple[str, ...]) -> int:
    return sum(TRAITS[n].weight for n in names)


def qualifying_combinations(names: list[str], level: str) -> list[tuple[str, ...]]:
    """Minimal combinations of ``names`` that reach the level's threshold."""
    names = sorted(n for n in names if n in TRAITS)
    total = _weight(tuple(names))
    tolerate, floor = LEVEL_RULES[level]
    heaviest = sorted((TRAITS[n].weight for n in names), reverse=True)[:tolerate]
    need = max(total - sum(heaviest), floor * total)
    if level == "tight":
        combos = [tuple(names)]
    else:
        combos = []
        for r in range(1, len(names) + 1):
            for combo in combinations(names, r):
                if _weight(combo) < need:
                    continue
                if any(set(prev) <= set(combo) for prev in combos):
                    continue  # not minimal
                combos.append(combo)
    return [c for c in combos if any(TRAITS[n].high_entropy for n in c)]


def _key(combo: tuple[str, ...], traits: dict[str, str], salt: bytes) -> bytes:
    ikm = b"".join(canonical(n, traits[n]) for n in combo)
    return hazmat.hkdf(ikm, salt=salt, info=_INFO)


def _aad(serial: str, level: str, combo: tuple[str, ...]) -> bytes:
    return f"{serial}|{level}|{','.join(combo)}".encode()


def wrap(secret: bytes, *, serial: str, level: str, traits: dict[str, str], salt: bytes) -> list[dict[str, object]]:
    combos = qualifying_combinations(list(traits), level)
    if not combos:
        raise NoUsableTraits("this machine offers no high-entropy trait (machine id, file system UUID, MAC)")
    return [
        {"traits": list(c), "blob": b64e(hazmat.aead_encrypt(_key(c, traits, salt), secret, _aad(serial, level, c)))}
        for c in combos
    ]


def unwrap(wraps: list[dict[str, object]], *, serial: str, level: str, traits: dict[str, str], salt: bytes) -> bytes:
    for w in wraps:
        combo = tuple(str(n) for n in w["traits"])  # type: ignore[attr-defined]  # a list of trait names (written by wrap)
        if not all(n in traits for n in combo):
            continue
        try:
            return hazmat.aead_decrypt(_key(combo, traits, salt), b64d(str(w["blob"])), _aad(serial, level, combo))
        except (hazmat.CryptoError, ValueError):
            continue
    raise BindingMismatch("the container's binding does not match this machine")
