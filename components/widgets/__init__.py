"""Controls that read and write the URL-bound view state."""
