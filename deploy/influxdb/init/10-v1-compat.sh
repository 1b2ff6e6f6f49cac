#!/bin/bash
# Runs once, right after the InfluxDB 2.x image's first-time setup: gives the cloud the
# v1 API it speaks (line protocol on /write, InfluxQL on /query).
#  - a DBRP mapping: v1 database $V1_DB_NAME (retention policy autogen) -> the setup bucket
#  - a v1 login $V1_AUTH_USERNAME / $V1_AUTH_PASSWORD with read+write on that bucket
set -euo pipefail

influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${V1_DB_NAME}" \
  --rp autogen \
  --default \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"

influx v1 auth create \
  --username "${V1_AUTH_USERNAME}" \
  --password "${V1_AUTH_PASSWORD}" \
  --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --write-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"
