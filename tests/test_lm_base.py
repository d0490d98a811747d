import random

import pytest
from pydantic import ValidationError

from curate.lm.base import GenParams, apply_stops, has_degenerate_repetition, has_degenerate_repetition_reference


def test_repetition_guard_catches_every_short_period():
    for period in range(1, 9):
        block = list(range(100, 100 + period))
        ids = [1, 2, 3] + block * (40 // period + 1)
        assert has_degenerate_repetition(ids), period
    assert not has_degenerate_repetition(list(range(64)))
    assert not has_degenerate_repetition([5] * 31)  # shorter than the window


def test_repetition_guard_matches_plain_twin_on_random_cases():
    rng = random.Random(0)
    for _ in range(3000):
        period = rng.randint(1, 12)
        block = [rng.randint(0, 3) for _ in range(period)]
        ids = [rng.randint(0, 3) for _ in range(rng.randint(0, 10))] + block * rng.randint(1, 40)
        if rng.random() < 0.3 and ids:
            ids[rng.randrange(len(ids))] = 9
        assert has_degenerate_repetition(ids) == has_degenerate_repetition_reference(ids)


def test_apply_stops_cuts_at_the_earliest():
    assert apply_stops("a |EoS| b\n\nc", ["\n\n", "|EoS|"]) == ("a ", True)
    assert apply_stops("plain", ["|EoS|"]) == ("plain", False)


def test_gen_params_validate():
    with pytest.raises(ValidationError, match="min_new_tokens"):
        GenParams(min_new_tokens=10, max_new_tokens=5)
    with pytest.raises(ValidationError):
        GenParams(stop=("",))
    with pytest.raises(ValidationError):
        GenParams(temprature=0.5)
    assert GenParams().greedy and not GenParams(temperature=0.7).greedy
