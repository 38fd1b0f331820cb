"""Storage: InfluxDB queries and the batching writer."""
