"""Home: what each page shows and what is loaded (page script: page.py)."""
