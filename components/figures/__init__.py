"""Plotly figures: pure functions of arrays and tables, testable without Streamlit."""
