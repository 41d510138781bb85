"""Dead-letter queues from the admin API: browse them, and dry-run a replay."""
