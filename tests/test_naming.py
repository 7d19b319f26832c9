from __future__ import annotations

import random
import re

from runstream.naming import ADJECTIVES, NOUNS, generate_name

NAME = re.compile(r"^([a-z]+)-([a-z]+)-([1-9][0-9]{0,2})$")


def test_name_shape() -> None:
    rng = random.Random(0)
    for _ in range(500):
        name = generate_name(rng)
        m = NAME.match(name)
        assert m, name
        assert m.group(1) in ADJECTIVES and m.group(2) in NOUNS
        assert 1 <= int(m.group(3)) <= 999


def test_seeded_rng_is_reproducible() -> None:
    assert generate_name(random.Random(42)) == generate_name(random.Random(42))


def test_default_rng_works() -> None:
    assert NAME.match(generate_name())


def test_word_lists() -> None:
    for words in (ADJECTIVES, NOUNS):
        assert len(words) >= 100
        assert len(set(words)) == len(words), "duplicates"
        assert all(re.fullmatch(r"[a-z]+", w) for w in words)


def test_names_vary() -> None:
    rng = random.Random(1)
    assert len({generate_name(rng) for _ in range(200)}) > 190
