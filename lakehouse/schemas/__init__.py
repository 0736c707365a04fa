"""Schemas, declared once as constants. Every read of JSON or CSV uses them; nothing is inferred."""
