"""`python -m embedtune` runs the CLI (as torchrun and accelerate launch need a module or script)."""

from embedtune.cli import main

if __name__ == "__main__":
    main()
