"""Streamlit widgets shared by pages; they render what fakevoice.services returns."""
