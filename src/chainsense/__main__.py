"""``python -m chainsense`` runs the CLI."""

from chainsense.cli import main

if __name__ == "__main__":
    main()
