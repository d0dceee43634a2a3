"""The service layer: the one place that validates input and writes to the database.

The dashboard, the JSON API and the CLI call these functions and show their errors as is.
"""
