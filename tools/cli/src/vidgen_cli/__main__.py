"""``python -m vidgen_cli …``: the same as the ``vidgen`` command."""

from vidgen_cli.main import app

if __name__ == "__main__":
    app(prog_name="vidgen")
