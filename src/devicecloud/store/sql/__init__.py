"""The store's jobs, one module per aggregate of the `Store` port, in SQL that SQLite and
PostgreSQL both accept: each job is a function of a `Connection` that runs on the writer thread
inside the group's transaction (a write) or on a reader's connection (a read)."""
