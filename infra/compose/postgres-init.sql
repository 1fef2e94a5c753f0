-- One PostgreSQL for the two stores that need a server form: MLflow tracking/registry and Dagster.
CREATE DATABASE mlflow;
CREATE DATABASE dagster;
