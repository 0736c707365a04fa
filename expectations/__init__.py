"""Great Expectations quality gates for the bronze -> silver promotions.

`rules` declares the Rule type (one GE expectation plus a severity) and derives the Spark predicate
of a `drop` rule from the same expectation config; `suites` holds every source's rules; `gate` runs
them with Great Expectations once per promotion batch and builds the Data Docs.
"""
