"""Analyses over stored records (embeddings, diversity, statistics); no generation here."""
