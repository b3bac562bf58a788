"""Fault injection against real processes: workers killed, brokers down or emptied,
database connections dropped, web servers restarted, messages duplicated."""
