"""`python -m eval.serve RUN`: see eval/serve/cli.py."""

from eval.serve.cli import main

raise SystemExit(main())
