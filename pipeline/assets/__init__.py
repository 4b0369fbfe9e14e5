"""Assets of the graph, one module per domain: ingest -> dataset -> training -> evaluation -> deployment."""
