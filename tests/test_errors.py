"""pela.errors: one exception for mistakes, one for interruptions, one warning category."""

import warnings

import pytest

from pela.errors import Interrupted, PelaError, PelaWarning, warn


def test_a_mistake_is_a_value_error_and_an_interruption_a_keyboard_interrupt():
    assert issubclass(PelaError, ValueError) and issubclass(Interrupted, KeyboardInterrupt)
    assert Interrupted("at step 3", resumable=True).resumable and not Interrupted("stopped").resumable


def test_pelas_warnings_carry_their_own_category():
    with pytest.warns(PelaWarning, match="a default was taken"):
        warn("a default was taken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("said once")
    assert caught[0].category is PelaWarning and issubclass(PelaWarning, UserWarning)
