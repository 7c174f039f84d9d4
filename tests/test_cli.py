"""The ``pointserve`` command: every sub-command has --help, and the CLI itself imports no heavy runtime."""

import subprocess
import sys

import pytest

from pointserve.cli import build_parser

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def test_every_pipeline_command_is_registered():
    expected = {"train", "evaluate", "export", "calibrate", "build", "serve", "bench", "quickstart", "loadgen"}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: pointserve " + command in capsys.readouterr().out


def test_the_cli_imports_no_heavy_runtime():
    code = (
        "import sys; from pointserve.cli import build_parser; build_parser(); "
        "heavy = {'torch', 'onnxruntime', 'onnx', 'tensorrt', 'fastapi', 'matplotlib'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
