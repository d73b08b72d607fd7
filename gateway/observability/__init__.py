"""What an operator sees of the running gateway: Prometheus metrics (metrics.py counts, exposition.py shows),
one log line per request (request_log.py), OpenTelemetry traces (tracing.py), health checks and the record
every request carries (record.py, observer.py). README "Running in production" describes them."""
