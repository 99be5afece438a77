"""pela.utils.signals: Ctrl-C taken between steps."""

import signal  # signal.raise_signal: to this thread (os.kill may land on a runtime's worker thread)

import pytest

from pela.utils.signals import deferred_interrupt


@pytest.fixture(autouse=True)
def python_ctrl_c():
    """Python's own Ctrl-C handler, as in a terminal: a process started in the background by a
    shell without job control (a CI script's `make test &`) inherits Ctrl-C ignored, and Python
    then installs no handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_first_ctrl_c_is_noted_the_second_interrupts():
    with deferred_interrupt() as requested:
        assert not requested()
        signal.raise_signal(signal.SIGINT)
        assert requested()  # noted, the block goes on
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_off_leaves_ctrl_c_alone():
    with deferred_interrupt(enabled=False) as requested:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert not requested()
