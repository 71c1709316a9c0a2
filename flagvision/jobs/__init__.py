"""Work that outlives a page: the store (``store``: runs, per-epoch metrics and jobs in SQLite; ``schema``:
its tables and states), the queue that starts, cancels and reaps worker processes (``queue``), who owns a
foreground run (``owners``), and the worker process itself (``worker``).
"""
