"""Streamlit widgets and Plotly figures built from analysis results."""
