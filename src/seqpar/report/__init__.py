"""Summaries of stored runs: accuracy per aggregator and budget, tokens and time."""
