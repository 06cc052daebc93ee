"""``python -m bppjax`` lists the commands and dispatches to them; every command's main is importable."""

from __future__ import annotations

import importlib
import subprocess
import sys

from bppjax.__main__ import COMMANDS, main


def test_usage_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in COMMANDS)


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_dispatch_runs_the_command(capsys):
    assert main(["zoo"]) == 0
    assert "bpp-sr-x2" in capsys.readouterr().out


def test_every_command_module_has_a_main():
    for module, _ in COMMANDS.values():
        assert callable(importlib.import_module(module).main)


def test_python_dash_m_bppjax_runs():
    proc = subprocess.run([sys.executable, "-m", "bppjax", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "enhance" in proc.stdout
