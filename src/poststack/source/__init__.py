"""Migration files on disk and their SQL text (pglast, a streaming scanner): never a database."""
