"""The memory guard's view of available memory: psutil's, on every OS, unless PETCT_MAX_MEMORY_GB says otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import psutil

from modeling_petct.data.memory import available_memory_bytes


def test_available_memory_is_psutils_unless_overridden(monkeypatch):
    monkeypatch.delenv("PETCT_MAX_MEMORY_GB", raising=False)
    assert 0 < available_memory_bytes() <= psutil.virtual_memory().total
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=5 * 2**30, total=8 * 2**30))
    assert available_memory_bytes() == 5 * 2**30
    monkeypatch.setenv("PETCT_MAX_MEMORY_GB", "2.5")
    assert available_memory_bytes() == int(2.5 * 2**30)
