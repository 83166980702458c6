"""Benchmarks of asyncvideos against raw aiohttp (the floor) and the official openai client.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md``.
"""
