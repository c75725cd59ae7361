"""What the ``payouts`` command shows a person: one-line errors with a hint and an exit code,
Rich tables and progress bars, and the same data as JSON for scripts."""
