"""The online API standing in for Databricks Model Serving behind an API gateway."""
