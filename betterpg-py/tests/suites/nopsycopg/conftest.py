import sys

# Simulate an environment without psycopg.
sys.modules["psycopg"] = None  # type: ignore[assignment]
