"""Local stand-ins for destination vendors, for the demo and the tests.

Each speaks its vendor's API shape strictly (it refuses what the vendor would
refuse), records what it applied, and can be told to misbehave: 429s, 500s, slow
answers, dropped connections, partial batch failures.
"""
