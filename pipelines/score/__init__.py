"""`preflens score`: new pairs scored with a frozen published fit, and the drift of a mechanism from it.

fit.py reads the frozen fit from the fit marts, inputs.py ingests and annotates the new pairs in the run's own
file (llm_annotation.py: with an LLM fit's catalog, reusing the warehouse's cache), features.py has dbt build their
features there (the fit's own transform and pivot), run.py scores them (py_models.frozen) and records the results
in schema ops, command.py is the command (light to import: the CLI builds its parser on every start).
"""
