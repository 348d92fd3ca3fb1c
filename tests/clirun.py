"""Running the CLI in-process from a test."""
from snncc.cli import main


def cli(capsys, *args):
    """Run ``snncc ARGS`` in-process; returns (exit code, stdout, stderr)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:          # argparse errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
