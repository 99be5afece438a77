"""The process state of a run started without torchrun: one process, the main one."""

from pela.utils.processes import partial_state


def test_one_process_is_the_main_one():
    state = partial_state()
    assert state.num_processes == 1 and state.is_main_process and state.process_index == 0
    assert partial_state().num_processes == state.num_processes  # shared state: asking again is free
