"""``python -m attnprompt`` — same as the ``attnprompt`` command."""

from .cli import main

raise SystemExit(main())
