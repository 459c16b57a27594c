"""Data validation: a dataset version's statistics against a reference version's and against
expectations a person keeps in a YAML file; findings with a severity, a report, an exit code.

``drift`` holds the distances, ``expectations`` the inferred and edited bounds, ``validate`` the
comparison, ``report`` the HTML page. Plain Python over ``datasets.statistics``: no Spark.
"""
