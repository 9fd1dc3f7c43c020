"""The collector pause around whole-file reads leaves the collector as it found it."""

from __future__ import annotations

import gc

import pytest

from instructgen.gcpause import collector_paused


def test_pause_restores_the_collector_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("reader failed")
    assert gc.isenabled()


def test_pause_keeps_a_collector_the_caller_disabled_off():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
