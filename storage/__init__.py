"""The catalog: schema, vector index, full-text search and their consistency, behind one gateway."""
