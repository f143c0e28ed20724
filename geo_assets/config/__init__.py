"""Configuration: settings read from the environment, the configured geocell sizes and
label schemes, the Dagster pool names, and the Kubernetes pod sizes of a run."""
