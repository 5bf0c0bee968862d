"""The build stage: orchestration (run), dbt and fit runners, the Spark flow, quality gates and publication."""
