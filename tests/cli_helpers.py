"""Shared assertion for the CLI's bad-input contract: one stderr line, exit status 2."""

import pytest

from tokencost.cli import main


def cli_error(capsys, argv: list[str]) -> str:
    """Run ``tokencost argv`` in-process, assert it exits 2 with exactly one line
    ``tokencost: error: ...`` on stderr, and return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tokencost: error:"), err
    return err
