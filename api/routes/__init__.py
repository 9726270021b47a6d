"""HTTP routers: each parses a request, calls the search/indexer API, and shapes the answer."""
