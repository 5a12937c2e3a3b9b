"""Process-wide caches of backend results (``st.cache_*`` and the shared memory budget), keyed by value."""
