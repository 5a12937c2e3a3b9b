"""The model runtime: where models come from, loading them, and running them with head edits."""
