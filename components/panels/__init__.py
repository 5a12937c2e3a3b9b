"""Page sections and sidebar panels built from widgets, caches and figures."""
