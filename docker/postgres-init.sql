-- Run once by the postgres image on an empty data volume (docker/compose.yaml): the genius state store
-- database beside the Airflow metadata database.
CREATE DATABASE genius;
